"""`summary.json` from the runs' histories: final metrics per method (mean, spread over seeds),
B² against DDPO at equal reward queries, the issue's goals checked, and the checkpoint to export.

It reads only the run folders, so it can be re-run on another machine (e.g. here, after the GPU
run, to add feature-space diversity from `samples.npz` and draw the plot where matplotlib exists).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

Log = Callable[[str], None]
HEADLINE = "@eta0"  # the app samples with deterministic DDIM


def load_runs(out: Path) -> tuple[dict | None, dict[str, list[dict]]]:
    base = None
    runs: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*/history.json")):
        record = json.loads(path.read_text())
        record["dir"] = path.parent.name
        if "final" not in record:  # training saved, final evaluation never finished
            continue
        if record["method"] == "base":
            base = record
        else:
            runs.setdefault(record["method"], []).append(record)
    return base, runs


def _stats(values: list[float]) -> dict:
    v = np.array(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "values": [float(x) for x in v]}


def _feature_scalar(final: dict) -> float | None:
    fd = final.get("feature_diversity")
    if isinstance(fd, dict):
        for key in ("pairwise",):  # A's features.diversity: mean pairwise distance per prompt
            if isinstance(fd.get(key), (int, float)):
                return float(fd[key])
    return None


def add_feature_diversity(out: Path, log: Log, allow_training: bool = False) -> None:
    """Fill in feature-space diversity from each run's samples where the history lacks it."""
    from .evaluate import feature_metrics

    for path in sorted(out.glob("*/history.json")):
        record = json.loads(path.read_text())
        samples = path.parent / "samples.npz"
        final = record.get("final", {})
        if not samples.is_file() or "final" not in record or (
                "pairwise" in final.get("feature_diversity", {})
                and "fd_vs_rendered" in final.get("feature_diversity", {})):
            continue
        with np.load(samples) as z:
            imgs = np.concatenate([z["seen_two_images"], z["heldout_two_images"]])
            prompts = [str(p) for p in np.concatenate([z["seen_two_prompts"], z["heldout_two_prompts"]])]
        fd = feature_metrics(imgs, prompts, allow_training, log)
        if fd is None:
            log("rl summary: A's features module or its classifier is missing; pixel diversity only")
            return
        record["final"]["feature_diversity"] = {**final.get("feature_diversity", {}), **fd}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(path)


def at_queries(run: dict, queries: int, key: str) -> float:
    """The run's metric at its last evaluation with at most `queries` reward queries."""
    entries = [e for e in run["evals"] if e["queries"] <= queries]
    return float(entries[-1][key])


def summarize(out: Path, log: Log, plot: bool = True) -> dict:
    from . import NOTES

    out = Path(out)
    base, runs = load_runs(out)
    if base is None or not runs:
        raise FileNotFoundError(f"{out}: no base/history.json or no run histories to summarise")
    keys = [k for k in base["final"] if "@eta" in k]
    methods = {}
    for method, rs in runs.items():
        entry = {"runs": [r["dir"] for r in rs], "queries": [r["queries"] for r in rs],
                 "final": {k: _stats([r["final"][k] for r in rs]) for k in keys}}
        entry["final"]["pixel_diversity"] = _stats([r["final"]["pixel_diversity"] for r in rs])
        feats = [_feature_scalar(r["final"]) for r in rs]
        if all(f is not None for f in feats):
            entry["final"]["feature_diversity"] = _stats(feats)  # type: ignore[arg-type]
        fds = [r["final"].get("feature_diversity", {}).get("fd_vs_rendered") for r in rs]
        if all(isinstance(f, float) for f in fds):
            entry["final"]["fd_vs_rendered"] = _stats(fds)  # type: ignore[arg-type]
        methods[method] = entry
    base_final = dict(base["final"])
    summary: dict = {"notes": NOTES, "headline_metric": HEADLINE, "base": base_final,
                     "methods": methods}

    held, seen = "heldout_two" + HEADLINE, "seen_two" + HEADLINE
    if "b2" in runs and "ddpo" in runs:
        # Equal queries: the furthest evaluation point every B² and DDPO run reached.
        q = min(r["evals"][-1]["queries"] for m in ("b2", "ddpo") for r in runs[m])
        summary["equal_queries"] = {"queries": q, **{
            m: {k: _stats([at_queries(r, q, k) for r in runs[m]]) for k in (seen, held)}
            for m in ("b2", "ddpo")}}
    if "b2" in methods:
        b2 = methods["b2"]["final"]
        gain = 100 * (b2[held]["mean"] - base_final[held])
        goals = {"b2_heldout_gain_points": round(gain, 1), "b2_heldout_gain_met": gain >= 15}
        if "equal_queries" in summary:
            eq = summary["equal_queries"]
            goals["b2_minus_ddpo_heldout_points_at_equal_queries"] = round(
                100 * (eq["b2"][held]["mean"] - eq["ddpo"][held]["mean"]), 1)
            goals["b2_above_ddpo_met"] = eq["b2"][held]["mean"] > eq["ddpo"][held]["mean"]
        if "feature_diversity" in b2 and _feature_scalar(base_final) is not None:
            ratio = b2["feature_diversity"]["mean"] / _feature_scalar(base_final)
            goals["diversity_measure"] = "feature space (A's features.diversity)"
        else:
            ratio = b2["pixel_diversity"]["mean"] / base_final["pixel_diversity"]
            goals["diversity_measure"] = "mean pairwise RMS pixel distance"
        goals["b2_diversity_ratio"] = round(ratio, 3)
        goals["b2_diversity_met"] = ratio >= 0.9
        summary["goals"] = goals
        # The checkpoint to export: the B² seed best on *seen* prompts (held-out stays a test set).
        best = max(runs["b2"], key=lambda r: r["final"][seen])
        summary["export"] = {"b2": f"{best['dir']}/model.pt"}
        if "ddpo" in runs:
            best_d = max(runs["ddpo"], key=lambda r: r["final"][seen])
            summary["export"]["ddpo"] = f"{best_d['dir']}/model.pt"
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(out / "summary.json")
    log("rl summary: " + json.dumps(summary.get("goals", {})))
    if plot:
        from .plot import plot_alignment

        try:
            plot_alignment(runs, base, out / "alignment_vs_queries.png")
        except ImportError as e:
            log(f"rl summary: no plot here ({e}); run `python -m shapes.rl --summarize {out}` "
                "where matplotlib is installed")
    return summary

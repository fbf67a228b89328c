"""The card's figure: detector alignment against reward queries, B²-DiffuRL vs DDPO (and the
ablations), mean over seeds with the per-seed spread, seen and held-out prompts side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np

_COLOURS = {"b2": "tab:blue", "ddpo": "tab:red", "b2-nobranch": "tab:green",
            "b2-noprogressive": "tab:purple"}
_LABELS = {"b2": "B²-DiffuRL", "ddpo": "DDPO", "b2-nobranch": "B² w/o branching",
           "b2-noprogressive": "B² w/o progressive stages"}


def plot_alignment(histories: dict[str, list[dict]], base: dict | None, path: Path,
                   metric: str = "@eta0") -> Path:
    """Write the PNG atomically; `histories` maps a method to its runs' history dicts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, split, title in ((axes[0], "seen_two", "seen two-object prompts"),
                             (axes[1], "heldout_two", "held-out two-object prompts")):
        key = split + metric
        for method, runs in histories.items():
            curves = [([e["queries"] for e in r["evals"]], [e[key] for e in r["evals"]]) for r in runs]
            if not curves:
                continue
            # Runs of one method share their evaluation points up to where each stopped.
            n = min(len(q) for q, _ in curves)
            q = np.array(curves[0][0][:n])
            ys = np.array([v[:n] for _, v in curves])
            colour = _COLOURS.get(method, None)
            ax.plot(q, ys.mean(0), label=f"{_LABELS.get(method, method)} ({len(runs)} seed"
                    f"{'s' if len(runs) > 1 else ''})", color=colour,
                    linestyle="-" if method in ("b2", "ddpo") else "--")
            if len(runs) > 1:
                ax.fill_between(q, ys.min(0), ys.max(0), color=colour, alpha=0.15)
        if base is not None:
            ax.axhline(base["evals"][0][key], color="grey", linestyle=":", label="base")
        ax.set_title(title)
        ax.set_xlabel("reward queries (scored images)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"detector alignment (DDIM {metric.strip('@').replace('eta', 'η=')})")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path

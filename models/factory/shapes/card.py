"""Model cards and eval.json for the Shapes packs, from what the other stages left in the cache.

Reads the base training record (`base/train.json`), the RL summary and per-run histories and
samples (`rl/`), and the Time-Shift table (`timeshift.json`); computes the Fréchet distance of each
model's evaluation samples to rendered scenes of the same prompts in A's classifier feature space;
writes MODEL_CARD.md, eval.json and figures into every pack folder, and sets the packs' default
Time-Shift from the table's recommendation. A missing input is said so in the card, never invented.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from . import config
from .export import PACKS

Log = Callable[[str], None]
HEADLINE = "@eta0"
MODELS = (("base", "shapes-base"), ("ddpo", "shapes-ddpo"), ("b2", "shapes-b2"))


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _write_atomic(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text.encode() if isinstance(text, str) else text)
    tmp.replace(path)


def run_timeshift(base: Path, out: Path, device, smoke: bool, log: Log) -> dict:
    """A's Time-Shift measurement on the base checkpoint, written to `out`."""
    from .timeshift import run

    return run(base, out, device.type, smoke, guidance=config.BaseRecipe().guidance, log=log)


def _samples(run_dir: Path) -> tuple[np.ndarray, list[str]] | None:
    path = run_dir / "samples.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        keys = [k for k in ("seen_two", "heldout_two") if f"{k}_images" in z]
        if not keys:
            return None
        images = np.concatenate([z[f"{k}_images"] for k in keys])
        prompts = [str(p) for k in keys for p in z[f"{k}_prompts"]]
    return images, prompts


def frechet_to_rendered(images: np.ndarray, prompts: list[str], smoke: bool, seed: int = 11) -> float:
    """FD between samples and one rendered scene per sample of the same prompt (A's features)."""
    from . import features, world

    rng = np.random.default_rng(seed)
    reference = np.stack([world.render_scene(rng, p) for p in prompts])
    net = features.load_classifier(smoke=smoke)
    return features.frechet_from_features(features.features(images, net), features.features(reference, net))


def card_samples(checkpoint: Path, path: Path, smoke: bool, log: Log) -> tuple[np.ndarray, list[str]]:
    """Samples for FD and diversity where the RL stage kept none: the card's own fixed set (seen
    and held-out two-object prompts, 2 images each, DDIM 20 steps, the pack's guidance), cached."""
    if path.is_file():
        with np.load(path) as z:
            return z["images"], [str(p) for p in z["prompts"]]
    from .model import generate, load_model
    from .train_base import eval_prompt_sets

    sets = eval_prompt_sets(2 if smoke else 24)
    prompts = [p for k in ("seen_two", "heldout_two") for p in sets[k] for _ in range(2)]
    log(f"card: sampling {len(prompts)} images from {checkpoint} for FD and diversity")
    images = generate(load_model(checkpoint), prompts, steps=4 if smoke else 20,
                      guidance=config.BaseRecipe().guidance, seed=5)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, images=images, prompts=np.array(prompts))
    tmp.replace(path)
    return images, prompts


def _feature_diversity(images: np.ndarray, prompts: list[str], smoke: bool) -> dict:
    from . import features

    return features.diversity(images, prompts, features.load_classifier(smoke=smoke))


def _run_dirs(rl_dir: Path, summary: dict | None) -> dict[str, Path]:
    """The run folder each model's numbers come from: base, and the exported B² / DDPO seeds."""
    dirs = {"base": rl_dir / "base"}
    for method in ("b2", "ddpo"):
        named = (summary or {}).get("export", {}).get(method)
        if isinstance(named, str):
            dirs[method] = (rl_dir / named).parent
        else:
            found = sorted(rl_dir.glob(f"{method}-seed*/history.json"))
            if found:
                dirs[method] = found[0].parent
    return {k: v for k, v in dirs.items() if (v / "history.json").is_file()}


def collect(base: Path, rl_dir: Path, timeshift: Path, smoke: bool, log: Log) -> dict:
    """Every number the cards show, in one dict (also written as eval.json)."""
    train = _read_json(base.with_name("train.json"))
    summary = _read_json(rl_dir / "summary.json")
    table = _read_json(timeshift)
    models: dict[str, dict] = {}
    for name, run_dir in _run_dirs(rl_dir, summary).items():
        history = _read_json(run_dir / "history.json") or {}
        final = history.get("final", {})
        entry = {"run": run_dir.name, "queries": history.get("queries"),
                 **{k: v for k, v in final.items() if isinstance(v, (int, float))}}
        if isinstance(final.get("feature_diversity"), dict):
            entry["feature_diversity"] = final["feature_diversity"]
        samples = _samples(run_dir)
        checkpoint = base if name == "base" else run_dir / "model.pt"
        if samples is None and checkpoint.is_file():
            samples = card_samples(checkpoint, run_dir / "card-samples.npz", smoke, log)
        if samples is not None:
            try:
                entry["feature_diversity"] = entry.get("feature_diversity") or _feature_diversity(*samples, smoke)
            except (ImportError, FileNotFoundError) as e:
                log(f"card: no feature diversity for {name} ({e})")
            try:
                entry["frechet_distance"] = frechet_to_rendered(*samples, smoke=smoke)
                entry["frechet_samples"] = len(samples[1])
            except (ImportError, FileNotFoundError) as e:
                log(f"card: no Fréchet distance for {name} ({e})")
        models[name] = entry
    if "base" not in models and train and isinstance(train.get("eval"), dict):
        # No RL evaluation of the base: fall back to the base training's own (smaller) evaluation.
        ev = train["eval"]
        models["base"] = {"run": "base training evaluation", "queries": 0,
                          **{k + HEADLINE: v for k, v in ev.items()
                             if k in ("one_object", "seen_two", "heldout_two")}}
    if summary is None:
        log(f"card: no RL summary at {rl_dir / 'summary.json'}; the cards show the base only")
    if table is None:
        log(f"card: no Time-Shift table at {timeshift}; Time-Shift stays off by default")
    return {"format": "shapes-eval/1", "smoke": smoke, "base_training": train, "models": models,
            "rl": {k: summary[k] for k in ("notes", "goals", "equal_queries", "methods", "headline_metric")
                   if summary and k in summary},
            "timeshift": table}


def _pct(v) -> str:
    return f"{100 * v:.1f} %" if isinstance(v, (int, float)) else "n/a"


def _num(v, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "n/a"


def _diversity(entry: dict) -> tuple[str, str]:
    fd = entry.get("feature_diversity")
    mean = None
    spread = "n/a"
    if isinstance(fd, dict):
        for key in ("mean_pairwise", "mean_pairwise_distance", "pairwise"):
            if isinstance(fd.get(key), (int, float)):
                mean = fd[key]
                break
        free = {k: v for k, v in fd.items() if isinstance(v, (int, float)) and k not in
                ("mean_pairwise", "mean_pairwise_distance", "pairwise")}
        if free:
            spread = ", ".join(f"{k} {v:.2f}" for k, v in sorted(free.items()))
    return _num(mean), spread


def results_table(data: dict) -> str:
    rows = ["| model | run | reward queries | one object | seen two-object | held-out two-object "
            "| feature diversity (mean pairwise) | pixel diversity | Fréchet distance |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, pack in MODELS:
        e = data["models"].get(name)
        if e is None:
            rows.append(f"| {pack} | not run | | | | | | | |")
            continue
        div, _ = _diversity(e)
        rows.append(f"| {pack} | {e['run']} | {e.get('queries', 'n/a')} | {_pct(e.get('one_object' + HEADLINE))} "
                    f"| {_pct(e.get('seen_two' + HEADLINE))} | {_pct(e.get('heldout_two' + HEADLINE))} "
                    f"| {div} | {_num(e.get('pixel_diversity'))} | {_num(e.get('frechet_distance'), '.2f')} |")
    spreads = [f"- {pack}: {_diversity(data['models'][name])[1]}" for name, pack in MODELS
               if name in data["models"]]
    if spreads:
        rows += ["", "Spread of the attributes the prompt leaves free (A's `features.diversity`):", *spreads]
    return "\n".join(rows)


def timeshift_section(table: dict | None) -> str:
    if not table:
        return "Not measured in this build (no `timeshift.json`); the packs sample without Time-Shift."
    lines = [f"{table.get('samples_per_row')} samples per row, guidance {table.get('guidance')}, FD to rendered "
             f"scenes of the same prompts (floor, two renderings against each other: "
             f"{_num(table.get('fd_floor'), '.2f')}).", "",
             "| setting | steps | FD | ΔFD vs DDIM | alignment | Δalignment | shifted | mean shift |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.get("rows", []):
        dfd = (f"{r['delta_fd']:+.2f} ± {r['delta_fd_se']:.2f}" if "delta_fd" in r else "—")
        dal = (f"{100 * r['delta_alignment']:+.1f} ± {100 * r['delta_alignment_se']:.1f}"
               if "delta_alignment" in r else "—")
        lines.append(f"| {r['label']} | {r['steps']} | {r['fd']:.2f} | {dfd} | {_pct(r['alignment'])} | {dal} "
                     f"| {_num(r.get('shifted_fraction'), '.2f')} | {_num(r.get('mean_shift'), '+.1f')} |")
    rec = table.get("recommendation", {})
    lines += ["", f"Pack default: `timeShift: {json.dumps(rec.get('timeShift'))}` — {rec.get('why', '')}"]
    return "\n".join(lines)


def base_training_section(train: dict | None) -> str:
    if not train:
        return "No base training record found (`base/train.json`)."
    snaps = "\n".join(f"| {s['fraction']:.2f} | {_pct(s.get('one_object'))} | {_pct(s.get('seen_two'))} "
                      f"| {_pct(s.get('heldout_two'))} |" for s in train.get("snapshots", []))
    r = train.get("recipe", {})
    return f"""Trained on {train.get('device')} in {train.get('seconds')} s wall-clock (rendering, both phases,
evaluation), on {r.get('images')} scenes rendered by `world.make_dataset` (training split only: the
held-out two-object combinations never appear).

- VAE: {train.get('vae_iters')} iterations of batch {r.get('vae_batch')} ({r.get('vae_seconds')} s budget), L1 + MSE
  reconstruction of a posterior sample plus KL × {r.get('kl_weight')}; reconstruction PSNR
  {_num(train.get('vae_psnr_db'), '.2f')} dB; latent std {_num(train.get('latent_std'), '.4f')}, so `latent.scale` = 1/std.
- UNet + text encoder: {train.get('unet_iters')} iterations of batch {r.get('unet_batch')} ({r.get('unet_seconds')} s budget),
  ε-MSE with uniform t, AdamW lr {r.get('unet_lr')} (warm-up, cosine), empty prompt {_pct(r.get('cfg_dropout'))} of the
  time (classifier-free guidance), EMA {r.get('ema')}.
- EMA snapshots were sampled (DDIM, {r.get('eval_steps')} steps, guidance {r.get('guidance')}, {r.get('eval_per_prompt')}
  images per prompt) and scored by the detector; the kept one is the most trained snapshot whose seen
  two-object alignment lies in the issue's 20–60 % band, else the one closest to it. Kept: **{train.get('chosen_snapshot')}**.

| snapshot (fraction of the UNet budget) | one object | seen two-object | held-out two-object |
|---|---|---|---|
{snaps}

{_band_note(train)}"""


def _band_note(train: dict) -> str:
    """Where the kept base lands against the issue's target band, said plainly."""
    seen = train.get("eval", {}).get("seen_two")
    lo, hi = config.TARGET_BAND
    if not isinstance(seen, (int, float)):
        return ""
    if seen < lo:
        climbing = [s.get("seen_two", 0) for s in train.get("snapshots", [])]
        trend = " and was still rising from snapshot to snapshot" if climbing == sorted(climbing) else ""
        return (f"The kept base is **below** the issue's {_pct(lo)}–{_pct(hi)} target on seen two-object "
                f"prompts ({_pct(seen)}): the training budget ran out first{trend}. RL has more room "
                "than planned, and the gains below start from a weaker base.")
    if seen > hi:
        return f"The kept base is **above** the issue's target band on seen two-object prompts ({_pct(seen)})."
    return f"The kept base lies inside the issue's target band on seen two-object prompts ({_pct(seen)})."


def card_text(pack_id: str, data: dict, manifest: dict, figures: list[str], nets: dict) -> str:
    info = PACKS[pack_id]
    rl = data.get("rl", {})
    goals = rl.get("goals")
    tuning = manifest.get("tuning")
    smoke = " (SMOKE BUILD: tiny budget, numbers meaningless)" if data.get("smoke") else ""
    parts = [f"# {info['name']}{smoke}", "", info["description"], "",
             "## What it is", "",
             f"A Stable-Diffusion-shaped latent text-to-image model, 64×64 RGB, small enough to bundle "
             f"(pack {manifest.get('_bytes', 0) / 2**20:.1f} MiB):", "",
             "- `tokenizer.json`: word-level (Hugging Face tokenizers: WordLevel, Lowercase, Whitespace), "
             f"the 13 Shapes words + `[PAD]` (id 0) + `[UNK]`, padded to {manifest['components']['tokenizer']['maxLength']}; "
             "the unconditional prompt \"\" is all padding.",
             f"- `text_encoder.onnx`: token + position embeddings, {nets.get('text_layers')} pre-LN transformer "
             f"layers, width {nets.get('text_dim')} → `last_hidden_state` [B, {nets.get('max_length')}, {nets.get('text_dim')}].",
             f"- `unet.onnx`: ε-prediction UNet on 16×16×4 latents, widths {'/'.join(map(str, nets.get('unet_widths', [])))}, "
             "a ResBlock and a self-/cross-attention block per level and side; one int64 timestep per row.",
             f"- `vae_encoder.onnx` / `vae_decoder.onnx`: 64×64×3 ↔ 16×16×4 (widths "
             f"{'/'.join(map(str, nets.get('vae_widths', [])))}); the encoder outputs the posterior "
             f"mean, unscaled; `latent.scale` = {manifest['latent']['scale']:.4f}.",
             f"- Schedule {manifest['schedule']['kind']} (β {manifest['schedule']['betaStart']}–"
             f"{manifest['schedule']['betaEnd']}), T = 1000. Defaults: {json.dumps(manifest.get('defaults', {}))}.", "",
             "The Shapes world (issue 4): one or two objects (circle, square, triangle; red, green, blue, "
             "yellow) on a pale gradient; prompts `a {colour} {shape}` or `a {colour} {shape} "
             "{left of|right of|above|below} a {colour} {shape}`. A fixed 20 % of the two-object "
             "combinations is held out of all training (base and RL). Alignment is the factory's analytic "
             "detector (`shapes/detector.py`), 0/1 per image.", ""]
    if tuning:
        parts += ["## Tuning", "", f"Method **{tuning.get('method')}** from `{tuning.get('base')}`, "
                  f"{tuning.get('queries', 'n/a')} reward queries (every scored image counts), run "
                  f"`{tuning.get('recipe')}`.", "", rl.get("notes", ""), ""]
    parts += ["## Results: base, DDPO and B²-DiffuRL", "",
              "DDIM η = 0, 20 steps, the pack's guidance, fixed prompts and noise (C's `rl/evaluate.py`). "
              "Fréchet distance: samples of the seen and held-out two-object sets against one rendered "
              "scene per sample of the same prompt, in the feature space of A's Shapes classifier "
              "(lower is closer to real scenes).", "", results_table(data), ""]
    if goals:
        parts += ["Issue goals (from `rl/summary.json`):", "", "```json", json.dumps(goals, indent=1), "```", ""]
    else:
        parts += ["No RL results were available to this build: the B² and DDPO rows are empty.", ""]
    for fig in figures:
        parts += [f"![{fig}]({fig})", ""]
    parts += ["## Base training", "", base_training_section(data.get("base_training")), "",
              "## Time-Shift on this model", "", timeshift_section(data.get("timeshift")), "",
              "## Limits", "",
              "- A toy: it knows 12 objects and 4 relations, nothing else; other words map to `[UNK]`.",
              "- The base was trained on a single GPU call with a wall-clock budget; numbers above are "
              "what that budget produced, not a converged model.",
              "- Licence: MIT; trained from scratch on synthetic scenes, no third-party data or weights.", ""]
    return "\n".join(parts)


def _grid(images: np.ndarray, path: Path, cols: int = 8) -> None:
    from PIL import Image

    n = min(len(images), 2 * cols)
    rows = [np.concatenate(list(images[i:i + cols]), axis=1) for i in range(0, n - n % cols or n, cols)]
    grid = np.concatenate(rows, axis=0)
    buf = path.with_name(path.name + ".tmp.png")
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(buf)
    buf.replace(path)


def write_cards(base: Path, rl_dir: Path, timeshift: Path, packs: Path, log: Log, smoke: bool = False) -> dict:
    from common.packs import folder_bytes, write_pack_json

    import torch

    data = collect(base, rl_dir, timeshift, smoke, log)
    nets = torch.load(base, map_location="cpu")["config"]  # every pack shares the base's networks
    rec = (data.get("timeshift") or {}).get("recommendation", {})
    plot = rl_dir / "alignment_vs_queries.png"
    for name, pack_id in MODELS:
        folder = packs / pack_id
        manifest = _read_json(folder / "pack.json")
        if manifest is None:
            log(f"card: {folder} has no pack.json; skipped (export it first)")
            continue
        figures = []
        if plot.is_file():
            shutil.copyfile(plot, folder / plot.name)
            figures.append(plot.name)
        run = data["models"].get(name)
        samples = _samples(rl_dir / run["run"]) if run else None
        if samples is not None:
            _grid(samples[0], folder / "samples.png")
            figures.append("samples.png")
        manifest = {k: v for k, v in manifest.items() if k != "format"}
        manifest["components"] = {k: {f: x for f, x in c.items() if f != "sha256"}
                                  for k, c in manifest["components"].items()}
        if data.get("timeshift"):
            manifest["defaults"]["timeShift"] = rec.get("timeShift")
        if name in data["models"] and "tuning" in manifest:
            m = data["models"][name]
            manifest["tuning"]["metrics"] = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        manifest["modelCard"] = "MODEL_CARD.md"
        eval_json = {"pack": pack_id, **data}
        _write_atomic(folder / "eval.json", json.dumps(eval_json, indent=1) + "\n")
        _write_atomic(folder / "MODEL_CARD.md", card_text(
            pack_id, data, {**manifest, "_bytes": folder_bytes(folder)}, figures, nets))
        write_pack_json(folder, manifest)
        log(f"card: wrote {folder}/MODEL_CARD.md, eval.json{', ' + ', '.join(figures) if figures else ''}")
    return data

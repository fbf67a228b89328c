"""MODEL_CARD.md, written from the pack's eval.json alone (so the card never disagrees with it)."""
from __future__ import annotations

from pathlib import Path

from . import degrade
from common.files import write_text_atomic

from .config import Task

METHOD_NAMES = {
    "input": "degraded input",
    "bm3d": "colour BM3D (bm3d 4.0.3, true σ)",
    "nlm": "non-local means (scikit-image, true σ)",
    "tv": "total variation (scikit-image, true σ)",
    "wavelet": "wavelet BayesShrink (scikit-image, true σ)",
    "auto-gamma": "auto gamma correction (blind)",
    "exposure-oracle": "exposure/gamma correction with the true exposure, cast and gamma",
    "retrace": "**Retrace, 5 steps** (1 sample, 5 network calls)",
    "retrace-no-z": "Retrace, 5 steps without the added noise z (5 calls)",
    "retrace-mean2": "Retrace, mean of 2 samples (10 calls)",
    "retrace-mean4": "Retrace, mean of 4 samples (20 calls)",
}


def _condition_title(cond: str) -> str:
    if cond.startswith("sigma"):
        return f"Gaussian noise σ = {cond[5:]}/255"
    return f"Low light, exposure ×{cond[8:]} (noise and gamma at mid-range, seeded colour cast)"


def _results(record: dict) -> str:
    lines = []
    for cond, methods in record["metrics"].items():
        lines += [f"**{_condition_title(cond)}**", "", "| method | PSNR (dB) | SSIM |",
                  "|---|---:|---:|"]
        for m, v in methods.items():
            lines.append(f"| {METHOD_NAMES.get(m, m)} | {v['psnr']:.2f} | {v['ssim']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def _best_variant(methods: dict) -> tuple[str, float]:
    """The Retrace variant (single sample, no z, means of samples) with the highest PSNR."""
    name = max((m for m in methods if m.startswith("retrace")), key=lambda m: methods[m]["psnr"])
    return name, methods[name]["psnr"]


def _sampling_cost(methods: dict) -> str:
    """What the stochastic sampler's added noise z costs in PSNR, when both variants were run."""
    if "retrace-no-z" not in methods:
        return ""
    cost = methods["retrace-no-z"]["psnr"] - methods["retrace"]["psnr"]
    return (f"\n- Of the gap, {cost:.2f} dB is the price of the stochastic sampler: the same 5 calls "
            "without the added noise z score that much higher (a posterior sample keeps plausible "
            "grain and texture, which PSNR counts as error).")


def _goals(task: Task, record: dict) -> str:
    g = record["goals"]
    if task.name == "denoise":
        verdict = ("**met**" if g["met"] else f"**not met**: {1.0 - g['gain_db']:.2f} dB short")
        stretch = ("met" if g["stretch_met"] else f"not met ({2.0 - g['gain_db']:.2f} dB short)")
        methods = record["metrics"][g["condition"]]
        best, best_psnr = _best_variant(methods)
        return (f"- Goal: σ = 25, at least +1.0 dB over the best classical baseline "
                f"({METHOD_NAMES[g['baseline']]}). Retrace (5 steps) is **{g['gain_db']:+.2f} dB** "
                f"over it: {verdict}.\n- Stretch goal (+2.0 dB): {stretch}.\n"
                f"- The best Retrace variant at σ = 25, {METHOD_NAMES[best]}, is "
                f"{best_psnr - methods[g['baseline']]['psnr']:+.2f} dB against the same baseline."
                + _sampling_cost(methods))
    lines = []
    for cond, v in g.items():
        verdict = "**met**" if v["met"] else "**not met**"
        detail = []
        if v["gain_over_input_db"] < 8:
            detail.append(f"{8 - v['gain_over_input_db']:.2f} dB short of +8 dB over the input")
        if v["gain_over_baseline_db"] <= 0:
            detail.append(f"{-v['gain_over_baseline_db']:.2f} dB below {v['baseline']}")
        lines.append(f"- {_condition_title(cond)}: {v['gain_over_input_db']:+.2f} dB over the input "
                     f"(goal +8 dB), {v['gain_over_baseline_db']:+.2f} dB over the gamma correction "
                     f"({METHOD_NAMES[v['baseline']]}): {verdict}" +
                     (f" ({'; '.join(detail)})" if detail else "") + ". Against the "
                     f"{METHOD_NAMES['exposure-oracle']} (not blind, so not a baseline a user "
                     f"has): {v['gain_over_oracle_db']:+.2f} dB.")
    return "\n".join(lines)


def _training(record: dict) -> str:
    t = record["training"]
    r = t["recipe"]
    m = t["model"]
    sessions = "; ".join(f"{s['steps']} steps in {s['seconds']:.0f} s on {s['device']}"
                         for s in t["sessions"])
    return "\n".join([
        f"- Network: residual UNet, widths {m['widths']}, blocks per level {m['blocks']} "
        f"(last = middle), no normalisation layers, FiLM step embedding ({m['embed']}), "
        f"**{t['parameters']:,} parameters**; fully convolutional, H and W multiples of 8.",
        "- Resfusion (Shi et al., NeurIPS 2024): T = 12, truncated to T' = 5 "
        "(√ᾱ = 0.9958, 0.9132, 0.7586, 0.5572, 0.5); input concat[x_t, degraded] (6 channels), "
        "0-based step index, target resnoise ε + k_t·(degraded − clean), MSE loss, t uniform.",
        f"- {r['batch']} random {r['crop']}×{r['crop']} crops per step (area-weighted over the "
        "training photos, 8 flips/rotations), degradations drawn fresh every step.",
        f"- AdamW (β = 0.9, 0.99), lr {r['lr']:g} with {r['warmup']} warm-up steps and a cosine "
        f"decay to {r['min_lr_ratio']:g}×, gradient clipping {r['grad_clip']:g}, "
        f"EMA {r['ema']:g} (the exported weights).",
        f"- **{t['step']} steps**, {t['train_seconds']:.0f} s of training wall time: {sessions}."
        + (f" Final training loss {t['final_loss']:.5f}." if "final_loss" in t else ""),
    ])


def _data(record: dict) -> str:
    d = record["data"]
    lines = ["Debian packages (bookworm), fetched with `apt-get download` and unpacked with "
             "`dpkg -x`; only photographs were kept (drawings, renders and abstract art were "
             "left out by hand). Nothing of the data is in this repository.", "",
             "| package | version |", "|---|---|"]
    lines += [f"| {p} | {v} |" for p, v in d["packages"]]
    lines += ["", "| photo | split | file in the package | copyright | licence |",
              "|---|---|---|---|---|"]
    for p in d["photos"]:
        lines.append(f"| {p['id']} | {p['split']} | `{p['path']}` | {p['copyright']} | "
                     f"{p['licence']} |")
    return "\n".join(lines)


def _int8_row(record: dict) -> str:
    """The CPU variant's line: shipped with its speed-up, or measured and why it was not."""
    q = record.get("int8")
    if not q:
        return ""
    sp = q["speed"]
    if q["shipped"]:
        return (f"| CPU variant | `unet.int8.onnx` (static int8, QDQ): ×{sp['speedup']} per call at "
                f"{sp['side']}², worst loss {q['worst_drop_db']:.2f} dB on held-out 8-bit files; "
                "the engine uses it on the CPU provider |\n")
    return (f"| CPU variant | none: static int8 ran ×{sp['speedup']} faster at {sp['side']}² but lost "
            f"{q['worst_drop_db']:.2f} dB on held-out 8-bit files (limit {q['max_drop_db']} dB), so it is "
            "not shipped (eval.json `int8`) |\n")


def speed_record(task: Task, summary: dict, source: Path) -> dict:
    """The engine's speed for this pack on a 24 MP photo, from an `npm run bench` summary."""
    rows = (summary.get("details") or {}).get("restore24MP") or []
    after = next((r for r in rows if r.get("pack") == task.pack_id
                  and not str(r.get("plan", "")).startswith("before")), None)
    if after is None:
        raise SystemExit(f"{source}: no 24 MP restore of {task.pack_id} (details.restore24MP); "
                         "run `npm run bench` with the real packs first")
    before = next((r for r in rows if r.get("pack") == task.pack_id
                   and str(r.get("plan", "")).startswith("before")), None)
    machine = summary.get("machine") or {}
    return {
        "source": "npm run bench (bench/results/summary.json)",
        "date": summary.get("date"),
        "machine": f"{machine.get('cpus')} × {machine.get('model')}",
        "width": after["width"], "height": after["height"],
        "seconds": after["seconds"], "megapixels_per_second": after["megapixelsPerSecond"],
        "tile": f"{after['tiles']} tiles of {after['tileWidth']}×{after['tileHeight']}",
        "peak_rss_mib": after["peakRssMiB"],
        **({"before_megapixels_per_second": before["megapixelsPerSecond"]} if before else {}),
    }


def _speed_row(record: dict) -> str:
    s = record.get("speed")
    if s:
        before = (f"; {s['before_megapixels_per_second']} MP/s with the earlier square 256 px tiles"
                  if "before_megapixels_per_second" in s else "")
        return (f"| speed | a {s['width']}×{s['height']} photo in {s['seconds'] / 60:.1f} min = "
                f"{s['megapixels_per_second']} MP/s on CPU ({s['machine']}, onnxruntime, "
                f"{s['tile']}, peak RSS {s['peak_rss_mib']:.0f} MiB{before}; `npm run bench`, "
                f"{str(s['date'])[:10]}) |\n")
    t = record["timing"]
    return (f"| speed | {t['onnxruntime_ms_per_call']:.0f} ms per network call at {t['call_size']} "
            f"(onnxruntime CPU, {t['threads']} threads, timed during the evaluation on a shared "
            "machine) |\n")


def write_card(task: Task, pack: Path, record: dict) -> Path:
    missing = [k for k in ("training", "export", "protocol", "metrics", "goals", "timing", "data")
               if k not in record]
    if missing:
        raise SystemExit(f"{pack / 'eval.json'} has no {', '.join(missing)} record: the card needs "
                         "the export stage's and the eval stage's records (run them first)")
    proto = record["protocol"]
    e = record["export"]
    timing = record["timing"]
    smoke = " (SMOKE RUN: tiny budget, numbers meaningless)" if record.get("smoke") else ""
    degradation_doc = degrade.__doc__.split("\n\n", 1)[1].strip()
    text = f"""# {task.title}{smoke}

{task.summary} A Resfusion restoration network for Retrace: 5 network calls per image, pixel
space, any size that is a multiple of 8 (the engine tiles large photos within a 1.5 GiB
memory budget: tiles of at least {e['tile']} px, overlap {e['overlap']} px).

| | |
|---|---|
| pack id | `{record['pack']}` |
| network | `unet.onnx`, {e['onnx_bytes'] / 2**20:.2f} MiB, opset {e['opset']}; `sample` [B,6,H,W] f32 + `timestep` [B] i64 → `out_sample` [B,3,H,W] |
| sampler | Resfusion, T = 12 truncated to 5 steps, resnoise prediction |
{_speed_row(record)}{_int8_row(record)}| licence | MIT for the weights and recipe; training photos under their own licences (below) |

## Results on held-out photos

{proto['crops']} crops of {proto['crop']}×{proto['crop']} px ({proto['crops_per_photo']} per photo,
seeded) from the {len(proto['held_out_photos'])} validation photos, which no training step saw:
{', '.join(proto['held_out_photos'])}. PSNR over RGB in [0, 1] and SSIM (scikit-image,
7×7 window) are averaged over crops. The sampler is seeded.

{_results(record)}
### Goals

{_goals(task, record)}

The sampler is stochastic: the pack's default is one 5-step sample. Resfusion's truncated schedule
has exactly 5 steps at T = 12, so "more steps" here means more network calls spent on averaging
independent samples (a Monte-Carlo estimate of the posterior mean), which shows what a single
5-call sample costs.

![degraded | best classical | Retrace | clean](figure.png)

`figure.png`: degraded | {record['figure']['baseline']} | Retrace (5 steps) | clean, three held-out
crops at {_condition_title(record['figure']['condition'])}, PSNR of each panel in its label.

## Degradation (synthesised on the fly)

{degradation_doc}

Evaluation uses {'plain Gaussian noise of the stated σ, neither clipped nor quantised (the protocol the classical denoisers assume)' if task.name == 'denoise' else 'the stated exposure, gamma 2.2, shot k = 1.6e-3 and read noise 3.2e-3 (the ranges geometric middles), a seeded colour cast, clipped and quantised to 8 bits'}.

## Training

{_training(record)}

## Export and parity

- ONNX opset {e['opset']}, dynamic batch, height and width.
- torch ↔ onnxruntime, network: max abs {e['parity_unet_max_abs']:.2e} (≤ 1e-4 required).
- torch ↔ onnxruntime, whole 5-step sampler (float64 states): max abs
  {e['parity_sampler_torch_vs_onnxruntime_max_abs']:.2e}.
- Vectors for the engine's own test: `test/fixtures/parity/{e['vectors']}` (degraded input, the
  sampler's noise, the expected 5-step output, and network input/output pairs).

## Data

{_data(record)}

## Reproduce

```
npm run models:restore -- --task {task.name}                # data, train (resumes), export, eval
npm run models:restore -- --task {task.name} --only eval    # these numbers, from the committed unet.onnx
npm run models:restore -- --task {task.name} --smoke        # the whole recipe on a tiny budget
```

Evaluation took {timing['eval_seconds']:.0f} s here (2 CPU threads on a machine shared with other jobs). Recipe details:
`models/factory/restore/README.md`.
"""
    return write_text_atomic(pack / "MODEL_CARD.md", text)

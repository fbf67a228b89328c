"""Held-out evaluation of a pack's unet.onnx against classical baselines; eval.json + figure.

Only validation photos are used. Each gets `crops_per_photo` seeded crops; every condition
(a noise level or an exposure) degrades every crop with its own seeded noise, so the numbers are
reproduced bit for bit by the same command on the same packages.

denoise  : input · colour BM3D (bm3d.bm3d_rgb) · non-local means · total variation · wavelet, each
           given the true sigma (NLM's h and TV's weight are scaled from sigma by factors tuned
           on training crops) · the pack, 5 steps (one sample), and at the focus level also
           5 steps without the added z, and the mean of 2 and 4 samples (10, 20 network calls).
lowlight : input · auto gamma (blind: the power curve that brings the mean to the training
           photos' mean) · exposure oracle (inverts the true gamma, exposure and cast) · the pack.
PSNR is over all RGB values in [0, 1], averaged over crops; SSIM is scikit-image's
structural_similarity (7x7 window, data_range 1, channel_axis -1), averaged over crops.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from common.files import write_atomic, write_text_atomic
from common.onnx_io import ort_session

from . import degrade
from .config import EvalPlan, Task
from .export import onnx_net
from .schedule import draw_noises, sample, truncated_schedule

CLASSICAL = ("bm3d", "nlm", "tv", "wavelet")
NLM_GRID = (0.4, 0.6, 0.8, 1.0)
TV_GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def psnr(out: np.ndarray, clean: np.ndarray) -> float:
    mse = float(np.mean((out.astype(np.float64) - clean) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def ssim(out: np.ndarray, clean: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean, out.astype(np.float64), channel_axis=-1,
                                       data_range=1.0))


def crops_of(photos: list[tuple[str, np.ndarray]], plan: EvalPlan) -> list[tuple[str, np.ndarray]]:
    """Seeded crops (float64 HxWx3 in [0, 1]) of each photo, `crops_per_photo` each."""
    out = []
    for i, (pid, im) in enumerate(photos):
        rng = np.random.default_rng([plan.seed, i])
        for k in range(plan.crops_per_photo):
            y = int(rng.integers(0, im.shape[0] - plan.crop + 1))
            x = int(rng.integers(0, im.shape[1] - plan.crop + 1))
            out.append((f"{pid}@{x},{y}", im[y:y + plan.crop, x:x + plan.crop].astype(np.float64) / 255))
    return out


def classical(method: str, noisy: np.ndarray, sigma: float, tuned: dict) -> np.ndarray:
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

    if method == "bm3d":
        import bm3d

        out = bm3d.bm3d_rgb(noisy, sigma)
    elif method == "nlm":
        out = denoise_nl_means(noisy, h=tuned["nlm"] * sigma, sigma=sigma, fast_mode=True,
                               patch_size=5, patch_distance=6, channel_axis=-1)
    elif method == "tv":
        out = denoise_tv_chambolle(noisy, weight=tuned["tv"] * sigma, channel_axis=-1)
    elif method == "wavelet":
        out = denoise_wavelet(noisy, sigma=sigma, channel_axis=-1, convert2ycbcr=True,
                              method="BayesShrink", mode="soft", rescale_sigma=True)
    else:
        raise ValueError(method)
    return np.clip(out, 0, 1)


def tune_classical(train_crops: list[np.ndarray], sigma: float, seed: int) -> dict:
    """Pick NLM's h/sigma and TV's weight/sigma on training crops (never on held-out ones)."""
    rng = np.random.default_rng(seed)
    noisy = [c + sigma * rng.standard_normal(c.shape) for c in train_crops]
    best = {}
    for method, grid in (("nlm", NLM_GRID), ("tv", TV_GRID)):
        scores = [np.mean([psnr(classical(method, n, sigma, {method: f}), c)
                           for n, c in zip(noisy, train_crops)]) for f in grid]
        best[method] = grid[int(np.argmax(scores))]
    return best


def _to_net(img01: np.ndarray) -> np.ndarray:
    return (img01.transpose(2, 0, 1)[None] * 2 - 1).astype(np.float32).astype(np.float64)


def _from_net(x: np.ndarray) -> np.ndarray:
    return np.clip((x.transpose(0, 2, 3, 1) + 1) / 2, 0, 1)


class Restorer:
    """The pack's 5-step sampler on onnxruntime, counting network calls and their time."""

    def __init__(self, onnx_path: Path):
        session = ort_session(onnx_path)
        inner = onnx_net(session)
        self.calls, self.seconds = 0, 0.0

        def timed(feed, timestep):
            t = time.perf_counter()
            out = inner(feed, timestep)
            self.seconds += time.perf_counter() - t
            self.calls += feed.shape[0]
            return out
        self.net = timed
        self.sched = truncated_schedule()

    def run(self, degraded01: np.ndarray, rng: np.random.Generator, samples: int = 1,
            deterministic: bool = False) -> np.ndarray:
        """[samples, H, W, 3] restorations of one degraded image (float64 in [0, 1])."""
        deg = np.repeat(_to_net(degraded01), samples, axis=0)
        noises = draw_noises(rng, deg.shape, self.sched.steps, deterministic)
        return _from_net(sample(self.net, deg, noises, self.sched))


def _score(results: dict, key: str, method: str, out: np.ndarray, clean: np.ndarray) -> None:
    entry = results.setdefault(key, {}).setdefault(method, {"psnr": [], "ssim": []})
    entry["psnr"].append(psnr(out, clean))
    entry["ssim"].append(ssim(out, clean))


def _summarise(results: dict) -> dict:
    return {cond: {m: {"psnr": round(float(np.mean(v["psnr"])), 3),
                       "ssim": round(float(np.mean(v["ssim"])), 4)} for m, v in methods.items()}
            for cond, methods in results.items()}


def _restore_and_score(restorer: Restorer, degraded: np.ndarray, clean: np.ndarray, rng, outs: dict,
                       results: dict, key: str, cid: str, figure: dict, focus: bool,
                       plan: EvalPlan) -> None:
    """Adds the restorer's outputs for one crop to the baselines in `outs` and scores them all.

    At the focus level it also runs without between-step noise, averages k samples, and keeps the
    crop's outputs for the figure."""
    restored = restorer.run(degraded, rng, samples=max(plan.samples_averaged) if focus else 1)
    outs["retrace"] = restored[0]
    if focus:
        outs["retrace-no-z"] = restorer.run(degraded, rng, deterministic=True)[0]
        for k in plan.samples_averaged:
            outs[f"retrace-mean{k}"] = restored[:k].mean(axis=0)
        figure[cid] = {m: np.clip(o, 0, 1) for m, o in outs.items()} | {"clean": clean}
    for method, out in outs.items():
        _score(results, key, method, out, clean)


def _log_level(log, label: str, scores: dict, t0: float) -> None:
    log(f"eval: {label}: " + ", ".join(
        f"{m} {np.mean(v['psnr']):.2f}" for m, v in scores.items()) +
        f" dB ({time.time() - t0:.0f} s)")


def evaluate_denoise(restorer: Restorer, crops, train_crops, plan: EvalPlan, log=print):
    results, figure, tuned_all = {}, {}, {}
    for si, s in enumerate(plan.sigmas):
        sigma = s / 255
        key = f"sigma{s}"
        tuned = tune_classical(train_crops, sigma, seed=plan.seed + 100 + s)
        tuned_all[key] = tuned
        focus = s == plan.focus_sigma
        t0 = time.time()
        for ci, (cid, clean) in enumerate(crops):
            rng = np.random.default_rng([plan.seed, 1, si, ci])
            noisy = clean + sigma * rng.standard_normal(clean.shape)
            outs = {"input": noisy}
            for method in CLASSICAL:
                outs[method] = classical(method, noisy, sigma, tuned)
            _restore_and_score(restorer, noisy, clean, rng, outs, results, key, cid, figure, focus, plan)
        _log_level(log, f"sigma {s}", results[key], t0)
    return results, figure, {"classical_tuning": tuned_all}


def evaluate_lowlight(restorer: Restorer, crops, train_mean: float, plan: EvalPlan, log=print):
    results, figure = {}, {}
    for ei, e in enumerate(plan.exposures):
        key = f"exposure{e:g}"
        focus = e == plan.focus_exposure
        t0 = time.time()
        for ci, (cid, clean) in enumerate(crops):
            gen = torch.Generator().manual_seed(plan.seed * 1000 + ei * 100 + ci)
            clean_t = torch.from_numpy(clean.transpose(2, 0, 1)[None]).float()
            params = degrade.fixed_lowlight(1, e, gen, "cpu")
            dark_t = degrade.darken(clean_t, params, gen)
            dark = dark_t[0].permute(1, 2, 0).double().numpy()
            outs = {
                "input": dark,
                "auto-gamma": degrade.auto_gamma(dark_t, train_mean)[0].permute(1, 2, 0).double().numpy(),
                "exposure-oracle": degrade.undo_exposure(dark_t, params)[0].permute(1, 2, 0).double().numpy(),
            }
            rng = np.random.default_rng([plan.seed, 2, ei, ci])
            _restore_and_score(restorer, dark, clean, rng, outs, results, key, cid, figure, focus, plan)
        _log_level(log, f"exposure {e:g}", results[key], t0)
    return results, figure, {"auto_gamma_target_mean": round(train_mean, 4)}


def goals(task: Task, metrics: dict, plan: EvalPlan) -> dict:
    if task.name == "denoise":
        cond = metrics[f"sigma{plan.focus_sigma}"]
        best = max(CLASSICAL, key=lambda m: cond[m]["psnr"])
        gain = cond["retrace"]["psnr"] - cond[best]["psnr"]
        return {"condition": f"sigma{plan.focus_sigma}", "baseline": best,
                "gain_db": round(gain, 3), "goal_db": 1.0, "stretch_db": 2.0,
                "met": gain >= 1.0, "stretch_met": gain >= 2.0}
    # the goal's baseline is the blind gamma correction; the oracle (true exposure, cast and
    # gamma) is a stricter reference no real photo offers, reported beside it
    out = {}
    for cond, m in metrics.items():
        over_input = m["retrace"]["psnr"] - m["input"]["psnr"]
        over_gamma = m["retrace"]["psnr"] - m["auto-gamma"]["psnr"]
        over_oracle = m["retrace"]["psnr"] - m["exposure-oracle"]["psnr"]
        out[cond] = {"gain_over_input_db": round(over_input, 3), "goal_over_input_db": 8.0,
                     "baseline": "auto-gamma", "gain_over_baseline_db": round(over_gamma, 3),
                     "gain_over_oracle_db": round(over_oracle, 3),
                     "met": over_input >= 8.0 and over_gamma > 0}
    return out


def best_classical(task: Task, cond: dict) -> str:
    names = CLASSICAL if task.name == "denoise" else ("auto-gamma", "exposure-oracle")
    return max(names, key=lambda m: cond[m]["psnr"])


def save_figure(path: Path, figure: dict, baseline: str, labels: dict, n: int) -> None:
    """degraded | best classical | Retrace | clean, one row per held-out crop, PSNR in labels."""
    from PIL import Image, ImageDraw

    ids = list(figure)
    picks = [ids[round(i * (len(ids) - 1) / max(1, n - 1))] for i in range(min(n, len(ids)))]
    cols = ("input", baseline, "retrace", "clean")
    size = next(iter(figure.values()))["clean"].shape[0]
    head = 16
    canvas = Image.new("RGB", (len(cols) * size, len(picks) * (size + head)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, cid in enumerate(picks):
        for c, method in enumerate(cols):
            img = figure[cid][method]
            x, y = c * size, r * (size + head)
            canvas.paste(Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)), (x, y + head))
            text = labels[method]
            if method != "clean":
                text += f" {psnr(img, figure[cid]['clean']):.2f} dB"
            draw.text((x + 3, y + 2), text, fill="black")
    write_atomic(path, lambda tmp: canvas.save(tmp, format="PNG", optimize=True))


def evaluate_pack(task: Task, pack: Path, val_photos, train_photos, plan: EvalPlan,
                  data_manifest: dict, log=print) -> dict:
    t0 = time.time()
    restorer = Restorer(pack / "unet.onnx")
    crops = crops_of(val_photos, plan)
    log(f"eval: {len(crops)} crops of {plan.crop}px from {len(val_photos)} held-out photos")
    if task.name == "denoise":
        tplan = EvalPlan(crop=plan.crop, crops_per_photo=1, seed=plan.seed + 50)
        train_crops = [c for _, c in crops_of(train_photos[:4], tplan)]
        results, figure, extra = evaluate_denoise(restorer, crops, train_crops, plan, log)
        focus = f"sigma{plan.focus_sigma}"
    else:
        train_mean = float(np.mean([p.mean() / 255 for _, p in train_photos]))
        results, figure, extra = evaluate_lowlight(restorer, crops, train_mean, plan, log)
        focus = f"exposure{plan.focus_exposure:g}"
    metrics = _summarise(results)
    baseline = best_classical(task, metrics[focus])
    labels = {"input": "degraded", baseline: baseline, "retrace": "Retrace 5 steps", "clean": "clean"}
    save_figure(pack / "figure.png", figure, baseline, labels, plan.figure_crops)
    ms_per_call = 1000 * restorer.seconds / max(1, restorer.calls)
    record = {
        "protocol": {"crop": plan.crop, "crops": len(crops), "crops_per_photo": plan.crops_per_photo,
                     "held_out_photos": [pid for pid, _ in val_photos], "seed": plan.seed,
                     "sigmas": list(plan.sigmas), "exposures": list(plan.exposures),
                     "focus": focus, "samples_averaged": list(plan.samples_averaged), **extra},
        "metrics": metrics,
        "goals": goals(task, metrics, plan),
        "figure": {"file": "figure.png", "condition": focus, "baseline": baseline},
        "timing": {"eval_seconds": round(time.time() - t0, 1),
                   "onnxruntime_ms_per_call": round(ms_per_call, 1),
                   "call_size": f"{plan.crop}x{plan.crop}", "threads": 2},
        "data": {"packages": sorted({(p["package"], p["version"]) for p in data_manifest["photos"]}),
                 "photos": [{k: p[k] for k in ("id", "package", "path", "sha256", "copyright",
                                               "licence", "split")} for p in data_manifest["photos"]]},
    }
    eval_path = pack / "eval.json"
    old = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    old.update(record)
    write_text_atomic(eval_path, json.dumps(old, indent=1, ensure_ascii=False) + "\n")
    log(f"eval: {eval_path} written in {time.time() - t0:.0f} s")
    return old

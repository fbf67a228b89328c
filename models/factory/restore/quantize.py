"""The CPU variant of a restoration pack: onnxruntime static int8 quantisation (QDQ) of its
unet.onnx, calibrated on what the network really sees, kept only when it costs ≤ 0.1 dB.

Calibration feeds are recorded while the float network restores degraded crops of the TRAINING
photos through the pack's own 5-step sampler (every call's [degraded, state] input and step),
so the activation ranges are those of real use. Weights are int8 per output channel, activations
uint8 per tensor (MinMax). The int8 network and the float one then restore the same held-out
crops with the same noise, and both outputs are rounded to 8 bits before PSNR against the clean
8-bit crop, as a user's files would be. `unet.int8.onnx` is written into the pack, and named in
pack.json, only when no condition loses more than `MAX_DROP_DB`; eval.json's "int8" record says
what was measured either way.
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
from .evaluate import Restorer, crops_of, psnr
from .schedule import draw_noises, sample, truncated_schedule

MAX_DROP_DB = 0.1
CALIBRATION_CROPS = 24
INT8_FILE = "unet.int8.onnx"


def _to8(img01: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img01, 0.0, 1.0) * 255.0) / 255.0


def _degrade(task: Task, clean: np.ndarray, level: float, rng: np.random.Generator, seed: int) -> np.ndarray:
    if task.name == "denoise":
        return clean + (level / 255) * rng.standard_normal(clean.shape)
    gen = torch.Generator().manual_seed(seed)
    clean_t = torch.from_numpy(clean.transpose(2, 0, 1)[None]).float()
    dark = degrade.darken(clean_t, degrade.fixed_lowlight(1, level, gen, "cpu"), gen)
    return dark[0].permute(1, 2, 0).double().numpy()


def _levels(task: Task, plan: EvalPlan) -> list[tuple[str, float]]:
    if task.name == "denoise":
        return [(f"sigma{s}", float(s)) for s in plan.sigmas]
    return [(f"exposure{e:g}", float(e)) for e in plan.exposures]


def calibration_feeds(task: Task, pack: Path, train_photos, plan: EvalPlan) -> list[dict]:
    """The float network's inputs while it restores degraded training crops (all 5 steps)."""
    from .evaluate import _to_net  # the sampler's [-1, 1] CHW layout

    session = ort_session(pack / "unet.onnx")
    feeds: list[dict] = []

    def recording(feed: np.ndarray, timestep: np.ndarray) -> np.ndarray:
        x = feed.astype(np.float32)
        t = np.asarray(timestep, dtype=np.int64)
        feeds.append({"sample": x, "timestep": t})
        return session.run(None, {"sample": x, "timestep": t})[0]

    sched = truncated_schedule()
    cplan = EvalPlan(crop=plan.crop, crops_per_photo=2, seed=plan.seed + 700)
    crops = crops_of(train_photos, cplan)[:CALIBRATION_CROPS]
    levels = _levels(task, plan)
    rng = np.random.default_rng(plan.seed + 701)
    for i, (_, clean) in enumerate(crops):
        _, level = levels[i % len(levels)]
        degraded = _degrade(task, clean, level, rng, plan.seed + 702 + i)
        deg = _to_net(degraded)
        sample(recording, deg, draw_noises(rng, deg.shape, sched.steps, False), sched)
    return feeds


def quantize(src: Path, dst: Path, feeds: list[dict]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    def write(tmp: Path) -> None:
        pre = tmp.with_suffix(".pre.onnx")
        # Symbolic shape inference cannot follow the FiLM embedding's shapes; ONNX's own is enough.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        try:
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True)
        finally:
            pre.unlink(missing_ok=True)
    write_atomic(dst, write)


def compare(task: Task, float_path: Path, int8_path: Path, val_photos, plan: EvalPlan, log=print) -> dict:
    """Both networks on the same held-out crops and noise; PSNR of 8-bit outputs, per condition."""
    crops = crops_of(val_photos, plan)
    nets = {"float": Restorer(float_path), "int8": Restorer(int8_path)}
    out: dict = {}
    for li, (key, level) in enumerate(_levels(task, plan)):
        scores = {name: [] for name in nets}
        for ci, (_, clean) in enumerate(crops):
            degraded = _degrade(task, clean, level, np.random.default_rng([plan.seed, 9, li, ci]),
                                plan.seed * 1000 + li * 100 + ci)
            for name, net in nets.items():
                restored = net.run(degraded, np.random.default_rng([plan.seed, 10, li, ci]))[0]
                scores[name].append(psnr(_to8(restored), _to8(clean)))
        f, q = float(np.mean(scores["float"])), float(np.mean(scores["int8"]))
        out[key] = {"float_psnr": round(f, 3), "int8_psnr": round(q, 3), "drop_db": round(f - q, 3)}
        log(f"int8: {key}: float {f:.3f} dB, int8 {q:.3f} dB, drop {f - q:+.3f} dB")
    ms = {name: round(1000 * n.seconds / max(1, n.calls), 1) for name, n in nets.items()}
    return {"conditions": out, "ms_per_call": ms, "crops": len(crops)}


def speed(float_path: Path, int8_path: Path, side: int = 256, repeats: int = 5) -> dict:
    """Median seconds of one call at side², each network, 2 threads, alternating."""
    x = {"sample": np.random.default_rng(0).standard_normal((1, 6, side, side)).astype(np.float32),
         "timestep": np.array([2], dtype=np.int64)}
    sessions = {"float": ort_session(float_path), "int8": ort_session(int8_path)}
    for s in sessions.values():
        s.run(None, x)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, x)
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"side": side, "float_s": round(med["float"], 4), "int8_s": round(med["int8"], 4),
            "speedup": round(med["float"] / med["int8"], 2)}


def quantize_pack(task: Task, pack: Path, train_photos, val_photos, plan: EvalPlan, log=print) -> dict:
    t0 = time.time()
    feeds = calibration_feeds(task, pack, train_photos, plan)
    log(f"int8: {len(feeds)} calibration feeds from {CALIBRATION_CROPS} training crops")
    candidate = pack / ".unet.int8.candidate.onnx"
    quantize(pack / "unet.onnx", candidate, feeds)
    result = compare(task, pack / "unet.onnx", candidate, val_photos, plan, log)
    result["speed"] = speed(pack / "unet.onnx", candidate)
    worst = max(c["drop_db"] for c in result["conditions"].values())
    shipped = worst <= MAX_DROP_DB
    result.update({"worst_drop_db": worst, "max_drop_db": MAX_DROP_DB, "shipped": shipped,
                   "calibration": {"crops": CALIBRATION_CROPS, "feeds": len(feeds),
                                   "split": "train", "method": "MinMax",
                                   "weights": "int8 per channel", "activations": "uint8 per tensor",
                                   "format": "QDQ"},
                   "seconds": round(time.time() - t0, 1)})
    manifest_path = pack / "pack.json"
    manifest = json.loads(manifest_path.read_text())
    components = manifest["components"]
    if shipped:
        import hashlib

        candidate.replace(pack / INT8_FILE)
        digest = hashlib.sha256((pack / INT8_FILE).read_bytes()).hexdigest()
        components["unet"]["cpu"] = {"file": INT8_FILE, "sha256": digest, "precision": "int8"}
        log(f"int8: shipped {pack / INT8_FILE} (worst drop {worst:+.3f} dB, "
            f"×{result['speed']['speedup']} at {result['speed']['side']}²)")
    else:
        candidate.unlink(missing_ok=True)
        (pack / INT8_FILE).unlink(missing_ok=True)
        components["unet"].pop("cpu", None)
        log(f"int8: NOT shipped: worst drop {worst:+.3f} dB > {MAX_DROP_DB} dB")
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    eval_path = pack / "eval.json"
    record = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    record["int8"] = result
    write_text_atomic(eval_path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return result

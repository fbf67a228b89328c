"""Export a trained run as a `retrace-pack/1` restoration pack, with its parity checks.

Writes unet.onnx (opset 17; `sample` [B,6,H,W] f32 + `timestep` [B] i64 -> `out_sample`), checks
torch <-> onnxruntime on the network vectors (<= 1e-4) and on the whole 5-step sampler, writes the
engine's parity vectors and pack.json, and starts eval.json with the training and export records.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from common.files import write_text_atomic
from common.onnx_io import OPSET, export_onnx, ort_session, parity
from common.packs import write_pack_json
from common.vectors import write_vectors

from . import degrade
from .config import Task
from .schedule import BETA_END_NUM, BETA_START_NUM, T_NOMINAL, sample, truncated_schedule

UNET_TOL = 1e-4
SAMPLER_TOL = 1e-4  # torch vs onnxruntime through all 5 steps; the engine is held to 1e-3
VECTOR_SIZE = 32
TILE, OVERLAP = 256, 32
LICENCE = ("MIT (weights and recipe). Trained and evaluated on photographs under GPL-2+, LGPL-3, "
           "CC-BY-4.0, CC-BY-SA-3.0, CC-BY-SA-4.0 and CC0-1.0, each listed in MODEL_CARD.md.")


def onnx_net(session):
    def net(feed: np.ndarray, timestep: np.ndarray) -> np.ndarray:
        return session.run(None, {"sample": feed, "timestep": timestep})[0]
    return net


def torch_net(model):
    def net(feed: np.ndarray, timestep: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(feed), torch.from_numpy(timestep)).numpy()
    return net


def _vector_inputs(task: Task, val_photo: np.ndarray, seed: int):
    """A 32x32 degraded crop of a held-out photo, the sampler's noise, and network feeds."""
    rng = np.random.default_rng(seed)
    s = VECTOR_SIZE
    y, x = (val_photo.shape[0] - s) // 2, (val_photo.shape[1] - s) // 2
    clean = torch.from_numpy(np.array(val_photo[y:y + s, x:x + s])).permute(2, 0, 1)[None].double() / 255
    gen = torch.Generator().manual_seed(seed)
    deg01 = degrade.DEGRADE[task.name](clean.float(), gen)
    degraded = (deg01 * 2 - 1).numpy().astype(np.float64)  # float32 values: the file holds them exactly
    sched = truncated_schedule()
    noise = rng.standard_normal((sched.steps, 1, 3, s, s)).astype(np.float32).astype(np.float64)
    unet_sample = np.concatenate([
        np.concatenate([0.5 * degraded + np.sqrt(0.75) * noise[0], degraded], axis=1),
        np.concatenate([rng.uniform(-1, 1, (1, 3, s, s)), degraded], axis=1),
    ]).astype(np.float32)
    unet_timestep = np.array([sched.steps - 1, 1], dtype=np.int64)
    return degraded, noise, unet_sample, unet_timestep


def export_pack(task: Task, model: torch.nn.Module, train_state: dict, out: Path,
                vectors: Path, val_photo: np.ndarray, smoke: bool, log=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    sched = truncated_schedule()
    model = model.eval().cpu()
    onnx_path = out / "unet.onnx"
    dummy = {"sample": np.zeros((1, 6, 64, 64), np.float32), "timestep": np.zeros((1,), np.int64)}
    export_onnx(model, dummy, onnx_path, ["out_sample"],
                {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                 "out_sample": {0: "batch", 2: "height", 3: "width"}})
    session = ort_session(onnx_path)
    log(f"export: {onnx_path} ({onnx_path.stat().st_size / 2**20:.2f} MiB, opset {OPSET})")

    degraded, noise, unet_sample, unet_timestep = _vector_inputs(task, val_photo, seed=3)
    feeds = {"sample": unet_sample, "timestep": unet_timestep}
    unet_err = parity(model, session, feeds)
    rng = np.random.default_rng(4)
    odd = {"sample": rng.uniform(-1, 1, (1, 6, 48, 80)).astype(np.float32),
           "timestep": np.array([2], np.int64)}
    odd_err = parity(model, session, odd)
    expected = sample(onnx_net(session), degraded, list(noise), sched).astype(np.float32)
    via_torch = sample(torch_net(model), degraded, list(noise), sched)
    sampler_err = float(np.abs(via_torch - expected).max())
    log(f"export: parity unet {unet_err:.2e} (32x32), {odd_err:.2e} (48x80); "
        f"5-step sampler torch vs onnxruntime {sampler_err:.2e}")
    for name, err, tol in (("unet", unet_err, UNET_TOL), ("unet 48x80", odd_err, UNET_TOL),
                           ("sampler", sampler_err, SAMPLER_TOL)):
        if not err <= tol:
            raise AssertionError(f"parity {name}: max abs {err:.3e} > {tol:g}")

    out_sample = model(torch.from_numpy(unet_sample), torch.from_numpy(unet_timestep)).detach().numpy()
    write_vectors(vectors, {
        "degraded": degraded.astype(np.float32),
        "noise": noise.astype(np.float32),
        "expected": expected,
        "unet.sample": unet_sample,
        "unet.timestep": unet_timestep,
        "unet.out_sample": out_sample.astype(np.float32),
    }, {"format": "retrace-parity/1", "pack": task.pack_id, "sampler": "resfusion",
        "steps": str(sched.steps)})
    log(f"export: parity vectors {vectors} ({vectors.stat().st_size / 1024:.0f} KiB)")

    manifest = {
        "id": task.pack_id,
        "name": task.title + (" (smoke)" if smoke else ""),
        "description": task.summary + " Resfusion, 5 network calls.",
        "version": "1.0.0",
        "task": "restoration",
        "space": "pixel",
        "resolution": {"default": [TILE, TILE], "multipleOf": model.multiple_of},
        "schedule": {"kind": "resfusion_truncated", "betaStart": BETA_START_NUM / T_NOMINAL,
                     "betaEnd": BETA_END_NUM / T_NOMINAL, "trainSteps": T_NOMINAL},
        "prediction": "resnoise",
        "timestepInput": "int64",
        "timestepIsIndex": True,
        "components": {"unet": {"file": onnx_path.name}},
        "defaults": {"steps": sched.steps},
        "restoration": {"degradation": task.degradation, "steps": sched.steps, "tile": TILE,
                        "overlap": OVERLAP},
        "modelCard": "MODEL_CARD.md",
        "licence": LICENCE,
    }
    write_pack_json(out, manifest)

    record = {
        "pack": task.pack_id,
        "task": task.name,
        "smoke": smoke,
        "training": {k: train_state[k] for k in ("step", "total_steps", "recipe", "model",
                                                 "parameters", "train_seconds", "sessions")},
        "export": {
            "opset": OPSET,
            "onnx_bytes": onnx_path.stat().st_size,
            "parity_unet_max_abs": max(unet_err, odd_err),
            "parity_sampler_torch_vs_onnxruntime_max_abs": sampler_err,
            "vectors": str(vectors.name),
            "tile": TILE,
            "overlap": OVERLAP,
        },
    }
    final_losses = [v for _, v in train_state["loss_log"][-4:]]
    if final_losses:
        record["training"]["final_loss"] = float(np.mean(final_losses))
    eval_path = out / "eval.json"
    old = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
    old.update(record)
    write_text_atomic(eval_path, json.dumps(old, indent=1, ensure_ascii=False) + "\n")
    return record

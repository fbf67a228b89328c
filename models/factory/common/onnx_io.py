"""ONNX export and torch <-> onnxruntime parity, the same way for every pack.

Export uses opset 17 (the newest the factory's torch 1.13 writes and that onnxruntime-node reads),
named inputs/outputs as in the diffusers ONNX exports, and dynamic axes. Parity compares the torch
module and an onnxruntime CPU session on the same float32/int64 feeds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .files import write_atomic

OPSET = 17


def export_onnx(module: torch.nn.Module, feeds: Mapping[str, np.ndarray], path: str | Path,
                output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]],
                opset: int = OPSET) -> Path:
    """Export `module(*feeds.values())` to `path` with the feeds' names as input names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().cpu()
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())
    import onnx

    def write(tmp: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(module, args, str(tmp), input_names=list(feeds.keys()),
                              output_names=list(output_names), dynamic_axes=dict(dynamic_axes),
                              opset_version=opset, do_constant_folding=True)
        onnx.checker.check_model(onnx.load(str(tmp)))
    return write_atomic(path, write)


def ort_session(path: str | Path, threads: int = 2):
    """An onnxruntime CPU session with a fixed thread count (reproducible timings)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def torch_outputs(module: torch.nn.Module, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    module = module.eval().cpu()
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
    return out.numpy()


def parity(module: torch.nn.Module, session, feeds: Mapping[str, np.ndarray]) -> float:
    """Max abs difference between torch's and onnxruntime's first output on `feeds`."""
    ours = torch_outputs(module, feeds)
    theirs = session.run(None, dict(feeds))[0]
    if ours.shape != theirs.shape:
        raise AssertionError(f"shape mismatch: torch {ours.shape}, onnxruntime {theirs.shape}")
    return float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))

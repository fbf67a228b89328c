"""Safetensors test-vector files: the fixtures that prove the engine matches the factory.

A vector file is a plain safetensors file (little-endian, readable by any safetensors reader):
named tensors plus `__metadata__`, a string -> string map that names the format and the pack.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .files import write_atomic

_DTYPES = (np.float32, np.float64, np.int64, np.int32, np.uint8)


def write_vectors(path: str | Path, tensors: Mapping[str, np.ndarray],
                  metadata: Mapping[str, str]) -> Path:
    """Write `tensors` (kept in their dtype) and string `metadata` to a safetensors file."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, value in tensors.items():
        value = np.ascontiguousarray(value)
        if value.dtype.type not in _DTYPES:
            raise TypeError(f"{name}: dtype {value.dtype} is not one the engine reads")
        arrays[name] = value
    meta = {str(k): str(v) for k, v in metadata.items()}
    return write_atomic(path, lambda tmp: save_file(arrays, str(tmp), metadata=meta))


def read_vectors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a vector file back: (tensors, metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = dict(f.metadata() or {})
    return tensors, metadata

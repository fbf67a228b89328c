"""One way for every recipe to choose where torch runs.

The factory's default is a 2-core CPU (Debian's torch with oneDNN); `cuda` is opt-in and must be
real: asking for it on a machine without a GPU is an error, not a silent fallback, so that a
recipe's record of where it trained is always true.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

DEFAULT_CPU_THREADS = 2


def select_device(name: str = "cpu", threads: int | None = None) -> torch.device:
    """Return the torch device for `name` ('cpu', 'cuda' or 'auto') and configure it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
        return torch.device("cuda")
    if name != "cpu":
        raise ValueError(f"unknown device {name!r} (cpu, cuda or auto)")
    n = threads or int(os.environ.get("RETRACE_THREADS", DEFAULT_CPU_THREADS))
    torch.set_num_threads(n)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe(device: torch.device) -> str:
    """A line for logs and model cards: the device and the torch build."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"

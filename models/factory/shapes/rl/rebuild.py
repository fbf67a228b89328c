"""Rebuild each run's full checkpoint from the base and its small `adapter.pt`.

The GPU machine returns only a few small files, so the tuned UNets come back as LoRA adapters;
merging them here reproduces the evaluated weights, which the recorded UNet digest confirms.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from .lora import apply_adapter
from .train import unet_sha256


def rebuild_all(base_path: Path, out: Path, log: Callable[[str], None]) -> list[Path]:
    from ..model import load_model, save_model

    written = []
    for adapter_path in sorted(Path(out).glob("*/adapter.pt")):
        run_dir = adapter_path.parent
        history = json.loads((run_dir / "history.json").read_text())
        blob = torch.load(adapter_path, map_location="cpu")
        if not isinstance(blob, dict) or blob.get("format") != "shapes-lora/1":
            raise ValueError(f"{adapter_path}: not a Shapes LoRA adapter (format field)")
        model = load_model(base_path, "cpu")
        apply_adapter(model.unet, blob["state"])
        digest = unet_sha256(model)
        if digest != history["unet_sha256"]:
            raise ValueError(f"{run_dir}: rebuilt UNet digest {digest[:12]} differs from the "
                             f"evaluated one {history['unet_sha256'][:12]} (wrong base checkpoint?)")
        written.append(save_model(model, run_dir / "model.pt",
                                  extra={"method": history["method"], "seed": history["seed"],
                                         "queries": history["queries"], "unet_sha256": digest}))
        log(f"rl rebuild: {run_dir.name}/model.pt (UNet digest {digest[:12]} matches)")
    return written

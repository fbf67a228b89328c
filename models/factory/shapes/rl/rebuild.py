"""Rebuild each run's full checkpoint from the base and its tuned weights.

The GPU machine returns only a few files, so a run comes back as its UNet (`unet.pt`, full
fine-tuning) or its LoRA adapter (`adapter.pt`); putting it into the base here reproduces the
evaluated weights, which the UNet digest recorded in `history.json` confirms.
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
    for history_path in sorted(Path(out).glob("*/history.json")):
        run_dir = history_path.parent
        history = json.loads(history_path.read_text())
        if history["method"] == "base":
            continue
        model = load_model(base_path, "cpu")
        if (run_dir / "unet.pt").is_file():
            blob = torch.load(run_dir / "unet.pt", map_location="cpu")
            if not isinstance(blob, dict) or blob.get("format") != "shapes-unet/1":
                raise ValueError(f"{run_dir / 'unet.pt'}: not a Shapes UNet file (format field)")
            model.unet.load_state_dict(blob["state"])
        elif (run_dir / "adapter.pt").is_file():
            blob = torch.load(run_dir / "adapter.pt", map_location="cpu")
            if not isinstance(blob, dict) or blob.get("format") != "shapes-lora/1":
                raise ValueError(f"{run_dir / 'adapter.pt'}: not a Shapes LoRA adapter (format field)")
            apply_adapter(model.unet, blob["state"])
        else:
            log(f"rl rebuild: {run_dir.name} has no unet.pt or adapter.pt here; skipped")
            continue
        digest = unet_sha256(model)
        if digest != history["unet_sha256"]:
            raise ValueError(f"{run_dir}: rebuilt UNet digest {digest[:12]} differs from the "
                             f"evaluated one {history['unet_sha256'][:12]} (wrong base checkpoint?)")
        written.append(save_model(model, run_dir / "model.pt",
                                  extra={"method": history["method"], "seed": history["seed"],
                                         "queries": history["queries"], "unet_sha256": digest}))
        log(f"rl rebuild: {run_dir.name}/model.pt (UNet digest {digest[:12]} matches)")
    return written

"""The two restoration tasks, the training recipe and where things live on disk."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

FACTORY = Path(__file__).resolve().parents[1]
REPO = FACTORY.parents[1]
CACHE = FACTORY / ".cache" / "restore"


@dataclass(frozen=True)
class Task:
    name: str  # CLI name
    pack_id: str
    title: str
    degradation: str  # pack.json restoration.degradation
    summary: str


TASKS = {
    "denoise": Task("denoise", "restore-denoise", "Retrace Restore · Denoise", "noise",
                    "Removes Gaussian and shot noise (sigma 5-50 of 255) from photos."),
    "lowlight": Task("lowlight", "restore-lowlight", "Retrace Restore · Low light", "lowlight",
                     "Brightens under-exposed photos (x0.05-0.3) and removes their noise and cast."),
}


@dataclass(frozen=True)
class Recipe:
    crop: int = 128
    batch: int = 32
    steps: int = 6000  # total optimiser steps; the learning-rate schedule spans them
    lr: float = 5e-4
    warmup: int = 200
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.0
    ema: float = 0.999
    grad_clip: float = 1.0
    seed: int = 20261123
    checkpoint_every_s: float = 300.0

    def as_dict(self) -> dict:
        return asdict(self)


RECIPE = Recipe()
SMOKE_RECIPE = replace(RECIPE, crop=64, batch=2, steps=8, warmup=2, ema=0.9,
                       checkpoint_every_s=1e9)


@dataclass(frozen=True)
class EvalPlan:
    crop: int = 128  # colour BM3D takes ~10 s per 128 px crop on 2 cores; 256 px would take minutes
    crops_per_photo: int = 1
    sigmas: tuple[int, ...] = (15, 25, 50)
    exposures: tuple[float, ...] = (0.05, 0.1, 0.2)
    focus_sigma: int = 25  # the goal level: also deterministic and averaged samplers there
    focus_exposure: float = 0.1
    samples_averaged: tuple[int, ...] = (2, 4)
    figure_crops: int = 3
    seed: int = 7


# Denoise pays for BM3D on every crop and noise level, so it sees one crop per held-out photo;
# low-light has only cheap baselines and takes two.
EVAL = {"denoise": EvalPlan(), "lowlight": EvalPlan(crops_per_photo=2)}
SMOKE_EVAL = EvalPlan(crop=64, crops_per_photo=1, samples_averaged=(2,), figure_crops=2)


def pack_dir(task: Task) -> Path:
    return REPO / "models" / "packs" / task.pack_id


def vectors_path(task: Task) -> Path:
    return REPO / "test" / "fixtures" / "parity" / f"{task.pack_id}.safetensors"

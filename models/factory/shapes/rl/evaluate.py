"""How well a (tuned) model follows prompts, and how varied its images stay.

Alignment is the detector's mean 0/1 score on fixed prompt sets (B's `eval_prompt_sets`: one-object,
seen two-object, held-out two-object) from fixed seeds, so every checkpoint is compared on the same
prompts and the same initial noise. It is measured with deterministic DDIM (η = 0, what the app
samples) and with the η = 1 policy the RL trains.

Diversity is the mean pairwise distance between images of the same prompt: in the penultimate
feature space of A's Shapes classifier (`features.diversity`) where that is available, and always
as RMS pixel distance (reported under its own name, never mixed).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class EvalSpec:
    prompts: int  # prompts drawn per two-object set
    per_prompt: int  # images per prompt (≥ 2 for diversity)
    steps: int
    guidance: float
    etas: tuple[float, ...] = (0.0, 1.0)
    seed: int = 7
    batch: int = 512
    one_object: int | None = None  # how many of the 12 one-object prompts (None: all)


def prompt_sets(spec: EvalSpec) -> dict[str, list[str]]:
    """B's fixed evaluation sets (the ones the base was chosen on), `spec.prompts` per two-object set."""
    from ..train_base import eval_prompt_sets

    sets = eval_prompt_sets(spec.prompts)
    if spec.one_object is not None:
        sets["one_object"] = sets["one_object"][:spec.one_object]
    return sets


@torch.no_grad()
def generate(model, prompts: list[str], spec: EvalSpec, eta: float) -> np.ndarray:
    """uint8 [N,64,64,3] for `prompts`, noise from a CPU generator seeded by `spec.seed`."""
    from ..model import ddim_sample, to_uint8

    gen = torch.Generator().manual_seed(spec.seed)
    step_gen = torch.Generator(device=model.device).manual_seed(spec.seed + 1)
    out = []
    for i in range(0, len(prompts), spec.batch):
        chunk = prompts[i:i + spec.batch]
        noise = torch.randn((len(chunk), model.cfg.latent_channels, 16, 16), generator=gen)
        z = ddim_sample(model, chunk, noise, spec.steps, spec.guidance, eta=eta,
                        generator=step_gen if eta > 0 else None)
        out.append(to_uint8(model.decode(z.float())))
    return np.concatenate(out) if out else np.zeros((0, 64, 64, 3), np.uint8)


def alignment(model, sets: dict[str, list[str]], spec: EvalSpec,
              keep_images: bool = False) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, list[str]]]]:
    """{"<set>@eta<η>": mean score} for every set and η; optionally the η = 0 images per set."""
    from ..detector import score

    was_training = model.training
    model.eval()
    scores: dict[str, float] = {}
    images: dict[str, tuple[np.ndarray, list[str]]] = {}
    for eta in spec.etas:
        for name, prompts in sets.items():
            rep = [p for p in prompts for _ in range(spec.per_prompt)]
            imgs = generate(model, rep, spec, eta)
            scores[f"{name}@eta{eta:g}"] = float(np.mean(score(imgs, rep))) if rep else float("nan")
            if keep_images and eta == 0.0:
                images[name] = (imgs, rep)
    model.train(was_training)
    return scores, images


def pixel_diversity(images: np.ndarray, prompts: list[str]) -> float:
    """Mean over prompts of the mean pairwise RMS distance (pixels in [0, 1]) of its images."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    per_prompt = []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        d = [np.sqrt(np.mean((x[a] - x[b]) ** 2)) for a, b in itertools.combinations(idx, 2)]
        per_prompt.append(float(np.mean(d)))
    if not per_prompt:
        raise ValueError("pixel_diversity needs at least one prompt with two or more images")
    return float(np.mean(per_prompt))


def feature_metrics(images: np.ndarray, prompts: list[str], allow_training: bool,
                    log=print) -> dict | None:
    """A's `features.diversity` plus the Fréchet distance to rendered scenes of the same prompts
    (`fd_vs_rendered`), or None when that module or its cached classifier is missing and
    `allow_training` is false (training it would eat the GPU call's budget). Each part that fails
    (e.g. a SciPy API difference on another machine) is logged and left out, never fatal."""
    try:
        from .. import features, world
    except ImportError:
        return None
    if not allow_training and not Path(features.FEATURES_PATH).is_file():
        return None
    out: dict = {}
    try:
        out.update(features.diversity(images, prompts))
    except Exception as e:  # noqa: BLE001 - an optional metric; the caller records its absence
        log(f"feature diversity failed: {type(e).__name__}: {e}")
    try:
        rng = np.random.default_rng(12345)
        reference = np.stack([world.render_scene(rng, p) for p in prompts])
        out["fd_vs_rendered"] = features.frechet_distance(images, reference)
    except Exception as e:  # noqa: BLE001
        log(f"feature FD failed: {type(e).__name__}: {e}")
    return out or None

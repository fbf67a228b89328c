"""A feature space for Shapes images: Fréchet distance and diversity, like FID with a tiny net.

A small CNN learns the attributes of rendered scenes (which coloured shapes are present, how many,
where and how big, the background colour); its 64-d penultimate activations are the features.
It is trained once, on the CPU with a fixed seed, and cached in `.cache/shapes/features.pt`, so
every stage (base, RL, Time-Shift, card) measures in the same space.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import detector, world
from .config import CACHE

FEATURES_PATH = CACHE / "features.pt"
FORMAT = "shapes-features/1"
FEATURE_DIM = 64
_TYPES = [(c, s) for c in world.COLOURS for s in world.SHAPES]
_TYPE_INDEX = {t: i for i, t in enumerate(_TYPES)}
# Per-type regression targets: centroid x, centroid y, box size (all / 64).
_GEOM = 3


class SceneNet(nn.Module):
    """64×64 RGB → 64-d features → attribute heads.

    Global max and mean pooling make "is there a red triangle" translation invariant (learned in
    a few hundred steps); a coarse 2×2 pooled map keeps where things are.
    """

    def __init__(self):
        super().__init__()
        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.SiLU()]
        self.convs = nn.Sequential(*block(3, 32, 2), *block(32, 64, 2), *block(64, 64, 1),
                                   *block(64, 64, 2))
        self.where = nn.Sequential(nn.Conv2d(64, 16, 1), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.project = nn.Sequential(nn.Linear(64 + 64 + 64, 128), nn.SiLU(),
                                     nn.Linear(128, FEATURE_DIM))
        n = len(_TYPES)
        # present (n), count (2: one or two objects), geometry (n × 3), background RGB (3).
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(FEATURE_DIM, n + 2 + n * _GEOM + 3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        pooled = torch.cat([h.amax((2, 3)), h.mean((2, 3)), self.where(h)], 1)
        return self.project(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _to_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def attribute_targets(images: np.ndarray) -> dict[str, np.ndarray]:
    """Training targets read off rendered scenes by the detector (exact on rendered scenes)."""
    n, k = len(images), len(_TYPES)
    present = np.zeros((n, k), np.float32)
    count = np.zeros(n, np.int64)
    geom = np.zeros((n, k, _GEOM), np.float32)
    background = np.zeros((n, 3), np.float32)
    for i, img in enumerate(images):
        found = detector.detect(img)
        count[i] = min(max(len(found), 1), 2) - 1
        for f in found:
            j = _TYPE_INDEX.get((f.colour, f.shape))
            if j is None or present[i, j]:
                continue
            present[i, j] = 1
            geom[i, j] = (f.x / 64, f.y / 64, max(f.width, f.height) / 64)
        bg = img[detector.colour_labels(img) < 0]
        background[i] = bg.mean(0) / 127.5 - 1 if len(bg) else 0
    return {"present": present, "count": count, "geom": geom, "background": background}


def _loss(out: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    k = len(_TYPES)
    present, count = out[:, :k], out[:, k:k + 2]
    geom = out[:, k + 2:k + 2 + k * _GEOM].reshape(-1, k, _GEOM)
    background = out[:, -3:]
    mask = t["present"][..., None]
    geom_loss = ((geom - t["geom"]) ** 2 * mask).sum() / mask.sum().clamp(min=1) / _GEOM
    # Presence summed over the types (not averaged): otherwise the regression terms drown it and
    # the net settles on the prior.
    presence = nn.functional.binary_cross_entropy_with_logits(present, t["present"],
                                                              reduction="sum") / len(out)
    return (presence + nn.functional.cross_entropy(count, t["count"])
            + 5 * geom_loss + ((background - t["background"]) ** 2).mean())


def train_classifier(n_images: int = 6000, epochs: int = 4, seed: int = 0, batch: int = 64,
                     log=print, check_images: int = 1000) -> tuple[SceneNet, dict]:
    """Train the feature net on rendered scenes (CPU, seeded). Returns (net, metadata).

    `check_images` held-out scenes measure the presence accuracy recorded in the metadata (0:
    not measured, None recorded; the tests measure their own)."""
    started = time.time()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = SceneNet()
    finally:
        torch.random.set_rng_state(gen_state)
    images, _ = world.make_dataset(n_images, seed=10_000 + seed, two_prob=0.7)
    x = _to_input(images)
    targets = {k: torch.from_numpy(v) for k, v in attribute_targets(images).items()}
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * (n_images // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    order_gen = torch.Generator().manual_seed(seed)
    net.train()
    step = 0
    for epoch in range(epochs):
        perm = torch.randperm(n_images, generator=order_gen)
        total = 0.0
        for i in range(n_images // batch):
            idx = perm[i * batch:(i + 1) * batch]
            loss = _loss(net(x[idx]), {k: v[idx] for k, v in targets.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss)
        log(f"features: epoch {epoch + 1}/{epochs} loss {total / (n_images // batch):.4f}")
    net.eval()
    acc = None
    if check_images:
        check, _ = world.make_dataset(check_images, seed=20_000 + seed)
        acc = _presence_accuracy(net, check)
    meta = {"images": n_images, "epochs": epochs, "seed": seed, "steps": step,
            "seconds": round(time.time() - started, 1), "presence_accuracy": acc}
    shown = "not measured" if acc is None else f"{acc:.4f}"
    log(f"features: held-out presence accuracy {shown} ({meta['seconds']} s)")
    return net, meta


@torch.no_grad()
def _presence_accuracy(net: SceneNet, images: np.ndarray) -> float:
    t = attribute_targets(images)["present"]
    out = net(_to_input(images))[:, :len(_TYPES)].numpy()
    return float(((out > 0) == (t > 0.5)).all(1).mean())


def save_classifier(net: SceneNet, meta: dict, path: str | Path = FEATURES_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Metadata as JSON text: torch 1.13's weights-only loader cannot read pickled floats.
    torch.save({"format": FORMAT, "state_dict": net.state_dict(), "meta": json.dumps(meta)}, tmp)
    tmp.replace(path)
    return path


SMOKE_FEATURES_PATH = CACHE / "smoke" / "features.pt"
# The smoke recipe's classifier: a few steps, only so that every stage runs end to end quickly.
SMOKE_TRAINING = {"n_images": 512, "epochs": 1}
_CACHED: dict[str, SceneNet] = {}


def load_classifier(path: str | Path | None = None, train_if_missing: bool = True,
                    smoke: bool = False, log=print) -> SceneNet:
    """The cached feature net (the smoke one with `smoke`); trained and saved if missing (a few
    minutes on this CPU for the real one, seconds for the smoke one)."""
    path = Path(path or (SMOKE_FEATURES_PATH if smoke else FEATURES_PATH))
    key = str(path.resolve())
    if key in _CACHED:
        return _CACHED[key]
    if not path.is_file():
        if not train_if_missing:
            raise FileNotFoundError(f"feature classifier {path} does not exist")
        log(f"features: training the feature classifier into {path}")
        save_classifier(*train_classifier(log=log, **(SMOKE_TRAINING if smoke else {})), path=path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a Shapes feature classifier (format must be {FORMAT})")
    net = SceneNet()
    net.load_state_dict(blob["state_dict"])
    net.eval()
    _CACHED[key] = net
    return net


@torch.no_grad()
def features(images: np.ndarray, net: SceneNet | None = None, batch: int = 512) -> np.ndarray:
    """Penultimate features, float64 [N, 64], of uint8 [N,64,64,3] images."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
        raise ValueError(f"features: images must be uint8 [N,64,64,3], "
                         f"got {images.dtype} {list(images.shape)}")
    net = net or load_classifier()
    # Each distinct image goes through the net once and its row is copied to all its duplicates:
    # a float32 forward pass is not bit-identical for one image at two places in a batch (the
    # kernels block and vectorise over the batch differently on each CPU), so copies would get
    # features ~1e-8 apart and a set of copies would not measure exactly zero diversity. Distinct
    # images keep their order of first appearance, so a set without duplicates is batched as
    # before.
    slot_of: dict[bytes, int] = {}
    slot = np.array([slot_of.setdefault(img.tobytes(), len(slot_of)) for img in images], np.intp)
    distinct = images[np.unique(slot, return_index=True)[1]]
    out = [net.features(_to_input(distinct[i:i + batch])).double().numpy()
           for i in range(0, len(distinct), batch)]
    return np.concatenate(out)[slot] if out else np.zeros((0, FEATURE_DIM))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance matrix (tiny negative eigenvalues taken as 0)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2(ΣaΣb)^½) of two feature sets (rows are samples).

    tr((ΣaΣb)^½) is taken as the sum of the singular values of Σa^½·Σb^½ (their squares are the
    eigenvalues of ΣaΣb): two symmetric square roots and an SVD, each accurate to float64 rounding
    of ‖Σ‖, with no regularisation. The usual sqrtm of the non-symmetric product ΣaΣb loses digits
    in proportion to its condition number (a set measured against itself came out at −7e-10 with
    64-d features of 240 images, −5e-5 with 8 images); this way it is 0 to ~1e-12.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs at least two images on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr_root = np.linalg.svd(_psd_sqrt(cov_a) @ _psd_sqrt(cov_b), compute_uv=False).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_root)


def frechet_distance(images_a: np.ndarray, images_b: np.ndarray,
                     net: SceneNet | None = None) -> float:
    """Fréchet distance between two uint8 [N,64,64,3] image sets in the classifier's features."""
    net = net or load_classifier()
    return frechet_from_features(features(images_a, net), features(images_b, net))


def _free_attributes(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: object centroid x, y and box size (means over its objects; NaN if none), and
    the background's mean luminance and tint (chroma of its mean colour)."""
    n = len(images)
    out = {k: np.full(n, np.nan) for k in ("x", "y", "size", "bg_luminance", "bg_tint")}
    for i, img in enumerate(images):
        found = detector.detect(img)
        if found:
            out["x"][i] = np.mean([f.x for f in found])
            out["y"][i] = np.mean([f.y for f in found])
            out["size"][i] = np.mean([max(f.width, f.height) for f in found])
        bg = img[detector.colour_labels(img) < 0].astype(float)
        if len(bg):
            mean = bg.mean(0)
            out["bg_luminance"][i] = mean.mean()
            out["bg_tint"][i] = mean.max() - mean.min()
    return out


def _grouped(values: np.ndarray, groups: list[np.ndarray], stat) -> float:
    """Mean over prompt groups of `stat` of their finite values (groups with ≥ 2 values)."""
    per = [stat(v[np.isfinite(v)]) for v in (values[g] for g in groups) if np.isfinite(v).sum() >= 2]
    return float(np.mean(per)) if per else float("nan")


def diversity(images: np.ndarray, prompts: list[str], net: SceneNet | None = None) -> dict:
    """How varied the images of each prompt are, averaged over prompts (groups of ≥ 2 images).

    `pairwise`: mean pairwise feature distance within a prompt; `pairwise_all`: over all pairs;
    `position_std`, `size_std` (px) and `background_luminance_std`, `background_tint_std`: the
    spread of the attributes a prompt leaves free.
    """
    images = np.asarray(images)
    if len(prompts) != len(images):
        raise ValueError(f"diversity: {len(images)} images but {len(prompts)} prompts")
    feats = features(images, net)
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        by_prompt.setdefault(p, []).append(i)
    groups = [np.array(ix) for ix in by_prompt.values() if len(ix) >= 2]

    def mean_pairwise(f: np.ndarray) -> float:
        d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
        return float(d[np.triu_indices(len(f), 1)].mean())

    per_group = [mean_pairwise(feats[g]) for g in groups]
    sample = feats[np.random.default_rng(0).permutation(len(feats))[:1000]]
    attrs = _free_attributes(images)
    std = lambda v: float(np.std(v, ddof=1))  # noqa: E731
    position = [_grouped(attrs[a], groups, std) for a in ("x", "y")]
    return {
        "pairwise": float(np.mean(per_group)) if per_group else float("nan"),
        "pairwise_all": mean_pairwise(sample) if len(sample) >= 2 else float("nan"),
        "position_std": float(np.mean(position)),
        "size_std": _grouped(attrs["size"], groups, std),
        "background_luminance_std": _grouped(attrs["bg_luminance"], groups, std),
        "background_tint_std": _grouped(attrs["bg_tint"], groups, std),
        "groups": len(groups),
        "images": len(images),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m shapes.features [--retrain]`: train (or check) the cached feature classifier."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m shapes.features", description=__doc__)
    p.add_argument("--retrain", action="store_true", help="train again even if cached")
    p.add_argument("--out", default=str(FEATURES_PATH))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    if args.retrain or not Path(args.out).is_file():
        save_classifier(*train_classifier(), path=args.out)
    net = load_classifier(args.out)
    a, prompts = world.make_dataset(500, seed=31)
    rng = np.random.default_rng(32)
    b = np.stack([world.render_scene(rng, p) for p in prompts])
    # The floor of every FD here: two renderings of the same prompts (FD is very sensitive to the
    # prompt mix, so sets are always compared prompt for prompt).
    print(f"features: {args.out}; FD between two renderings of the same 500 prompts "
          f"{frechet_from_features(features(a, net), features(b, net)):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

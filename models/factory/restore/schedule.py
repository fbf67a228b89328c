"""Resfusion's truncated schedule, forward process and 5-step sampler (ALGORITHMS.md §3).

Everything here is float64 numpy except `forward_torch`, the training-time forward process. The
sampler keeps its states in float64 and casts to float32 only to feed the network, exactly as the
engine does, so that the parity vectors written from it are what the engine must reproduce.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

T_NOMINAL = 12
BETA_START_NUM = 0.1  # betaStart = 0.1 / T
BETA_END_NUM = 20.0  # betaEnd = 20 / T


@dataclass(frozen=True)
class Schedule:
    """The kept (truncated) part of a Resfusion schedule: indices 0 .. steps-1."""

    train_steps: int
    betas: np.ndarray
    alphas: np.ndarray
    alphas_cumprod: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def sqrt_ab(self) -> np.ndarray:
        return np.sqrt(self.alphas_cumprod)

    @property
    def resnoise_k(self) -> np.ndarray:
        """k_t in the target eps + k_t * R."""
        return (1 - np.sqrt(self.alphas)) * np.sqrt(1 - self.alphas_cumprod) / self.betas

    @property
    def posterior_variance(self) -> np.ndarray:
        """beta~_t = beta_t (1 - ab_{t-1}) / (1 - ab_t); 0 at t = 0 (no noise is added there)."""
        ab_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        return self.betas * (1 - ab_prev) / (1 - self.alphas_cumprod)


def truncated_schedule(train_steps: int = T_NOMINAL) -> Schedule:
    """beta = linspace(0.1/T, 20/T, T), truncated where sqrt(ab) first reaches 0.5."""
    betas = np.linspace(BETA_START_NUM / train_steps, BETA_END_NUM / train_steps, train_steps,
                        dtype=np.float64)
    alphas = 1.0 - betas
    ab = np.cumprod(alphas)
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(ab)  # nan past the point where betas exceed 1; never reached below
    r = int(np.argmax(sq <= 0.5))
    if not sq[r] <= 0.5:
        raise ValueError(f"sqrt(alpha_bar) never reaches 0.5 with T = {train_steps}")
    betas, alphas, ab = betas[: r + 1].copy(), alphas[: r + 1].copy(), ab[: r + 1].copy()
    if 0.5 - sq[r] > 0.01:
        ab[r] = 0.25
        alphas[r] = ab[r] / ab[r - 1]
        betas[r] = 1 - alphas[r]
    keep = 1 + int(np.argmin(np.abs(np.sqrt(ab) - 0.5)))
    return Schedule(train_steps, betas[:keep], alphas[:keep], ab[:keep])


def forward_torch(sched: Schedule, clean, degraded, t, noise):
    """x_t and the resnoise target for a batch (torch tensors in [-1, 1]; t: int64 [B])."""
    import torch

    dev, dt = clean.device, clean.dtype
    sq = torch.as_tensor(sched.sqrt_ab, device=dev, dtype=dt)[t].view(-1, 1, 1, 1)
    sd = torch.as_tensor(np.sqrt(1 - sched.alphas_cumprod), device=dev, dtype=dt)[t].view(-1, 1, 1, 1)
    k = torch.as_tensor(sched.resnoise_k, device=dev, dtype=dt)[t].view(-1, 1, 1, 1)
    residual = degraded - clean
    x_t = sq * clean + (1 - sq) * residual + sd * noise
    return x_t, noise + k * residual


Network = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""net(sample float32 [B,6,H,W], timestep int64 [B]) -> resnoise [B,3,H,W]."""


def sample(net: Network, degraded: np.ndarray, noises: Sequence[np.ndarray | None],
           sched: Schedule) -> np.ndarray:
    """Resfusion sampling from degraded (float64 [B,3,H,W] in [-1,1]); returns clamped x0.

    noises[0] is the initial eps; noises[k] (k = 1..steps-1) the z added after the update at
    t = steps-1-(k-1), i.e. t = 4, 3, 2, 1 for 5 steps. A None entry adds no noise there
    (the deterministic variant of the sampler).
    """
    degraded = np.asarray(degraded, dtype=np.float64)
    n = sched.steps
    if len(noises) != n:
        raise ValueError(f"need {n} noise arrays (initial eps + {n - 1} z), got {len(noises)}")
    sq, ab = sched.sqrt_ab, sched.alphas_cumprod
    x = sq[-1] * degraded + (np.sqrt(1 - ab[-1]) * noises[0] if noises[0] is not None else 0.0)
    var = sched.posterior_variance
    deg32 = degraded.astype(np.float32)
    for i, t in enumerate(range(n - 1, -1, -1)):
        feed = np.concatenate([x.astype(np.float32), deg32], axis=1)
        timestep = np.full((x.shape[0],), t, dtype=np.int64)
        r = np.asarray(net(feed, timestep), dtype=np.float64)
        x = (x - sched.betas[t] / np.sqrt(1 - ab[t]) * r) / np.sqrt(sched.alphas[t])
        if t > 0 and noises[i + 1] is not None:
            x = x + np.sqrt(var[t]) * noises[i + 1]
    return np.clip(x, -1.0, 1.0)


def draw_noises(rng: np.random.Generator, shape: Sequence[int], steps: int,
                deterministic: bool = False) -> list[np.ndarray | None]:
    """The sampler's noise: initial eps, then z for t = steps-1 .. 1 (None when deterministic)."""
    eps = rng.standard_normal(shape)
    zs = [None if deterministic else rng.standard_normal(shape) for _ in range(steps - 1)]
    return [eps, *zs]

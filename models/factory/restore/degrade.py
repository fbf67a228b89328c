"""The degradations the packs learn to undo, synthesised on the fly (torch, any device).

All images are RGB in [0, 1] here; the network sees [-1, 1]. Each function draws its own
parameters per image from `gen` (a torch.Generator), or takes them fixed (evaluation).

denoise  — y = x + sqrt(s^2 + a*x) * n: Gaussian noise s ~ U[5, 50]/255 plus, for half of the
           images, signal-dependent shot noise a ~ U[0, 0.01] (std 0.1 = 25/255 at white);
           30 % of the images are then clipped to [0, 1] and quantised to 8 bits, as a real file is.
lowlight — linearise (x^2.2), scale by an exposure e ~ log-U[0.05, 0.3] and a mild per-channel
           colour cast c ~ exp(U[-0.1, 0.1]), add shot (variance k*L, k ~ log-U[5e-4, 5e-3]) and
           read noise (std r ~ log-U[1e-3, 1e-2]) in linear light, re-encode with a gamma
           g ~ U[1.8, 2.6] (tone-curve variation), clip and quantise to 8 bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SRGB_GAMMA = 2.2

NOISE_SIGMA = (5 / 255, 50 / 255)
SHOT_A = (0.0, 0.01)
SHOT_P = 0.5
CLIP_P = 0.3

EXPOSURE = (0.05, 0.3)
CAST_LOG = 0.1
SHOT_K = (5e-4, 5e-3)
READ_SIGMA = (1e-3, 1e-2)
GAMMA = (1.8, 2.6)


def _uniform(gen, n, lo, hi, device):
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def _log_uniform(gen, n, lo, hi, device):
    lo_t, hi_t = torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi))
    return torch.exp(_uniform(gen, n, float(lo_t), float(hi_t), device))


def _quantise(x):
    return torch.round(x.clamp(0, 1) * 255) / 255


def _per_image(v):
    return v.view(-1, 1, 1, 1)


def noisy(clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The training-time denoise degradation (random parameters per image)."""
    b, dev = clean.shape[0], clean.device
    sigma = _per_image(_uniform(gen, b, *NOISE_SIGMA, dev))
    shot_on = (torch.rand(b, generator=gen, device=dev) < SHOT_P).float()
    a = _per_image(_uniform(gen, b, *SHOT_A, dev) * shot_on)
    n = torch.randn(clean.shape, generator=gen, device=dev)
    y = clean + torch.sqrt(sigma**2 + a * clean.clamp(min=0)) * n
    clip = _per_image(torch.rand(b, generator=gen, device=dev) < CLIP_P)
    return torch.where(clip, _quantise(y), y)


def gaussian(clean: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Evaluation: plain additive white Gaussian noise of known sigma, not clipped (the protocol
    the classical denoisers are designed for)."""
    return clean + sigma * torch.randn(clean.shape, generator=gen, device=clean.device)


@dataclass(frozen=True)
class LowLight:
    exposure: torch.Tensor  # [B]
    cast: torch.Tensor  # [B, 3]
    shot_k: torch.Tensor  # [B]
    read: torch.Tensor  # [B]
    gamma: torch.Tensor  # [B]


def draw_lowlight(b: int, gen: torch.Generator, device) -> LowLight:
    return LowLight(
        exposure=_log_uniform(gen, b, *EXPOSURE, device),
        cast=torch.exp(_uniform(gen, b * 3, -CAST_LOG, CAST_LOG, device)).view(b, 3),
        shot_k=_log_uniform(gen, b, *SHOT_K, device),
        read=_log_uniform(gen, b, *READ_SIGMA, device),
        gamma=_uniform(gen, b, *GAMMA, device),
    )


def fixed_lowlight(b: int, exposure: float, gen: torch.Generator, device) -> LowLight:
    """Evaluation: a fixed exposure, mid-range noise and gamma 2.2, a seeded colour cast."""
    full = lambda v: torch.full((b,), float(v), device=device)  # noqa: E731
    return LowLight(
        exposure=full(exposure),
        cast=torch.exp(_uniform(gen, b * 3, -CAST_LOG, CAST_LOG, device)).view(b, 3),
        shot_k=full((SHOT_K[0] * SHOT_K[1]) ** 0.5),
        read=full((READ_SIGMA[0] * READ_SIGMA[1]) ** 0.5),
        gamma=full(SRGB_GAMMA),
    )


def darken(clean: torch.Tensor, p: LowLight, gen: torch.Generator) -> torch.Tensor:
    lin = clean.clamp(0, 1) ** SRGB_GAMMA
    lit = lin * _per_image(p.exposure) * p.cast.view(-1, 3, 1, 1)
    n = torch.randn(clean.shape, generator=gen, device=clean.device)
    lit = lit + torch.sqrt(_per_image(p.shot_k) * lit + _per_image(p.read) ** 2) * n
    return _quantise(lit.clamp(0, 1) ** (1 / _per_image(p.gamma)))


def lowlight(clean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The training-time low-light degradation (random parameters per image)."""
    return darken(clean, draw_lowlight(clean.shape[0], gen, clean.device), gen)


def undo_exposure(dark: torch.Tensor, p: LowLight) -> torch.Tensor:
    """The oracle exposure/gamma correction: invert the true gamma, exposure and cast."""
    lin = dark.clamp(0, 1) ** _per_image(p.gamma)
    lin = lin / (_per_image(p.exposure) * p.cast.view(-1, 3, 1, 1))
    return lin.clamp(0, 1) ** (1 / SRGB_GAMMA)


def auto_gamma(dark: torch.Tensor, target_mean: float = 0.4) -> torch.Tensor:
    """A blind correction: the power curve y^g that brings the mean to `target_mean`.

    g is found by bisection per image; this is the classic "gamma correction" of a dark photo.
    """
    y = dark.clamp(1e-4, 1)
    lo = torch.full((y.shape[0],), 0.05, device=y.device)
    hi = torch.ones_like(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        too_bright = (y ** _per_image(mid)).mean(dim=(1, 2, 3)) > target_mean
        lo = torch.where(too_bright, mid, lo)
        hi = torch.where(too_bright, hi, mid)
    return y ** _per_image((lo + hi) / 2)


DEGRADE = {"denoise": noisy, "lowlight": lowlight}

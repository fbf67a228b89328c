"""The RL policy: DDIM with η = 1 and classifier-free guidance, with per-step log-probabilities.

Sampling walks the engine's own grid (ALGORITHMS.md §0: t_i = i·floor(T/K) descending, leading
offset 0, the last step landing on ᾱ_0), so the policy tuned here is the sampler the app runs.
On that grid the last step (t = 0 → ᾱ_0) has σ = 0 and is the identity map; it has no density and
is never trained (`trainable` marks the steps with σ > 0).

`sample` can branch: one trunk per prompt down to loop index `branch_at`, then `branches` copies
that continue with their own noise (B²-DiffuRL's branch-based sampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..model import guided_eps

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Grid:
    """A K-step sampling grid: network timesteps and the ᾱ before/after each step (float64)."""

    timesteps: torch.Tensor  # int64 [K], descending
    alpha_bar: torch.Tensor  # float64 [K], ᾱ at each step's start
    alpha_bar_prev: torch.Tensor  # float64 [K], ᾱ each step lands on

    @property
    def steps(self) -> int:
        return int(self.timesteps.numel())

    def sigma(self, eta: float) -> torch.Tensor:
        """σ_i = η·√((1−ᾱ_prev)/(1−ᾱ))·√(1−ᾱ/ᾱ_prev) for every step (float64 [K])."""
        a, p = self.alpha_bar, self.alpha_bar_prev
        return eta * torch.sqrt((1 - p) / (1 - a) * (1 - a / p)).clamp_min(0.0)

    def trainable(self, eta: float = 1.0) -> torch.Tensor:
        """bool [K]: steps with a proper Gaussian density (σ > 0)."""
        return self.sigma(eta) > 0


def make_grid(alphas_cumprod: torch.Tensor, steps: int) -> Grid:
    """The engine's leading grid with offset 0 for `steps` steps over T = len(alphas_cumprod)."""
    total = int(alphas_cumprod.numel())
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be in [1, {total}], got {steps}")
    stride = total // steps
    ts = torch.arange(steps - 1, -1, -1, dtype=torch.long) * stride
    ac = alphas_cumprod.detach().to("cpu", torch.float64)
    ab = ac[ts]
    prev = torch.cat([ab[1:], ac[:1]])  # after t = 0 comes the final ᾱ_0
    return Grid(ts, ab, prev)


def ddim_step(z: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
              alpha_bar_prev: torch.Tensor, sigma: torch.Tensor,
              noise: torch.Tensor | None = None,
              prev_sample: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM η-step per row and the log-density of its result.

    `alpha_bar`, `alpha_bar_prev`, `sigma` are per-row [B] tensors. Give `noise` to sample, or
    `prev_sample` to score a stored step. Returns (x_prev, log π) with log π the Gaussian
    log-density of x_prev under N(μ, σ²) averaged over the latent elements (0 where σ = 0).
    """
    shape = (-1,) + (1,) * (z.dim() - 1)

    def col(v: torch.Tensor) -> torch.Tensor:  # coefficients in float64, then the state's dtype
        return v.to(z.dtype).reshape(shape)

    a = alpha_bar.to(device=z.device, dtype=torch.float64)
    p = alpha_bar_prev.to(device=z.device, dtype=torch.float64)
    sig = sigma.to(device=z.device, dtype=torch.float64)
    s = col(sig)
    x0 = (z - col(torch.sqrt(1 - a)) * eps) / col(torch.sqrt(a))
    mean = col(torch.sqrt(p)) * x0 + col(torch.sqrt((1 - p - sig * sig).clamp_min(0.0))) * eps
    if prev_sample is None:
        if noise is None:
            raise ValueError("ddim_step needs noise to sample or prev_sample to score")
        prev_sample = mean + s * noise
    safe = torch.where(s > 0, s, torch.ones_like(s))
    density = -((prev_sample.detach() - mean) ** 2) / (2 * safe * safe) - torch.log(safe) - _HALF_LOG_2PI
    log_prob = density.mean(dim=tuple(range(1, z.dim())))
    log_prob = torch.where(sig > 0, log_prob, torch.zeros_like(log_prob))
    return prev_sample, log_prob


@dataclass
class Trajectories:
    """Sampled trajectories; rows of branched samples are grouped per trunk (trunk-major)."""

    latents: torch.Tensor  # [N, K+1, C, H, W]: x_T … x_0 in sampling order
    log_probs: torch.Tensor  # [N, K], log π of each step under the sampling policy
    rows: torch.Tensor  # [N] index of the prompt (trunk) each row belongs to

    @property
    def final(self) -> torch.Tensor:
        return self.latents[:, -1]


@torch.no_grad()
def sample(model, grid: Grid, cond: torch.Tensor, uncond: torch.Tensor, guidance: float,
           eta: float, generator: torch.Generator, branch_at: int = 0, branches: int = 1,
           keep: bool = True, initial: torch.Tensor | None = None) -> Trajectories:
    """Sample one trunk per row of `cond` [B,L,D]; branch into `branches` copies at `branch_at`.

    With `keep` false only x_T and x_0 are stored (evaluation). `initial` fixes x_T [B,C,h,w].
    """
    if not 0 <= branch_at < grid.steps:
        raise ValueError(f"branch_at must be in [0, {grid.steps}), got {branch_at}")
    device = cond.device
    b = cond.shape[0]
    lat_shape = (model.cfg.latent_channels, 16, 16)
    z = initial if initial is not None else torch.randn((b, *lat_shape), generator=generator,
                                                        device=device)
    rows = torch.arange(b, device=device)
    states = cond
    history = [z]
    log_probs: list[torch.Tensor] = []
    sig = grid.sigma(eta)
    for i in range(grid.steps):
        if i == branch_at and branches > 1:
            z = z.repeat_interleave(branches, 0)
            rows = rows.repeat_interleave(branches, 0)
            states = cond[rows]
            history = [h.repeat_interleave(branches, 0) for h in history]
            log_probs = [lp.repeat_interleave(branches, 0) for lp in log_probs]
        n = z.shape[0]
        t = grid.timesteps[i].to(device).expand(n)
        eps = guided_eps(model, z, t, states, uncond.expand_as(states), guidance)
        noise = (torch.randn(z.shape, generator=generator, device=device) if sig[i] > 0
                 else torch.zeros_like(z))
        z, lp = ddim_step(z, eps, grid.alpha_bar[i].expand(n), grid.alpha_bar_prev[i].expand(n),
                          sig[i].expand(n), noise=noise)
        if keep:
            history.append(z)
        log_probs.append(lp)
    if not keep:
        history.append(z)
    return Trajectories(torch.stack(history, 1), torch.stack(log_probs, 1), rows)


def step_log_prob(model, grid: Grid, latents: torch.Tensor, next_latents: torch.Tensor,
                  steps: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                  guidance: float, eta: float) -> torch.Tensor:
    """log π_θ(x_{i+1} | x_i) for a batch of stored steps (loop indices `steps`, one per row)."""
    idx = steps.cpu()
    t = grid.timesteps[idx].to(latents.device)
    eps = guided_eps(model, latents, t, cond, uncond.expand_as(cond), guidance)
    sig = grid.sigma(eta)[idx]
    _, lp = ddim_step(latents, eps, grid.alpha_bar[idx], grid.alpha_bar_prev[idx], sig,
                      prev_sample=next_latents)
    return lp

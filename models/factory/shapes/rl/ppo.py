"""PPO-clip on per-step log-probability ratios, the loss both B²-DiffuRL and DDPO minimise.

No KL term and no value function: the advantage is a normalised final-image reward, clipped to
±`adv_clip` so that a rare surprise cannot dominate an update.
"""
from __future__ import annotations

import torch


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip: float, adv_clip: float = 5.0) -> torch.Tensor:
    """mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))) with ρ = exp(log π − log π_old)."""
    adv = advantages.clamp(-adv_clip, adv_clip)
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip, 1.0 + clip)
    return torch.maximum(unclipped, clipped).mean()

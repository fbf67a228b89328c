"""Backward progressive training: which sampler steps each stage trains.

Stage i trains the last s_i of the K steps (the ones ending at x_0) and branches at loop index
K − s_i. s grows in equal levels from `s_min` to K over the stages, as in the released recipe
(K = 20, s from 14 to 20 over 100 stages): level = ⌊i·(K − s_min + 1)/n⌋.
"""
from __future__ import annotations


def split_steps(stage: int, stages: int, s_min: int, steps: int, progressive: bool = True) -> int:
    """s_i: how many final sampler steps stage `stage` (0-based) of `stages` trains."""
    if not 1 <= s_min <= steps:
        raise ValueError(f"s_min must be in [1, {steps}], got {s_min}")
    if not 0 <= stage < stages:
        raise ValueError(f"stage must be in [0, {stages}), got {stage}")
    if not progressive:
        return steps
    return s_min + stage * (steps - s_min + 1) // stages


def branch_index(stage: int, stages: int, s_min: int, steps: int, progressive: bool = True) -> int:
    """Loop index K − s_i at which the trunk splits into branches."""
    return steps - split_steps(stage, stages, s_min, steps, progressive)

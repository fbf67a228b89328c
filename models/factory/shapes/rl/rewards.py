"""Turning 0/1 detector rewards into advantages: B²'s windowed per-prompt z-scores and branch
selection, and DDPO's per-prompt running z-score.

Both normalise per prompt because the reward's base rate differs wildly between prompts ("a red
circle" is almost always right, some relations almost never); a raw 0/1 reward would push every
prompt the same way.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np


class StageWindowZScore:
    """B²-DiffuRL: z-score each reward against its prompt's rewards in this stage and up to
    `history` previous stages (mean and unbiased std; a prompt whose rewards have no spread,
    or only one reward, gets z = 0: nothing to learn from it)."""

    def __init__(self, history: int = 8):
        self.history = history
        self.stages: deque[dict[str, np.ndarray]] = deque(maxlen=history)

    def update(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(prompts) != rewards.shape[0]:
            raise ValueError(f"{len(prompts)} prompts but {rewards.shape[0]} rewards")
        current: dict[str, list[float]] = defaultdict(list)
        for p, r in zip(prompts, rewards):
            current[p].append(float(r))
        z = np.zeros_like(rewards)
        for p, values in current.items():
            pool = np.concatenate([s[p] for s in self.stages if p in s] + [np.array(values)])
            std = pool.std(ddof=1) if pool.size > 1 else 0.0
            if std > 0:
                mask = np.array([q == p for q in prompts])
                z[mask] = (rewards[mask] - pool.mean()) / (std + 1e-8)
        self.stages.append({p: np.array(v) for p, v in current.items()})
        return z


class PerPromptStatTracker:
    """DDPO: each prompt keeps its last `buffer_size` rewards; once it has `min_count` of them
    its rewards are z-scored against that buffer, before that against the whole batch."""

    def __init__(self, buffer_size: int = 16, min_count: int = 16):
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.stats: dict[str, deque[float]] = {}

    def update(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float64)
        names = np.array(prompts, dtype=object)
        out = np.empty_like(rewards)
        for p in dict.fromkeys(prompts):
            mask = names == p
            buf = self.stats.setdefault(p, deque(maxlen=self.buffer_size))
            buf.extend(rewards[mask].tolist())
            pool = np.array(buf) if len(buf) >= self.min_count else rewards
            out[mask] = (rewards[mask] - pool.mean()) / (pool.std() + 1e-6)
        return out


@dataclass(frozen=True)
class Selected:
    row: int  # index into the flat (trunk-major) sample rows
    z: float  # its advantage before clipping


def select_branches(z: np.ndarray, branches: int, pos: float = 0.5,
                    neg: float = -0.5) -> list[Selected]:
    """Per branch group (consecutive `branches` rows): the best row if its z ≥ `pos`, the worst
    if its z < `neg` (ties go to the first row, as argmax/argmin do)."""
    z = np.asarray(z, dtype=np.float64)
    if z.size % branches:
        raise ValueError(f"{z.size} rewards do not split into groups of {branches}")
    chosen: list[Selected] = []
    for g, group in enumerate(z.reshape(-1, branches)):
        best, worst = int(group.argmax()), int(group.argmin())
        if group[best] >= pos:
            chosen.append(Selected(g * branches + best, float(group[best])))
        if group[worst] < neg:  # never the same row as a positive: z ≥ pos > neg
            chosen.append(Selected(g * branches + worst, float(group[worst])))
    return chosen

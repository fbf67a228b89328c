"""RL sanity check on the CPU (issue 12 §1): DDPO and B²-DiffuRL must each raise the landed
`shapes-base`'s one-object alignment by ≥ 10 points on held-out seeds, within minutes on 2 cores.

`python -m shapes --rl-sanity` (or `python -m shapes.rl.sanity`) runs it into
`.cache/shapes/rl-sanity/`:

1. the base checkpoint is rebuilt from the committed ONNX pack `models/packs/shapes-base`
   (`rebuild.model_from_pack`, checked against onnxruntime), so no GPU-trained `.pt` is needed;
2. DDPO and B² fine-tune it on the 12 one-object prompts, in two processes of one thread each
   (each run is seeded and resumes from its last finished round after an interruption);
3. each run's alignment-vs-queries curve is measured on fixed held-out seeds (a noise stream no
   training round draws from), the same images for every model, with the standard error;
4. `summary.json`, `curves.json` (and `curves.png`) are written and one summary JSON line printed.

The configuration applies RL-REVIEW.md's fixes, where the earlier runs went wrong:
- small steps: full fine-tuning at lr 3e-5 (the earlier runs: 1e-4 and 3e-4), gradient-norm
  clip 1, and an approximate-KL guard (½·mean (log ρ)² over a minibatch's pairs, measured before
  each optimizer step) that ends a round's updates once the policy has drifted past `kl_stop`
  from the one that sampled it; KL, clip fraction and the first micro-batch's |ρ − 1| (which must
  be rounding only) are logged every round;
- only the steps that decide the reward are trained: those starting at t ≥ `min_t` = 600
  (t = 900, 800, 700, 600 of the 10-step grid), all four for every trained trajectory. The
  review measured that fresh noise changes the reward 26 % of the time from t = 950 but 6 % from
  t = 650, and that the near-deterministic last step (σ = 0.029) carried 95 % of the gradient;
  later steps add log-prob gradient that is noise with respect to the reward.
- advantages are z-scores within groups that share everything but the noise: per prompt within
  the round (DDPO), per branch group (B²), never pooled over past rounds or prompts;
- B² branches at x_T (t ≥ 850 on this grid, as the review advises), where fresh noise still
  changes the reward; at K = 10 that leaves one progressive stage (s_min = K);
- one trust region for both: PPO clip 1e-3. B²'s published 0.1 never bit here (clip fraction 0)
  and, with its 2 epochs on the ~12 selected rows of a round, lost 17 points of η = 1 alignment
  in 600 queries (branching at t = 800); DDPO's published 1e-4 clipped ~75 % of pairs after a
  round's first optimizer step and, with 3 random trained steps of t = 900…200, left DDPO's
  full-set η = 1 alignment at the base's (57.0 vs 57.6 % after 2 400 queries). Epochs stay the
  methods' own (DDPO 1, B² 2);
- budgets in reward queries and rounds, never wall clock; the base and final evaluations score
  384 held-out images per model (the curve's intermediate points the first 96 of them).
Debian's torch multiplies matrices with the reference BLAS; `fastmm.numpy_matmul` sends the
UNet's Linear and attention products through numpy's OpenBLAS instead (3.7× faster here), in
sampling, training and evaluation alike.
The policy is the 10-step η = 1 DDIM on the engine's grid (a 20-step policy would halve the
queries that fit in the CPU budget); alignment is reported for η = 1 (the policy RL optimises)
and η = 0 (deterministic DDIM, what the app samples) on that grid.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .policy import Grid, Trajectories, ddim_step, make_grid, sample, step_log_prob
from .ppo import ppo_clip_loss
from .rewards import select_branches
from .stages import split_steps

Log = Callable[[str], None]

FORMAT = "shapes-rl-sanity/1"


def one_object_prompts() -> list[str]:
    """The 12 one-object prompts ('a <colour> <shape>'), in the world's fixed order."""
    from ..world import all_prompts

    return [p for p in all_prompts("train") if len(p.split()) == 3]


@dataclass(frozen=True)
class Method:
    name: str  # "ddpo" or "b2"
    lr: float
    clip: float
    branches: int = 1  # B²: branches per trunk
    s_min: int | None = None  # B²: the first stage trains the last s_min steps; None: all steps
    epochs: int = 1


@dataclass(frozen=True)
class SanityConfig:
    seed: int = 0
    queries: int = 2400  # scored images per method
    images_per_round: int = 120  # 10 per prompt (DDPO); 24 trunks × 5 branches (B²)
    steps: int = 10  # K: the policy's sampler steps on the engine's grid (also the evaluation's)
    guidance: float = 5.0  # the base's guidance, in sampling, training and evaluation alike
    min_t: int = 600  # steps starting below this timestep are sampled but never trained
    pairs_per_row: int | None = None  # trained steps drawn per trajectory (None: all its steps)
    samples_per_step: int = 12  # trajectories per optimizer step
    micro_pairs: int = 48  # (trajectory, step) pairs per forward/backward pass
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    adv_clip: float = 5.0
    kl_stop: float = 2e-4  # approx KL of a minibatch above which its round stops updating
    eval_per_prompt: int = 32  # base and final: 12 × 32 = 384 held-out images (SE ≤ 2.6 points)
    curve_per_prompt: int = 8  # points along the way: the first 8 of those per prompt (96)
    eval_seed: int = 900_001  # the held-out noise stream (training draws from seed-derived ones)
    eval_etas: tuple[float, ...] = (1.0, 0.0)  # η = 1: the policy RL trains; η = 0: what the app runs
    evals: int = 4  # curve points after the base's (the last one on the full set)
    eval_batch: int = 192
    goal_points: float = 10.0
    numpy_matmul: bool = True  # Linear and attention products through numpy's BLAS (fastmm.py)
    ddpo: Method = field(default_factory=lambda: Method("ddpo", lr=3e-5, clip=1e-3))
    b2: Method = field(default_factory=lambda: Method("b2", lr=3e-5, clip=1e-3, branches=5, s_min=10,
                                                      epochs=2))

    def method(self, name: str) -> Method:
        if name not in ("ddpo", "b2"):
            raise ValueError(f"unknown sanity method {name!r} (ddpo or b2)")
        return getattr(self, name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SanityConfig":
        d = dict(d)
        d["eval_etas"] = tuple(d["eval_etas"])
        d["ddpo"], d["b2"] = Method(**d["ddpo"]), Method(**d["b2"])
        return cls(**d)

    def digest(self, part: str | None = None) -> str:
        """Of the whole config; of what one method's run depends on (`part` = its name: the
        other method's settings left out, so changing one never restarts the other); or of
        what the base evaluation depends on (`part` = "eval")."""
        d = self.to_dict()
        if part in ("ddpo", "b2"):
            d.pop("b2" if part == "ddpo" else "ddpo")
        elif part == "eval":
            d = {k: d[k] for k in ("steps", "guidance", "eval_per_prompt", "eval_seed", "eval_etas",
                                   "numpy_matmul")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


DEFAULT = SanityConfig()
# End-to-end wiring on a tiny budget (tests): seconds on a CPU.
TINY = SanityConfig(queries=36, images_per_round=12, steps=4, min_t=0, pairs_per_row=2,
                    samples_per_step=6, micro_pairs=12, eval_per_prompt=2, curve_per_prompt=1,
                    evals=2, eval_batch=12, b2=Method("b2", lr=1e-5, clip=0.1, branches=2, s_min=3))


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


# ------------------------------------------------------------------------------ evaluation

def standard_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def eval_stats(scores: str, per_prompt: int, prompts: list[str]) -> dict:
    """Alignment, its SE and the per-prompt means of the first `per_prompt` images per prompt
    (score strings are k-major: image k of every prompt, then image k + 1)."""
    s = np.array([int(c) for c in scores[:per_prompt * len(prompts)]], dtype=np.float64)
    p = float(s.mean())
    per = s.reshape(per_prompt, len(prompts)).mean(0)
    return {"alignment": p, "se": standard_error(p, s.size), "n": int(s.size),
            "per_prompt": {q: float(v) for q, v in zip(prompts, per)}}


@torch.no_grad()
def evaluate(model, grid: Grid, cfg: SanityConfig, per_prompt: int) -> dict:
    """0/1 detector scores of `per_prompt` held-out images per one-object prompt, per η in
    `cfg.eval_etas`: {"eta<η>": "0110…"} in k-major order.

    Noise (initial and per step) for image k of prompt i is drawn once from `cfg.eval_seed` for
    `cfg.eval_per_prompt` images per prompt, so every model, every batch size and every subset
    (`curve_per_prompt`) sees the same noise for the same image. The sampler is the policy's own
    η-DDIM on the engine's K-step grid.
    """
    from ..detector import score
    from ..model import guided_eps, to_uint8

    if not 1 <= per_prompt <= cfg.eval_per_prompt:
        raise ValueError(f"per_prompt must be in [1, {cfg.eval_per_prompt}]")
    prompts = one_object_prompts()
    shape = (model.cfg.latent_channels, 16, 16)
    gen = torch.Generator().manual_seed(cfg.eval_seed)
    full = cfg.eval_per_prompt * len(prompts)
    x_t = torch.randn((full, *shape), generator=gen)
    step_noise = torch.randn((grid.steps, full, *shape), generator=gen)
    n = per_prompt * len(prompts)
    which = torch.arange(n) % len(prompts)
    rep = [prompts[i] for i in which.tolist()]
    device = model.device
    states = model.encode_text(model.tokenize(prompts))
    uncond = model.encode_text(model.tokenize([""]))
    was_training = model.training
    model.eval()
    out = {}
    for eta in cfg.eval_etas:
        sig = grid.sigma(eta)
        finals = []
        for b0 in range(0, n, cfg.eval_batch):
            sl = slice(b0, min(n, b0 + cfg.eval_batch))
            z = x_t[sl].to(device)
            cond = states[which[sl]]
            m = z.shape[0]
            for i in range(grid.steps):
                t = grid.timesteps[i].to(device).expand(m)
                eps = guided_eps(model, z, t, cond, uncond.expand_as(cond), cfg.guidance)
                z, _ = ddim_step(z, eps, grid.alpha_bar[i].expand(m), grid.alpha_bar_prev[i].expand(m),
                                 sig[i].expand(m), noise=step_noise[i, sl].to(device))
            finals.append(to_uint8(model.decode(z)))
        s = score(np.concatenate(finals), rep).astype(int)
        out[f"eta{eta:g}"] = "".join(map(str, s.tolist()))
    model.train(was_training)
    return out


# ------------------------------------------------------------------------------ training

def group_z(rewards: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """z-score of each reward within its group (mean, unbiased std); 0 where a group has one
    member or no spread (nothing to learn from it)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    z = np.zeros_like(rewards)
    for g in np.unique(groups):
        mask = groups == g
        vals = rewards[mask]
        if vals.size > 1:
            std = vals.std(ddof=1)
            if std > 0:
                z[mask] = (vals - vals.mean()) / std
    return z


def trained_steps(grid: Grid, start: int, min_t: int) -> list[int]:
    """Loop indices from `start` on that have a density (σ > 0) and start at t ≥ `min_t`."""
    ok = grid.trainable(1.0)
    return [i for i in range(start, grid.steps) if bool(ok[i]) and int(grid.timesteps[i]) >= min_t]


def ppo_update(model, params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, grid: Grid,
               traj: Trajectories, cond: torch.Tensor, uncond: torch.Tensor, rows: np.ndarray,
               adv: np.ndarray, steps: list[int], method: Method, cfg: SanityConfig,
               rng: np.random.Generator) -> dict:
    """PPO-clip over the chosen rows, each on `cfg.pairs_per_row` of `steps` drawn at random
    (all of them when None), `samples_per_step` rows per optimizer step.

    Before each step the minibatch's approximate KL to the sampling policy, ½·mean (log ρ)², is
    measured (it reflects the steps already taken this round); above `cfg.kl_stop` the round
    stops updating. `ratio_dev0` is max |ρ − 1| of the first micro-batch, before any update:
    it must be float rounding only.
    """
    k = len(steps) if cfg.pairs_per_row is None else min(cfg.pairs_per_row, len(steps))
    steps_arr = np.asarray(steps, dtype=np.int64)
    per_micro = max(1, cfg.micro_pairs // k)
    losses, kls, clipfracs = [], [], []
    dev0, stopped, updates = None, False, 0
    for _ in range(method.epochs):
        order = rng.permutation(len(rows))
        chosen = np.stack([rng.choice(steps_arr, k, replace=False) for _ in range(len(rows))])
        for start in range(0, len(order), cfg.samples_per_step):
            chunk = order[start:start + cfg.samples_per_step]
            opt.zero_grad(set_to_none=True)
            total, kl_sum, clipped, pairs = 0.0, 0.0, 0.0, 0
            for ms in range(0, len(chunk), per_micro):
                pick = chunk[ms:ms + per_micro]
                r = torch.as_tensor(rows[pick], dtype=torch.long).repeat_interleave(k)
                s = torch.as_tensor(chosen[pick].reshape(-1), dtype=torch.long)
                lp = step_log_prob(model, grid, traj.latents[r, s], traj.latents[r, s + 1], s,
                                   cond[traj.rows[r]], uncond, cfg.guidance, 1.0)
                old = traj.log_probs[r, s]
                a = torch.as_tensor(adv[pick], dtype=torch.float32).repeat_interleave(k)
                loss = ppo_clip_loss(lp, old, a, method.clip, cfg.adv_clip)
                (loss * (len(pick) / len(chunk))).backward()
                total += float(loss.detach()) * len(pick) / len(chunk)
                with torch.no_grad():
                    log_ratio = lp.detach() - old
                    if dev0 is None:
                        dev0 = float(log_ratio.exp().sub(1).abs().max())
                    kl_sum += float(0.5 * (log_ratio ** 2).sum())
                    clipped += float(((log_ratio.exp() - 1).abs() > method.clip).float().sum())
                    pairs += log_ratio.numel()
            kl = kl_sum / max(pairs, 1)
            kls.append(kl)
            clipfracs.append(clipped / max(pairs, 1))
            if kl > cfg.kl_stop:
                opt.zero_grad(set_to_none=True)
                stopped = True
                break
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            updates += 1
            losses.append(total)
        if stopped:
            break
    return {"loss": float(np.mean(losses)) if losses else None,
            "approx_kl_max": float(max(kls)) if kls else None,
            "approx_kl_last": kls[-1] if kls else None,
            "clipfrac": float(np.mean(clipfracs)) if clipfracs else None,
            "ratio_dev0": dev0, "updates": updates, "kl_stopped": stopped,
            "rows": int(len(rows)), "pairs_per_row": k}


class SanityRun:
    """One method's run; its whole state is saved after every round and evaluation, and a
    restarted run continues from there (same config digest) with the same random streams."""

    def __init__(self, name: str, base_path: Path, out: Path, cfg: SanityConfig, log: Log):
        from ..detector import score  # noqa: F401 - fail early if the reward is unavailable
        from ..model import load_model

        self.cfg, self.log = cfg, log
        self.method = cfg.method(name)
        self.dir = out / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.pt"
        self.model = load_model(base_path, "cpu")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.params = list(self.model.unet.parameters())
        for p in self.params:
            p.requires_grad_(True)
        self.model.eval()  # no dropout or batch statistics: sampling and training see one policy
        self.opt = torch.optim.AdamW(self.params, lr=self.method.lr, betas=(0.9, 0.999),
                                     weight_decay=cfg.weight_decay, eps=1e-8)
        self.grid = make_grid(self.model.alphas_cumprod, cfg.steps)
        self.prompts = one_object_prompts()
        index = ("ddpo", "b2").index(name)
        # Training streams: derived from the run seed and the method, never the eval seed.
        self.rng = np.random.default_rng([cfg.seed, index, 1])
        self.gen = torch.Generator().manual_seed(1_000 * cfg.seed + 17 + index)
        with torch.no_grad():
            self.uncond = self.model.encode_text(self.model.tokenize([""]))
            self.cond_all = self.model.encode_text(self.model.tokenize(self.prompts))
        self.queries, self.round = 0, 0
        self.curve: list[dict] = []
        self.rounds: list[dict] = []
        self.t_spent = 0.0
        self._resume()

    # -- state --------------------------------------------------------------------------------
    def _resume(self) -> None:
        if not self.state_path.is_file():
            return
        blob = torch.load(self.state_path, map_location="cpu")
        if blob.get("format") != FORMAT or blob.get("config") != self.cfg.digest(self.method.name):
            self.log(f"{self.method.name}: saved state is for another config; starting afresh")
            return
        self.model.unet.load_state_dict(blob["unet"])
        self.opt.load_state_dict(blob["opt"])
        self.gen.set_state(blob["gen"])
        self.rng.bit_generator.state = blob["rng"]
        self.queries, self.round = blob["queries"], blob["round"]
        self.curve, self.rounds, self.t_spent = blob["curve"], blob["rounds"], blob["seconds"]
        self.log(f"{self.method.name}: resumed at round {self.round}, {self.queries} queries")

    def _save(self, t0: float) -> None:
        blob = {"format": FORMAT, "config": self.cfg.digest(self.method.name),
                "unet": {k: v.detach().clone() for k, v in self.model.unet.state_dict().items()},
                "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "rng": self.rng.bit_generator.state, "queries": self.queries, "round": self.round,
                "curve": self.curve, "rounds": self.rounds,
                "seconds": self.t_spent + (time.time() - t0)}
        tmp = self.state_path.with_name("state.pt.tmp")
        torch.save(blob, tmp)
        tmp.replace(self.state_path)

    # -- rounds -------------------------------------------------------------------------------
    def _score(self, traj: Trajectories, prompts: list[str]) -> np.ndarray:
        from ..detector import score
        from ..model import to_uint8

        with torch.no_grad():
            images = to_uint8(self.model.decode(traj.final))
        self.queries += len(prompts)
        return score(images, prompts).astype(np.float64)

    def _balanced(self, count: int) -> np.ndarray:
        """Prompt indices: every one-object prompt equally often (`count` a multiple of 12)."""
        reps = max(1, count // len(self.prompts))
        return np.tile(np.arange(len(self.prompts)), reps)[:count] if count >= len(self.prompts) \
            else self.rng.choice(len(self.prompts), count, replace=False)

    def ddpo_round(self) -> dict:
        cfg = self.cfg
        idx = self._balanced(cfg.images_per_round)
        cond = self.cond_all[torch.as_tensor(idx)]
        traj = sample(self.model, self.grid, cond, self.uncond, cfg.guidance, 1.0, self.gen)
        rewards = self._score(traj, [self.prompts[i] for i in idx])
        adv = group_z(rewards, idx)  # per prompt, within this round
        steps = trained_steps(self.grid, 0, cfg.min_t)
        record = {"reward": float(rewards.mean())}
        record.update(ppo_update(self.model, self.params, self.opt, self.grid, traj, cond,
                                 self.uncond, np.arange(len(idx)), adv, steps, self.method, cfg,
                                 self.rng))
        return record

    def b2_round(self) -> dict:
        cfg, m = self.cfg, self.method
        n_stages = max(1, cfg.queries // cfg.images_per_round)
        stage = min(self.round, n_stages - 1)
        s = split_steps(stage, n_stages, m.s_min, cfg.steps) if m.s_min else cfg.steps
        at = cfg.steps - s
        idx = self._balanced(cfg.images_per_round // m.branches)
        cond = self.cond_all[torch.as_tensor(idx)]
        traj = sample(self.model, self.grid, cond, self.uncond, cfg.guidance, 1.0, self.gen,
                      branch_at=at, branches=m.branches)
        row_prompt = idx[traj.rows.numpy()]
        rewards = self._score(traj, [self.prompts[i] for i in row_prompt])
        z = group_z(rewards, traj.rows.numpy())  # within each branch group
        chosen = select_branches(z, m.branches)
        steps = trained_steps(self.grid, at, cfg.min_t)
        record = {"reward": float(rewards.mean()), "stage": stage, "branch_t": int(self.grid.timesteps[at]),
                  "positives": sum(c.z > 0 for c in chosen), "negatives": sum(c.z < 0 for c in chosen)}
        if chosen and steps:
            rows = np.array([c.row for c in chosen])
            adv = np.array([c.z for c in chosen])
            record.update(ppo_update(self.model, self.params, self.opt, self.grid, traj, cond,
                                     self.uncond, rows, adv, steps, m, cfg, self.rng))
        return record

    # -- the run ------------------------------------------------------------------------------
    def eval_points(self) -> list[int]:
        """Query counts after which the curve is measured (0, the base's, comes from the
        orchestrator's base evaluation; the last is on the full held-out set)."""
        q, k = self.cfg.queries, max(1, self.cfg.evals)
        per = self.cfg.images_per_round
        pts = {min(q, per * math.ceil(q * j / k / per)) for j in range(1, k + 1)}
        return sorted(pts)

    def run(self) -> dict:
        cfg = self.cfg
        t0 = time.time()
        points = self.eval_points()
        while True:
            done = {e["queries"] for e in self.curve}
            if self.queries in points and self.queries not in done:
                final = self.queries >= cfg.queries
                per = cfg.eval_per_prompt if final else cfg.curve_per_prompt
                te = time.time()
                scores = evaluate(self.model, self.grid, cfg, per)
                entry = {"queries": self.queries, "round": self.round, "per_prompt": per,
                         "seconds": round(self.t_spent + time.time() - t0, 1),
                         "eval_seconds": round(time.time() - te, 1), "scores": scores}
                self.curve.append(entry)
                self.log(f"{self.method.name} eval @ {self.queries} queries ({per}/prompt, "
                         f"{entry['eval_seconds']} s): " + ", ".join(
                             f"{k} {v.count('1') / len(v):.3f}" for k, v in scores.items()))
                self._save(t0)
            if self.queries >= cfg.queries:
                break
            record = self.ddpo_round() if self.method.name == "ddpo" else self.b2_round()
            self.round += 1
            record.update(round=self.round, queries=self.queries,
                          seconds=round(self.t_spent + time.time() - t0, 1))
            self.rounds.append(record)
            kl = record.get("approx_kl_max")
            self.log(f"{self.method.name} round {self.round} ({self.queries} q, {record['seconds']} s): "
                     f"reward {record['reward']:.3f}, kl {kl if kl is None else f'{kl:.2e}'}, "
                     f"clipfrac {record.get('clipfrac')}, updates {record.get('updates')}, "
                     f"dev0 {record.get('ratio_dev0')}{' KL-STOP' if record.get('kl_stopped') else ''}")
            self._save(t0)
        history = {"format": FORMAT, "method": self.method.name, "config": cfg.to_dict(),
                   "queries": self.queries, "seconds": round(self.t_spent + time.time() - t0, 1),
                   "curve": self.curve, "rounds": self.rounds}
        _write_json(self.dir / "history.json", history)
        torch.save({"format": "shapes-unet/1",
                    "state": {k: v.detach().cpu() for k, v in self.model.unet.state_dict().items()}},
                   self.dir / "unet.pt")
        return history


# ------------------------------------------------------------------------------ orchestration

def _paired_se(a: str, b: str) -> float:
    """SE of the mean paired difference of two 0/1 score strings over the same images."""
    d = np.array([int(x) - int(y) for x, y in zip(a, b)], dtype=np.float64)
    return float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")


def summarize(out: Path, cfg: SanityConfig, log: Log, plot: bool = True) -> dict:
    """Base vs each method on the full held-out set, the curves on the curve subset."""
    prompts = one_object_prompts()
    base = json.loads((out / "base" / "eval.json").read_text())["scores"]
    hist = {m: json.loads((out / m / "history.json").read_text()) for m in ("ddpo", "b2")}
    etas = [f"eta{e:g}" for e in cfg.eval_etas]
    full, sub = cfg.eval_per_prompt, cfg.curve_per_prompt
    result: dict = {"format": FORMAT, "config": cfg.to_dict(),
                    "sampler": f"policy DDIM, K = {cfg.steps} steps, guidance {cfg.guidance:g}",
                    "eval_images": full * len(prompts), "curve_images": sub * len(prompts),
                    "eval_seed": cfg.eval_seed, "alignment": {}, "curves": {}}
    for k in etas:
        row = {"base": eval_stats(base[k], full, prompts)}
        for m in ("ddpo", "b2"):
            last = hist[m]["curve"][-1]
            st = eval_stats(last["scores"][k], full, prompts)
            gain = 100 * (st["alignment"] - row["base"]["alignment"])
            st.update(queries=last["queries"], gain_points=gain,
                      paired_se_points=100 * _paired_se(last["scores"][k], base[k]),
                      goal_met=bool(gain >= cfg.goal_points))
            row[m] = st
        result["alignment"][k] = row
    for m in ("ddpo", "b2"):
        pts = [{"queries": 0, **{k: eval_stats(base[k], sub, prompts) for k in etas}}]
        pts += [{"queries": e["queries"], **{k: eval_stats(e["scores"][k], sub, prompts) for k in etas}}
                for e in hist[m]["curve"]]
        result["curves"][m] = [{"queries": p["queries"],
                                **{k: {"alignment": p[k]["alignment"], "se": p[k]["se"]} for k in etas}}
                               for p in pts]
        result.setdefault("train_reward", {})[m] = [(r["queries"], r["reward"]) for r in hist[m]["rounds"]]
    result["seconds"] = {m: hist[m]["seconds"] for m in ("ddpo", "b2")}
    result["kl_stops"] = {m: sum(bool(r.get("kl_stopped")) for r in hist[m]["rounds"]) for m in ("ddpo", "b2")}
    result["max_ratio_dev0"] = {m: max([r.get("ratio_dev0") or 0.0 for r in hist[m]["rounds"]] or [0.0])
                                for m in ("ddpo", "b2")}
    _write_json(out / "curves.json", {"images_per_point": sub * len(prompts), **result["curves"]})
    _write_json(out / "summary.json", result)
    for k in etas:
        log(f"one-object alignment, {k} ({full * len(prompts)} held-out images per model, {result['sampler']}):")
        for m in ("base", "ddpo", "b2"):
            r = result["alignment"][k][m]
            extra = "" if m == "base" else (f"  gain {r['gain_points']:+.1f} pts (paired SE "
                                            f"{r['paired_se_points']:.1f}), goal {'met' if r['goal_met'] else 'NOT met'}")
            log(f"  {m:5s} {100 * r['alignment']:5.1f} % ± {100 * r['se']:.1f}{extra}")
        for m in ("ddpo", "b2"):
            pts = "  ".join(f"{c['queries']}:{100 * c[k]['alignment']:.1f}" for c in result["curves"][m])
            log(f"  curve {m} ({sub * len(prompts)} images/point) queries:alignment%  {pts}")
    if plot:
        try:
            _plot(result, etas, out / "curves.png")
        except Exception as e:  # noqa: BLE001 - the figure is optional
            log(f"plot skipped: {type(e).__name__}: {e}")
    return result


def _plot(result: dict, etas: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(etas), figsize=(5 * len(etas), 4), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], etas):
        for m, colour in (("ddpo", "tab:red"), ("b2", "tab:blue")):
            c = result["curves"][m]
            q = [e["queries"] for e in c]
            y = np.array([100 * e[k]["alignment"] for e in c])
            se = np.array([100 * e[k]["se"] for e in c])
            ax.plot(q, y, marker="o", color=colour, label={"ddpo": "DDPO", "b2": "B²-DiffuRL"}[m])
            ax.fill_between(q, y - se, y + se, color=colour, alpha=0.15)
        ax.set_title(f"one-object alignment, {k.replace('eta', 'η = ')}")
        ax.set_xlabel("reward queries")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("alignment (%), ± 1 SE")
    axes[0][0].legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def worker(name: str, out: Path, log: Log) -> dict:
    """One method's run from `<out>/config.json` and `<out>/base/model.pt` (one thread)."""
    from .fastmm import numpy_matmul

    cfg = SanityConfig.from_dict(json.loads((out / "config.json").read_text()))
    torch.set_num_threads(1)
    with numpy_matmul(cfg.numpy_matmul):
        return SanityRun(name, out / "base" / "model.pt", out, cfg, log).run()


def evaluate_base(out: Path, cfg: SanityConfig, log: Log) -> dict:
    """The base's scores on the full held-out set (once; reused by both runs' curves)."""
    from ..model import load_model

    path = out / "base" / "eval.json"
    if path.is_file():
        blob = json.loads(path.read_text())
        if blob.get("config") == cfg.digest("eval"):
            return blob
    from .fastmm import numpy_matmul

    model = load_model(out / "base" / "model.pt", "cpu")
    t0 = time.time()
    with numpy_matmul(cfg.numpy_matmul):
        scores = evaluate(model, make_grid(model.alphas_cumprod, cfg.steps), cfg, cfg.eval_per_prompt)
    blob = {"config": cfg.digest("eval"), "seconds": round(time.time() - t0, 1), "scores": scores}
    _write_json(path, blob)
    log(f"base eval ({blob['seconds']} s): " + ", ".join(
        f"{k} {v.count('1') / len(v):.3f}" for k, v in scores.items()))
    return blob


def run_sanity(out: Path, cfg: SanityConfig, log: Log, pack: Path | None = None,
               base: Path | None = None, parallel: bool = True) -> dict:
    """The whole check: base from the pack (or `base`), its evaluation, both runs, summary.
    Returns the summary; prints one JSON line with the headline numbers."""
    from .. import config
    from ..model import load_model, save_model
    from .rebuild import ensure_base_from_pack

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    base_path = out / "base" / "model.pt"
    if base is not None:
        if not base_path.is_file():
            save_model(load_model(base, "cpu"), base_path, extra={"copied_from": str(base)})
    else:
        ensure_base_from_pack(base_path, pack or (config.PACKS / "shapes-base"), log)
    _write_json(out / "config.json", cfg.to_dict())
    log(f"rl-sanity: config {cfg.digest()} -> {out}; {'two processes' if parallel else 'in process'}")
    evaluate_base(out, cfg, log)
    if parallel:
        factory = Path(__file__).resolve().parents[2]
        (out / "logs").mkdir(exist_ok=True)
        procs = []
        for name in ("ddpo", "b2"):
            handle = open(out / "logs" / f"{name}.txt", "a")
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            cmd = [sys.executable, "-m", "shapes.rl.sanity", "--worker", name, "--out", str(out)]
            procs.append((name, subprocess.Popen(cmd, cwd=factory, stdout=handle,
                                                 stderr=subprocess.STDOUT, env=env), handle))
        shown = {name: 0 for name, _, _ in procs}
        while True:
            running = any(p.poll() is None for _, p, _ in procs)
            for name, _, _ in procs:  # relay the workers' new log lines
                lines = (out / "logs" / f"{name}.txt").read_text().splitlines()
                for line in lines[shown[name]:]:
                    log(f"  [{name}] {line}")
                shown[name] = len(lines)
            if not running:
                break
            time.sleep(2.0)
        failed = []
        for name, proc, handle in procs:
            handle.close()
            if proc.returncode != 0:
                failed.append(name)
        if failed:
            raise RuntimeError(f"rl-sanity runs failed: {failed} (see {out / 'logs'})")
    else:
        threads = torch.get_num_threads()
        try:
            for name in ("ddpo", "b2"):
                worker(name, out, log)
        finally:
            torch.set_num_threads(threads)
    result = summarize(out, cfg, log)
    result["wall_seconds"] = round(time.time() - t0, 1)
    _write_json(out / "summary.json", result)
    line = {"rl_sanity": {k: {m: {"alignment_pct": round(100 * v["alignment"], 2),
                                  "se_pct": round(100 * v["se"], 2),
                                  **({"gain_points": round(v["gain_points"], 2),
                                      "goal_met": v["goal_met"]} if m != "base" else {})}
                              for m, v in row.items()} for k, row in result["alignment"].items()},
            "images_per_model": result["eval_images"], "queries": cfg.queries,
            "wall_seconds": result["wall_seconds"]}
    print(json.dumps(line), flush=True)
    return result


def with_overrides(cfg: SanityConfig, items: list[str]) -> SanityConfig:
    """`cfg` with `key=value` settings applied ('queries=960', 'ddpo.lr=1e-4')."""
    for item in items:
        key, _, raw = item.partition("=")
        target, _, sub = key.partition(".")
        holder = cfg.method(target) if sub else cfg
        name = sub or key
        cur = getattr(holder, name)
        if raw == "None":
            value = None
        elif isinstance(cur, tuple):
            value = tuple(float(v) for v in raw.split(","))
        elif cur is None:
            value = int(raw)
        else:
            value = type(cur)(raw)
        holder = replace(holder, **{name: value})
        cfg = replace(cfg, **{target: holder}) if sub else holder
    return cfg


def main(argv: list[str] | None = None) -> int:
    from .. import config

    p = argparse.ArgumentParser(prog="python -m shapes.rl.sanity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=config.CACHE / "rl-sanity")
    p.add_argument("--worker", choices=("ddpo", "b2"), help="run one method (used by the runner)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SanityConfig field, e.g. queries=960 or ddpo.lr=1e-4")
    p.add_argument("--sequential", action="store_true", help="one process, one method after the other")
    p.add_argument("--summarize", action="store_true", help="only rewrite summary.json from the histories")
    args = p.parse_args(argv)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    if args.worker:
        worker(args.worker, args.out, log)
        return 0
    if args.summarize:
        summarize(args.out, SanityConfig.from_dict(json.loads((args.out / "config.json").read_text())), log)
        return 0
    run_sanity(args.out, with_overrides(DEFAULT, args.set), log, parallel=not args.sequential)
    return 0


if __name__ == "__main__":
    sys.exit(main())

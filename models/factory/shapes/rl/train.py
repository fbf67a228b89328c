"""One RL run on the Shapes model: B²-DiffuRL (and its two ablations) or DDPO, at a fixed budget of
reward queries (every scored image counts), with alignment measured along the way.

A run loads the base checkpoint and tunes its UNet (all of it by default; LoRA adapters with
`lora_rank` > 0), repeating rounds of: sample with the η = 1 policy → decode → score with the
detector → turn rewards into advantages → PPO-clip updates. It writes `<out>/<method>-seed<k>/`
with `history.json` (alignment vs queries, per-round statistics), the tuned weights (`unet.pt`, or
`adapter.pt` for LoRA), the full `model.pt` (B's `save_model`) and `samples.npz` (final η = 0
evaluation images, for diversity and FD elsewhere).

Why full fine-tuning: the first GPU run used LoRA rank 4 on the attention projections at the
prescribed learning rates (1e-4 / 3e-4). After 9 600 reward queries no run's η = 0 alignment had
moved beyond evaluation noise (one-object alignment identical to the base at every evaluation):
at this budget the adapter's first-order change, lr·|A|, is too small. The UNet has 4.2 M
parameters, so full fine-tuning costs little memory, needs no merge, and keeps the references'
optimiser settings.

Methods (ALGORITHMS.md §4): `b2` (branching + backward progressive stages + z-score selection),
`b2-nobranch` (independent samples, same selection and stages), `b2-noprogressive` (branching at
x_T, every step trained from the first stage), `ddpo` (every sample, every step, running per-prompt
z-score). Each round scores the same number of images in every method, so "equal queries" is
"equal rounds".
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .evaluate import EvalSpec, alignment, feature_metrics, pixel_diversity, prompt_sets
from .lora import adapter_state, add_lora, merge
from .policy import Trajectories, make_grid, sample, step_log_prob
from .ppo import ppo_clip_loss
from .rewards import PerPromptStatTracker, StageWindowZScore, select_branches
from .stages import split_steps

Log = Callable[[str], None]


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "b2" or "ddpo"
    branches: int = 5
    progressive: bool = True
    clip: float = 0.1
    lr: float = 1e-4
    epochs: int = 2


METHODS = {
    "b2": Method("b2", "b2"),
    "b2-nobranch": Method("b2-nobranch", "b2", branches=1),
    "b2-noprogressive": Method("b2-noprogressive", "b2", progressive=False),
    "ddpo": Method("ddpo", "ddpo", branches=1, clip=1e-4, lr=3e-4, epochs=1),
}


@dataclass(frozen=True)
class Budget:
    """How much one run may do; `FULL` for the GPU, `SMOKE` for a CPU test in seconds."""

    queries: int = 9_600  # scored images per run
    images_per_round: int = 320  # scored images per stage (B²) / epoch (DDPO)
    steps: int = 20  # K, sampler steps of the policy (and of the evaluation)
    s_min: int = 14  # first stage trains the last 14 of 20 steps, as released
    history: int = 8  # previous stages in the z-score window
    pos: float = 0.5
    neg: float = -0.5
    adv_clip: float = 5.0
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    samples_per_step: int = 32  # trajectories per optimizer step (same for every method)
    micro_pairs: int = 256  # (trajectory, step) pairs per forward/backward pass
    lora_rank: int = 0  # 0: fine-tune the whole UNet; r > 0: LoRA rank r on its attention
    seconds: float = 230.0  # wall-clock cap of the training rounds
    evals: int = 8  # evaluations along the run (plus one before the first round)
    eval: EvalSpec = field(default_factory=lambda: EvalSpec(prompts=48, per_prompt=2, steps=20,
                                                            guidance=5.0, etas=(0.0,),
                                                            one_object=4))
    final: EvalSpec = field(default_factory=lambda: EvalSpec(prompts=128, per_prompt=4, steps=20,
                                                             guidance=5.0))
    guidance: float = 5.0

    def to_dict(self) -> dict:
        return asdict(self)


FULL = Budget()
_SMOKE_EVAL = EvalSpec(prompts=1, per_prompt=2, steps=4, guidance=5.0, etas=(0.0,), one_object=1)
SMOKE = Budget(queries=20, images_per_round=10, steps=4, s_min=2, samples_per_step=4, micro_pairs=6, seconds=60.0,
               evals=1, eval=_SMOKE_EVAL, final=_SMOKE_EVAL)


def with_guidance(budget: Budget, guidance: float) -> Budget:
    """The budget with one guidance for sampling, training and evaluation (they must agree)."""
    return replace(budget, guidance=guidance, eval=replace(budget.eval, guidance=guidance),
                   final=replace(budget.final, guidance=guidance))


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def unet_sha256(model) -> str:
    """Digest of the (merged) UNet weights, to check a rebuilt checkpoint is the evaluated one."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Run:
    """State of one run: the model being tuned, optimizer, reward normaliser and records."""

    def __init__(self, method: Method, seed: int, base_path: Path, out_dir: Path,
                 device: torch.device, budget: Budget, log: Log):
        from ..model import load_model
        from ..world import all_prompts

        self.method, self.seed, self.budget, self.log = method, seed, budget, log
        self.device = device
        self.dir = out_dir / f"{method.name}-seed{seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        self.model = load_model(base_path, device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        if budget.lora_rank > 0:
            self.params = add_lora(self.model.unet, budget.lora_rank)
        else:
            self.params = list(self.model.unet.parameters())
            for p in self.params:
                p.requires_grad_(True)
        self.model.eval()  # no dropout or batch statistics: sampling and training see one policy
        self.opt = torch.optim.AdamW(self.params, lr=method.lr, betas=(0.9, 0.999),
                                     weight_decay=budget.weight_decay, eps=1e-8)
        self.grid = make_grid(self.model.alphas_cumprod, budget.steps)
        self.trainable = self.grid.trainable(1.0)
        self.prompts = all_prompts("train")
        # The same seed draws the same prompts in every method: paired comparisons.
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            self.uncond = self.model.encode_text(self.model.tokenize([""]))
        self.zscore = StageWindowZScore(budget.history)
        self.tracker = PerPromptStatTracker()
        self.queries = 0
        self.rounds: list[dict] = []
        self.evals: list[dict] = []
        self.sets = prompt_sets(budget.eval)
        self.t0 = time.time()

    # -- pieces ---------------------------------------------------------------------------------
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.encode_text(self.model.tokenize(prompts))

    def _score(self, traj: Trajectories, prompts: list[str]) -> np.ndarray:
        from ..detector import score
        from ..model import to_uint8

        with torch.no_grad():
            images = to_uint8(self.model.decode(traj.final))
        self.queries += len(prompts)
        return score(images, prompts)

    def _update(self, traj: Trajectories, cond: torch.Tensor, rows: np.ndarray, adv: np.ndarray,
                steps: list[int]) -> dict:
        """PPO-clip epochs over the chosen rows × steps. One optimizer step per
        `samples_per_step` trajectories (all their trained steps, as in both references), its
        gradient accumulated over micro-batches of at most `micro_pairs` (trajectory, step) pairs."""
        m, b = self.method, self.budget
        n_steps = len(steps)
        step_idx = torch.tensor(steps, device=self.device)
        per_micro = max(1, b.micro_pairs // n_steps)
        losses, clipfracs, dev0 = [], [], None
        for _ in range(m.epochs):
            order = self.rng.permutation(len(rows))
            for start in range(0, len(order), b.samples_per_step):
                chunk = order[start:start + b.samples_per_step]
                self.opt.zero_grad(set_to_none=True)
                total = 0.0
                for ms in range(0, len(chunk), per_micro):
                    pick = chunk[ms:ms + per_micro]
                    r = torch.as_tensor(rows[pick], device=self.device).repeat_interleave(n_steps)
                    s = step_idx.repeat(len(pick))
                    a = torch.as_tensor(adv[pick], device=self.device, dtype=torch.float32)
                    lp = step_log_prob(self.model, self.grid, traj.latents[r, s],
                                       traj.latents[r, s + 1], s, cond[traj.rows[r]], self.uncond,
                                       b.guidance, 1.0)
                    old = traj.log_probs[r, s]
                    loss = ppo_clip_loss(lp, old, a.repeat_interleave(n_steps), m.clip, b.adv_clip)
                    (loss * (len(pick) / len(chunk))).backward()
                    total += float(loss.detach()) * len(pick) / len(chunk)
                    with torch.no_grad():
                        dev = (lp - old).exp().sub(1).abs()
                    if dev0 is None:  # before any update ρ must be 1, up to rounding
                        dev0 = float(dev.max())
                    clipfracs.append(float((dev > m.clip).float().mean()))
                torch.nn.utils.clip_grad_norm_(self.params, b.max_grad_norm)
                self.opt.step()
                losses.append(total)
        return {"loss": float(np.mean(losses)) if losses else None,
                "clipfrac": float(np.mean(clipfracs)) if clipfracs else None,
                "ratio_dev0": dev0, "updates": len(losses)}

    def progress(self) -> float:
        """Fraction of the budget spent: queries, or wall clock if that runs out first."""
        b = self.budget
        return min(1.0, max(self.queries / b.queries, (time.time() - self.t0) / b.seconds))

    # -- rounds ---------------------------------------------------------------------------------
    def b2_round(self) -> dict:
        m, b = self.method, self.budget
        n_stages = b.queries // b.images_per_round
        stage = min(n_stages - 1, int(self.progress() * n_stages))
        s = split_steps(stage, n_stages, b.s_min, b.steps, m.progressive)
        at = b.steps - s
        trunks = b.images_per_round // m.branches
        prompts = [str(p) for p in self.rng.choice(self.prompts, trunks)]
        cond = self._encode(prompts)
        traj = sample(self.model, self.grid, cond, self.uncond, b.guidance, 1.0, self.gen,
                      branch_at=at, branches=m.branches)
        row_prompts = [prompts[i] for i in traj.rows.tolist()]
        rewards = self._score(traj, row_prompts)
        z = self.zscore.update(row_prompts, rewards)
        chosen = select_branches(z, m.branches, b.pos, b.neg)
        steps = [i for i in range(at, b.steps) if bool(self.trainable[i])]
        record = {"stage": stage, "split_steps": s, "reward": float(rewards.mean()),
                  "positives": sum(c.z > 0 for c in chosen), "negatives": sum(c.z < 0 for c in chosen)}
        if chosen and steps:
            rows = np.array([c.row for c in chosen])
            adv = np.array([c.z for c in chosen])
            record.update(self._update(traj, cond, rows, adv, steps))
        return record

    def ddpo_round(self) -> dict:
        b = self.budget
        prompts = [str(p) for p in self.rng.choice(self.prompts, b.images_per_round)]
        cond = self._encode(prompts)
        traj = sample(self.model, self.grid, cond, self.uncond, b.guidance, 1.0, self.gen)
        rewards = self._score(traj, prompts)
        adv = self.tracker.update(prompts, rewards)
        steps = [i for i in range(b.steps) if bool(self.trainable[i])]
        record = {"reward": float(rewards.mean())}
        record.update(self._update(traj, cond, np.arange(len(prompts)), adv, steps))
        return record

    def evaluate(self) -> dict:
        scores, _ = alignment(self.model, self.sets, self.budget.eval)
        entry = {"queries": self.queries, "seconds": round(time.time() - self.t0, 1), **scores}
        self.evals.append(entry)
        self.log(f"rl {self.dir.name}: {json.dumps(entry)}")
        return entry

    # -- the whole run --------------------------------------------------------------------------
    def train(self) -> dict:
        b = self.budget
        every = max(b.images_per_round, b.queries // max(1, b.evals))
        next_eval = 0
        while self.queries < b.queries and time.time() - self.t0 < b.seconds:
            if self.queries >= next_eval:
                self.evaluate()
                next_eval += every
            record = self.b2_round() if self.method.kind == "b2" else self.ddpo_round()
            record.update(queries=self.queries, seconds=round(time.time() - self.t0, 2))
            self.rounds.append(record)
        if not self.evals or self.evals[-1]["queries"] != self.queries:
            self.evaluate()
        return self.finish()

    def finish(self) -> dict:
        """Save the tuned weights and the curve first, then the final evaluation: a failure in
        the optional extras must never lose the training."""
        from ..model import save_model

        if self.budget.lora_rank > 0:
            torch.save({"format": "shapes-lora/1", "rank": self.budget.lora_rank,
                        "state": adapter_state(self.model.unet)}, self.dir / "adapter.pt")
            merge(self.model.unet)
        else:
            torch.save({"format": "shapes-unet/1",
                        "state": {k: v.detach().cpu() for k, v in self.model.unet.state_dict().items()}},
                       self.dir / "unet.pt")
        for p in self.model.parameters():
            p.requires_grad_(False)
        digest = unet_sha256(self.model)
        history = {"method": self.method.name, "seed": self.seed, "config": asdict(self.method),
                   "budget": self.budget.to_dict(), "queries": self.queries,
                   "seconds": round(time.time() - self.t0, 1), "unet_sha256": digest,
                   "evals": self.evals, "rounds": self.rounds}
        _write_json(self.dir / "history.json", history)
        save_model(self.model, self.dir / "model.pt",
                   extra={"method": self.method.name, "seed": self.seed, "queries": self.queries,
                          "unet_sha256": digest})
        final, images = final_eval(self.model, self.budget, self.log)
        save_samples(self.dir / "samples.npz", images)
        history["final"] = final
        _write_json(self.dir / "history.json", history)
        return history


def final_eval(model, budget: Budget, log: Log) -> tuple[dict, dict]:
    """Alignment on the larger final sets, and diversity of the two-object η = 0 images."""
    scores, images = alignment(model, prompt_sets(budget.final), budget.final, keep_images=True)
    imgs = np.concatenate([images[k][0] for k in ("seen_two", "heldout_two")])
    prompts = [p for k in ("seen_two", "heldout_two") for p in images[k][1]]
    out = {**scores, "pixel_diversity": pixel_diversity(imgs, prompts)}
    features = feature_metrics(imgs, prompts, allow_training=False, log=log)
    if features is not None:
        out["feature_diversity"] = features
    return out, images


def save_samples(path: Path, images: dict) -> None:
    arrays = {}
    for name, (imgs, prompts) in images.items():
        arrays[f"{name}_images"] = imgs
        arrays[f"{name}_prompts"] = np.array(prompts)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def evaluate_base(base_path: Path, out_dir: Path, device: torch.device, budget: Budget,
                  log: Log) -> dict:
    """The reference point: the base model's alignment curve origin and final-set metrics."""
    from ..model import load_model

    d = out_dir / "base"
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = load_model(base_path, device)
    scores, _ = alignment(model, prompt_sets(budget.eval), budget.eval)
    final, images = final_eval(model, budget, log)
    save_samples(d / "samples.npz", images)
    record = {"method": "base", "queries": 0, "evals": [{"queries": 0, "seconds": 0.0, **scores}],
              "final": final, "unet_sha256": unet_sha256(model),
              "seconds": round(time.time() - t0, 1)}
    _write_json(d / "history.json", record)
    log(f"rl base: {json.dumps(final)}")
    return record


def run_one(method: str, seed: int, base_path: Path, out_dir: Path, device: torch.device,
            budget: Budget, log: Log) -> dict:
    """Train one (method, seed) and write its folder; 'base' only evaluates the base."""
    if device.type == "cuda":
        # Full float32: the PPO ratio compares log-probs from sampling and from training batches
        # of other shapes; TF32 rounding would put noise above DDPO's 1e-4 clip range.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        # Batch shapes change every round (branch point, selected rows): benchmarking each new
        # shape would cost more than it saves.
        torch.backends.cudnn.benchmark = False
    if method != "base" and method not in METHODS:
        raise ValueError(f"unknown RL method {method!r}; choose from base, {', '.join(METHODS)}")
    if not math.isfinite(budget.guidance):
        raise ValueError("guidance must be finite")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # Batches here are a few rows: a second OpenMP thread only adds barrier waits, which on a
        # shared, oversubscribed host made the smoke run 5x slower.
        torch.set_num_threads(1)
    try:
        if method == "base":
            return evaluate_base(base_path, out_dir, device, budget, log)
        return Run(METHODS[method], seed, base_path, out_dir, device, budget, log).train()
    finally:
        torch.set_num_threads(threads)

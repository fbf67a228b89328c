"""Resumable Resfusion training (resnoise target, MSE), on CPU or CUDA.

A run lives in one folder: model.safetensors and ema.safetensors (weights), optim.pt (Adam
moments) and state.json (step, total steps, recipe, sessions, loss log). Every session picks up
where the last one stopped; the learning-rate schedule spans the run's total steps, fixed when the
run starts (`--steps`, or `--fit-budget`: as many as the measured speed fits in `--budget`).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from common.files import write_atomic as _atomic_write

from . import degrade
from .config import Recipe
from .model import build, count_parameters
from .schedule import forward_torch, truncated_schedule

STATE = "state.json"


def save_weights(path: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(path, lambda p: save_file(tensors, str(p)))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


def read_state(run: Path) -> dict | None:
    p = run / STATE
    return json.loads(p.read_text()) if p.is_file() else None


class CropSampler:
    """Random crops of the training photos (area-weighted), with the 8 flips/rotations."""

    def __init__(self, photos: list[np.ndarray], crop: int, device: torch.device, seed: int):
        self.images = [torch.from_numpy(np.array(p)).permute(2, 0, 1).to(device)
                       for p in photos if min(p.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no training photo is at least {crop} px on its short side")
        area = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.weights = area / area.sum()
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        out = []
        for i in self.rng.choice(len(self.images), size=n, p=self.weights):
            im = self.images[i]
            y = self.rng.integers(0, im.shape[1] - self.crop + 1)
            x = self.rng.integers(0, im.shape[2] - self.crop + 1)
            c = im[:, y:y + self.crop, x:x + self.crop]
            k = self.rng.integers(0, 8)
            c = torch.rot90(c, int(k % 4), dims=(1, 2))
            out.append(torch.flip(c, dims=(2,)) if k >= 4 else c)
        return torch.stack(out).float() / 255.0


def lr_at(step: int, total: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = min(1.0, (step - recipe.warmup) / max(1, total - recipe.warmup))
    floor = recipe.min_lr_ratio
    return recipe.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(task: str, photos: list[np.ndarray], run: Path, recipe: Recipe, device: torch.device,
          device_label: str, steps: int | None = None, budget_s: float | None = None,
          fit_budget: bool = False, resume: bool = True, log=print) -> dict:
    """Train (or resume) the run in `run`; return its state. Stops after `budget_s` seconds."""
    run.mkdir(parents=True, exist_ok=True)
    sched = truncated_schedule()
    model, ema = build({"steps": sched.steps}).to(device), build({"steps": sched.steps}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.99),
                            weight_decay=recipe.weight_decay)
    state = read_state(run) if resume else None
    if state is not None:
        if state["task"] != task:
            raise RuntimeError(f"{run} holds a {state['task']} run, not {task}")
        load_weights(run / "model.safetensors", model)
        load_weights(run / "ema.safetensors", ema)
        if (run / "optim.pt").is_file():
            opt.load_state_dict(torch.load(run / "optim.pt", map_location=device, weights_only=False))
        else:
            log("train: no optimiser state in the checkpoint; Adam moments restart")
        recipe = Recipe(**state["recipe"])
        log(f"train: resuming {task} at step {state['step']}/{state['total_steps']}")
    else:
        ema.load_state_dict(model.state_dict())
        state = {"task": task, "step": 0, "total_steps": steps or recipe.steps,
                 "total_fixed": not fit_budget, "recipe": recipe.as_dict(),
                 "model": model.config, "parameters": count_parameters(model),
                 "train_seconds": 0.0, "sessions": [], "loss_log": []}
    for p in ema.parameters():
        p.requires_grad_(False)
    if state["step"] >= state["total_steps"]:
        log(f"train: {task} already finished ({state['step']} steps)")
        return state

    seed = recipe.seed + state["step"]
    sampler = CropSampler(photos, recipe.crop, device, seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    make_degraded = degrade.DEGRADE[task]
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast(device_type="cpu", enabled=False))
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    session = {"device": device_label, "start_step": state["step"], "steps": 0, "seconds": 0.0}
    state["sessions"].append(session)
    t_start = time.time()
    last_ckpt, running, n_running = t_start, 0.0, 0
    calibrate_at = None
    ema_params = list(ema.parameters())
    model_params = [p.detach() for p in model.parameters()]
    model.train()
    while state["step"] < state["total_steps"]:
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, state["total_steps"], recipe)
        with torch.no_grad():
            clean01 = sampler.batch(recipe.batch)
            deg01 = make_degraded(clean01, gen)
            clean, deg = clean01 * 2 - 1, deg01 * 2 - 1
            t = torch.randint(0, sched.steps, (recipe.batch,), generator=gen, device=device)
            noise = torch.randn(clean.shape, generator=gen, device=device)
            x_t, target = forward_torch(sched, clean, deg, t, noise)
            sample = torch.cat([x_t, deg], dim=1)
            if device.type == "cuda":
                sample = sample.contiguous(memory_format=torch.channels_last)
        with autocast:
            out = model(sample, t)
        loss = torch.nn.functional.mse_loss(out.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        decay = min(recipe.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, decay)
            torch._foreach_add_(ema_params, model_params, alpha=1 - decay)
        state["step"] += 1
        session["steps"] += 1
        running = running + loss.detach()  # stays on the device: no sync every step
        n_running += 1
        now = time.time()
        if n_running == 50 or state["step"] == state["total_steps"]:
            mean_loss = float(running) / n_running
            state["loss_log"].append([state["step"], mean_loss])
            log(f"train {task}: step {state['step']}/{state['total_steps']} "
                f"loss {mean_loss:.5f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{session['steps'] / (now - t_start):.2f} it/s")
            running, n_running = 0.0, 0
        if fit_budget and not state["total_fixed"]:
            # time 20 steps after a 10-step warm-up, then fix the run's length to fit the budget
            if session["steps"] == 10:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                calibrate_at = time.time()
            elif session["steps"] == 30 and calibrate_at is not None:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rate = 20 / (time.time() - calibrate_at)
                left = (budget_s or 0) - (time.time() - t_start) - 15  # 15 s for saving
                state["total_steps"] = max(state["step"] + 1, state["step"] + int(rate * left))
                state["total_fixed"] = True
                log(f"train: {rate:.2f} it/s measured; the run is fixed at {state['total_steps']} steps")
        over_budget = budget_s is not None and now - t_start > budget_s
        if now - last_ckpt > recipe.checkpoint_every_s or over_budget:
            _checkpoint(run, model, ema, opt, state, session, t_start)
            last_ckpt = now
        if over_budget and state["step"] < state["total_steps"]:
            log(f"train: budget of {budget_s:.0f} s spent at step {state['step']}; resume to go on")
            break
    _checkpoint(run, model, ema, opt, state, session, t_start)
    return state


def _checkpoint(run: Path, model, ema, opt, state: dict, session: dict, t_start: float) -> None:
    elapsed = time.time() - t_start
    state["train_seconds"] += elapsed - session["seconds"]
    session["seconds"] = elapsed
    save_weights(run / "model.safetensors", model)
    save_weights(run / "ema.safetensors", ema)
    _atomic_write(run / "optim.pt", lambda p: torch.save(opt.state_dict(), p))
    _atomic_write(run / STATE, lambda p: p.write_text(json.dumps(state, indent=1) + "\n"))


def load_ema(run: Path) -> torch.nn.Module:
    """The run's EMA network (CPU, eval mode): the weights that are exported."""
    state = read_state(run)
    if state is None:
        raise FileNotFoundError(f"no training run in {run}: run the train stage first")
    model = build(state["model"])
    load_weights(run / "ema.safetensors", model)
    return model.eval()

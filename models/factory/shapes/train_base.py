"""Base training of the Shapes model: the VAE first, then the UNet and text encoder on its latents.

Both phases run on wall-clock budgets (the GPU call has a hard limit), with the learning rate
following the fraction of budget spent. The UNet phase keeps an EMA of the UNet + text encoder
and snapshots it along the way; at the end every snapshot is sampled and scored by the detector,
and the checkpoint kept is the most trained one whose two-object alignment on seen prompts lies
in the issue's band (20–60 %), so that the base renders well but leaves room for RL.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from common.device import describe

from . import config
from .config import BaseRecipe, NetConfig
from .model import ShapesModel, generate, save_model

Log = Callable[[str], None]


def render_dataset(n: int, seed: int, workers: int | None = None) -> tuple[np.ndarray, list[str]]:
    """`n` training scenes from A's world, rendered in parallel chunks (each chunk its own seed)."""
    workers = workers or max(1, min(16, (os.cpu_count() or 1)))
    chunk = max(1, math.ceil(n / (workers * 4)))
    from .world import make_dataset

    sizes = [min(chunk, n - i) for i in range(0, n, chunk)]
    seeds = [seed * 100_003 + k for k in range(len(sizes))]
    if workers == 1 or len(sizes) == 1:
        parts = [make_dataset(m, s) for m, s in zip(sizes, seeds)]
    else:
        # spawn, not fork: the parent has torch's thread pools, which fork does not copy safely.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(make_dataset, sizes, seeds))
    return np.concatenate([p[0] for p in parts]), [q for p in parts for q in p[1]]


def _lr_at(fraction: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak, as a function of budget spent."""
    if fraction < warmup:
        return peak * max(fraction / warmup, 0.01)
    p = min(1.0, (fraction - warmup) / (1 - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class _Budget:
    """Fraction of a phase's wall-clock (or iteration) budget spent."""

    def __init__(self, seconds: float, max_iters: int | None):
        self.t0, self.seconds, self.max_iters, self.iters = time.time(), seconds, max_iters, 0

    def fraction(self) -> float:
        f = (time.time() - self.t0) / self.seconds
        if self.max_iters:
            f = max(f, self.iters / self.max_iters)
        return min(f, 1.0)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(model: ShapesModel, images: torch.Tensor, recipe: BaseRecipe, log: Log) -> dict:
    vae = model.vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    budget = _Budget(recipe.vae_seconds, recipe.max_iters)
    gen = torch.Generator(device=images.device).manual_seed(recipe.seed)
    while (f := budget.fraction()) < 1.0:
        for g in opt.param_groups:
            g["lr"] = _lr_at(f, recipe.vae_lr)
        idx = torch.randint(0, images.shape[0], (recipe.vae_batch,), device=images.device, generator=gen)
        x = _to_float(images[idx])
        mean, logvar = vae.encode(x)
        # Decode a posterior sample, so the decoder tolerates the imprecision of sampled latents.
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
        out = vae.decode(z)
        rec_t = F.mse_loss(out, x) + F.l1_loss(out, x)
        kl_t = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec_t + recipe.kl_weight * kl_t
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        budget.iters += 1
        if budget.iters % 200 == 0 or budget.iters == 1:
            log(f"vae it {budget.iters} frac {f:.2f} rec {float(rec_t):.4f} kl {float(kl_t):.3f}")
    vae.eval()
    with torch.no_grad():
        x = _to_float(images[:512])
        mean, _ = vae.encode(x)
        psnr = float(10 * torch.log10(4.0 / F.mse_loss(vae.decode(mean).clamp(-1, 1), x)))
        std = float(torch.cat([vae.encode(_to_float(images[i:i + 512]))[0]
                               for i in range(0, min(4096, images.shape[0]), 512)]).std())
    model.latent_scale = 1.0 / std
    log(f"vae done: {budget.iters} its, psnr {psnr:.2f} dB, latent std {std:.4f} -> scale {model.latent_scale:.4f}")
    return {"vae_iters": budget.iters, "vae_psnr_db": psnr, "latent_std": std}


@torch.no_grad()
def encode_all(model: ShapesModel, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat([model.encode(_to_float(images[i:i + batch])) for i in range(0, images.shape[0], batch)])


def train_unet(model: ShapesModel, latents: torch.Tensor, ids: torch.Tensor, recipe: BaseRecipe,
               log: Log) -> tuple[list[tuple[float, dict]], dict]:
    """Train UNet + text encoder (ε-MSE, CFG dropout); returns EMA snapshots [(fraction, state)]."""
    params = list(model.unet.parameters()) + list(model.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=0.01)
    model.unet.train()
    model.text_encoder.train()
    ema = [p.detach().clone() for p in params]
    abar = model.alphas_cumprod.float()
    budget = _Budget(recipe.unet_seconds, recipe.max_iters)
    gen = torch.Generator(device=latents.device).manual_seed(recipe.seed + 1)
    snaps: list[tuple[float, dict]] = []
    pending = sorted(recipe.snapshots)
    last_loss = float("nan")
    while pending:
        f = budget.fraction()
        if f >= pending[0]:
            snaps.append((pending.pop(0), _ema_state(model, params, ema)))
            log(f"unet snapshot at {snaps[-1][0]:.2f} ({budget.iters} its)")
            continue
        for g in opt.param_groups:
            g["lr"] = _lr_at(f, recipe.unet_lr)
        b = recipe.unet_batch
        idx = torch.randint(0, latents.shape[0], (b,), device=latents.device, generator=gen)
        z0 = latents[idx]
        tok = ids[idx].clone()
        drop = torch.rand(b, device=tok.device, generator=gen) < recipe.cfg_dropout
        tok[drop] = 0  # the empty prompt: all pads
        t = torch.randint(0, abar.shape[0], (b,), device=z0.device, generator=gen)
        noise = torch.randn(z0.shape, device=z0.device, generator=gen)
        a = abar[t][:, None, None, None]
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model.eps(zt, t, model.encode_text(tok)), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        budget.iters += 1
        decay = min(recipe.ema, (1 + budget.iters) / (10 + budget.iters))
        with torch.no_grad():
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - decay)
        if budget.iters % 500 == 0 or budget.iters == 1:
            last_loss = float(loss)  # a host sync, so only now and then
            log(f"unet it {budget.iters} frac {f:.2f} loss {last_loss:.4f}")
    model.unet.eval()
    model.text_encoder.eval()
    return snaps, {"unet_iters": budget.iters, "unet_last_logged_loss": last_loss}


def _ema_state(model: ShapesModel, params: list[torch.Tensor], ema: list[torch.Tensor]) -> dict:
    """The model's state dict with the EMA weights in place of the live UNet/text weights."""
    live = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        for p, l in zip(params, live):
            p.copy_(l)
    return state


def eval_prompt_sets(n: int, seed: int = 1234) -> dict[str, list[str]]:
    """Fixed evaluation prompts: up to `n` of each set (one-object, seen and held-out two-object),
    the two-object sets a seeded draw, the same for every model compared; n ≥ 12 keeps every
    one-object prompt."""
    from .world import all_prompts

    rng = np.random.default_rng(seed)
    train = all_prompts("train")
    one = [p for p in train if len(p.split()) == 3]
    two = [p for p in train if len(p.split()) > 3]
    held = all_prompts("heldout")
    pick = lambda ps: [ps[i] for i in sorted(rng.permutation(len(ps))[:n])]  # noqa: E731
    seen, unseen = pick(two), pick(held)  # drawn first: these sets must not depend on n < 12
    return {"one_object": one[:n], "seen_two": seen, "heldout_two": unseen}


def evaluate(model: ShapesModel, sets: dict[str, list[str]], per_prompt: int, steps: int,
             guidance: float, seed: int = 7) -> dict[str, float]:
    """Detector alignment per prompt set of DDIM samples (η = 0, seeded)."""
    from .detector import score

    out = {}
    for name, prompts in sets.items():
        rep = [p for p in prompts for _ in range(per_prompt)]
        images = generate(model, rep, steps=steps, guidance=guidance, seed=seed)
        out[name] = float(np.mean(score(images, rep))) if rep else float("nan")
    return out


def choose_snapshot(results: list[tuple[float, dict[str, float]]],
                    band: tuple[float, float] = config.TARGET_BAND) -> int:
    """Index of the most trained snapshot with seen two-object alignment inside `band`; if none,
    the one closest to the band (the earliest when all are above it, the last when all below)."""
    inside = [i for i, (_, r) in enumerate(results) if band[0] <= r["seen_two"] <= band[1]]
    if inside:
        return inside[-1]
    dist = [max(band[0] - r["seen_two"], r["seen_two"] - band[1]) for _, r in results]
    return int(min(range(len(results)), key=lambda i: (dist[i], -i)))


def train_base(out: Path, device: torch.device, recipe: BaseRecipe, log: Log) -> dict:
    """Render data, train VAE then UNet + text encoder, pick a snapshot, save `out` (model.pt)."""
    t0 = time.time()
    torch.manual_seed(recipe.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    images_np, prompts = render_dataset(recipe.images, recipe.seed)
    log(f"rendered {len(prompts)} scenes in {time.time() - t0:.1f}s")
    cfg = NetConfig.from_dict({**NetConfig().to_dict(), **recipe.nets})
    model = ShapesModel(cfg).to(device)
    images = torch.from_numpy(images_np).to(device)
    ids = model.tokenize(prompts)
    stats = train_vae(model, images, recipe, log)
    latents = encode_all(model, images)
    del images
    snaps, unet_stats = train_unet(model, latents, ids, recipe, log)
    stats.update(unet_stats)
    # Keep every snapshot on disk before evaluating, so a failure below loses no training.
    for frac, state in snaps:
        model.load_state_dict(state)
        save_model(model, out.with_name(f"snapshot-{frac:.2f}.pt"), extra={"fraction": frac, **stats})
    sets = eval_prompt_sets(recipe.eval_prompts)
    results = []
    for frac, state in snaps:
        model.load_state_dict(state)
        r = evaluate(model, sets, recipe.eval_per_prompt, recipe.eval_steps, recipe.guidance)
        results.append((frac, r))
        log(f"snapshot {frac:.2f}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
    pick = choose_snapshot(results)
    model.load_state_dict(snaps[pick][1])
    record = {
        **stats,
        "device": describe(device),
        "seconds": round(time.time() - t0, 1),
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.__dict__.items()},
        "snapshots": [{"fraction": f, **r} for f, r in results],
        "chosen_snapshot": snaps[pick][0],
        "eval": {"guidance": recipe.guidance, "steps": recipe.eval_steps,
                 "per_prompt": recipe.eval_per_prompt, **results[pick][1]},
    }
    save_model(model, out, extra={"base_training": record})
    tmp = out.with_name("train.json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out.with_name("train.json"))
    log(f"saved {out} (snapshot {snaps[pick][0]:.2f}) in {time.time() - t0:.1f}s")
    return record

"""`ShapesModel`: the tokenizer, text encoder, UNet and VAE of the Shapes pack as one module.

This is the interface the rest of the recipe (RL tuning, Time-Shift measurement, export) uses;
it mirrors what the engine does with the exported pack: word-level tokens padded to
`max_length` with pad id 0 ("" is all pads, the unconditional prompt), epsilon-prediction on
latents that are the VAE posterior mean times `latent_scale`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import config
from .config import NetConfig
from .nets import VAE, TextEncoder, UNet


def scaled_linear_alphas_cumprod(spec: dict = config.SCHEDULE) -> torch.Tensor:
    """ᾱ_t in float64 for the pack's schedule (built in float64, as the engine does)."""
    t = spec["trainSteps"]
    if spec["kind"] == "scaled_linear":
        betas = np.linspace(spec["betaStart"] ** 0.5, spec["betaEnd"] ** 0.5, t, dtype=np.float64) ** 2
    elif spec["kind"] == "linear":
        betas = np.linspace(spec["betaStart"], spec["betaEnd"], t, dtype=np.float64)
    else:
        raise ValueError(f"schedule kind {spec['kind']!r} is not one a Shapes model uses")
    return torch.from_numpy(np.cumprod(1.0 - betas))


_WORD = re.compile(r"\w+|[^\w\s]+")


class ShapesModel(nn.Module):
    def __init__(self, cfg: NetConfig, latent_scale: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.max_length = cfg.max_length
        self.vocab = {w: i for i, w in enumerate(cfg.vocab)}
        if self.vocab.get(config.PAD) != 0 or config.UNK not in self.vocab:
            raise ValueError("vocabulary must start with the pad token and contain the unk token")
        self.text_encoder = TextEncoder(len(cfg.vocab), cfg.max_length, cfg.text_dim,
                                        cfg.text_layers, cfg.text_heads)
        self.unet = UNet(cfg.latent_channels, cfg.unet_widths, cfg.unet_heads, cfg.text_dim)
        self.vae = VAE(cfg.vae_widths, cfg.latent_channels)
        self.register_buffer("alphas_cumprod", scaled_linear_alphas_cumprod())
        self.latent_scale = float(latent_scale)

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device

    def token_ids(self, prompt: str) -> list[int]:
        """Ids as the exported tokenizer.json gives them: lowercase, split words, unk, pad."""
        unk = self.vocab[config.UNK]
        ids = [self.vocab.get(w, unk) for w in _WORD.findall(prompt.lower())][: self.max_length]
        return ids + [0] * (self.max_length - len(ids))

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([self.token_ids(p) for p in prompts], dtype=torch.long, device=self.device)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(ids)

    def eps(self, z: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.unet(z, t, states)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        mean, _ = self.vae.encode(images)
        return mean * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z / self.latent_scale)


def save_model(model: ShapesModel, path: str | Path, extra: dict | None = None) -> Path:
    """Write a self-describing checkpoint (config, latent scale, weights) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {"format": "shapes-model/1", "config": model.cfg.to_dict(),
            "latent_scale": model.latent_scale, "state_dict": state, "extra": extra or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> ShapesModel:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Shapes checkpoint {path} does not exist")
    blob = torch.load(path, map_location="cpu")
    if not isinstance(blob, dict) or blob.get("format") != "shapes-model/1":
        raise ValueError(f"{path}: not a Shapes checkpoint (format field missing or wrong)")
    model = ShapesModel(NetConfig.from_dict(blob["config"]), blob["latent_scale"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()


def tiny_model(seed: int = 0) -> ShapesModel:
    """A random, very small model with the full interface, for tests."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = ShapesModel(NetConfig(**config.TINY_NETS)).eval()
        # The UNet's zero-initialised output head would make ε ≡ 0 and ignore the prompt.
        torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
        return model
    finally:
        torch.random.set_rng_state(gen_state)


def sampling_levels(steps: int, train_steps: int = 1000, offset: int = 0) -> list[int]:
    """The engine's increasing level list [t_0 − stride, t_0, …, t_{N−1}], t_i = i·⌊T/N⌋ + offset.

    The first (negative) level means ᾱ_0: where the last DDIM step lands, as in the engine.
    """
    if not 1 <= steps <= train_steps:
        raise ValueError(f"steps must be in [1, {train_steps}], got {steps}")
    stride = train_steps // steps
    return [(k - 1) * stride + offset for k in range(steps + 1)]


def guided_eps(model: ShapesModel, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
               uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """ε_u + g·(ε_c − ε_u), both branches in one batched call, unconditional rows first."""
    out = model.eps(torch.cat([z, z]), torch.cat([t, t]), torch.cat([uncond, cond]))
    e_u, e_c = out.chunk(2)
    return e_u + guidance * (e_c - e_u)


@torch.no_grad()
def ddim_sample(model: ShapesModel, prompts: list[str], noise: torch.Tensor, steps: int,
                guidance: float, eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM from `noise` (the latent at the top level) down to ᾱ_0, states kept in float64.

    The network sees float32 casts of the float64 state, exactly as the engine feeds ONNX, so
    that the engine reproduces this loop (parity vectors) to float32 network precision.
    """
    device = model.device
    cond = model.encode_text(model.tokenize(prompts))
    uncond = model.encode_text(model.tokenize([""] * len(prompts)))
    abar = model.alphas_cumprod
    levels = sampling_levels(steps, len(abar))
    z = noise.to(device=device, dtype=torch.float64)
    for k in range(steps, 0, -1):
        a_from = abar[max(levels[k], 0)]
        a_to = abar[max(levels[k - 1], 0)]
        t = torch.full((z.shape[0],), levels[k], dtype=torch.long, device=device)
        e = guided_eps(model, z.float(), t, cond, uncond, guidance).double()
        x0 = (z - (1 - a_from).sqrt() * e) / a_from.sqrt()
        std = eta * ((1 - a_to) / (1 - a_from) * (1 - a_from / a_to)).sqrt() if eta > 0 else 0.0
        z = a_to.sqrt() * x0 + (1 - a_to - std**2).sqrt() * e
        if eta > 0:
            z = z + std * torch.randn(z.shape, generator=generator, device=device, dtype=torch.float64)
    return z


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoder output [B,3,H,W] in [−1,1] -> uint8 [B,H,W,3], the engine's rounding."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(model: ShapesModel, prompts: list[str], steps: int = 20, guidance: float = 5.0,
             seed: int = 0, batch: int = 256) -> np.ndarray:
    """Images uint8 [N,64,64,3] for `prompts` with deterministic DDIM (seeded noise per call)."""
    gen = torch.Generator().manual_seed(seed)
    c = model.cfg.latent_channels
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        noise = torch.randn((len(chunk), c, 16, 16), generator=gen)
        z = ddim_sample(model, chunk, noise, steps, guidance)
        out.append(to_uint8(model.decode(z.float())))
    return np.concatenate(out) if out else np.zeros((0, 64, 64, 3), np.uint8)

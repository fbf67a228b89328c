"""The three networks of the Shapes model, shaped like Stable Diffusion's but tiny.

- `TextEncoder`: token + position embeddings and a few pre-LN transformer layers over the padded
  word ids (no attention mask input: the engine feeds `input_ids` only, so the pads are ordinary
  learned tokens, as in CLIP's padded prompts).
- `VAE`: 64x64x3 <-> 16x16x4 convolutional autoencoder with a diagonal-Gaussian posterior.
- `UNet`: epsilon-prediction UNet on 16x16 latents with self- and cross-attention on the text
  states at every level; one timestep per batch row (Time-Shift picks a time per sample).
Attention is written with matmul/softmax so the ONNX export is plain and identical on every torch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _groups(ch: int) -> int:
    for g in (16, 8, 4, 2):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


class Attention(nn.Module):
    """Multi-head attention of `x` [B,N,D] on `context` [B,M,Dc] (self-attention when None)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(context_dim or dim, dim, bias=False)
        self.v = nn.Linear(context_dim or dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.k(context).reshape(b, -1, h, d // h).transpose(1, 2)
        v = self.v(context).reshape(b, -1, h, d // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.out((w @ v).transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int, max_length: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({"ln1": nn.LayerNorm(dim), "attn": Attention(dim, heads),
                           "ln2": nn.LayerNorm(dim), "ff": FeedForward(dim)})
            for _ in range(layers))
        self.final = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids.long()) + self.positions[: ids.shape[1]]
        for layer in self.layers:
            x = x + layer["attn"](layer["ln1"](x))
            x = x + layer["ff"](layer["ln2"](x))
        return self.final(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block, optionally conditioned on a time embedding."""

    def __init__(self, cin: int, cout: int, temb: int | None = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb is not None and temb is not None:
            h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, widths: tuple[int, ...], out_ch: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, w in enumerate(widths):
            blocks.append(ResBlock(widths[max(i - 1, 0)], w))
            if i < len(widths) - 1:
                blocks.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.GroupNorm(_groups(widths[-1]), widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm(self.blocks(self.conv_in(x)))))


class Decoder(nn.Module):
    def __init__(self, widths: tuple[int, ...], in_ch: int):
        super().__init__()
        rev = tuple(reversed(widths))
        self.conv_in = nn.Conv2d(in_ch, rev[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, w in enumerate(rev):
            blocks.append(ResBlock(rev[max(i - 1, 0)], w))
            if i < len(rev) - 1:
                blocks += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(w, w, 3, padding=1)]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.GroupNorm(_groups(rev[-1]), rev[-1])
        self.conv_out = nn.Conv2d(rev[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm(self.blocks(self.conv_in(z)))))


class VAE(nn.Module):
    """64x64x3 <-> 16x16xC; `encode` returns the posterior (mean, logvar), unscaled."""

    def __init__(self, widths: tuple[int, ...], latent_channels: int):
        super().__init__()
        self.encoder = Encoder(widths, latent_channels)
        self.decoder = Decoder(widths, latent_channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps [B] -> [B, dim] (as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TransformerBlock(nn.Module):
    """Self-attention over positions, cross-attention on the text states, feed-forward."""

    def __init__(self, ch: int, heads: int, context_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.ln1, self.attn1 = nn.LayerNorm(ch), Attention(ch, heads)
        self.ln2, self.attn2 = nn.LayerNorm(ch), Attention(ch, heads, context_dim)
        self.ln3, self.ff = nn.LayerNorm(ch), FeedForward(ch, mult=2)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        h = h + self.attn1(self.ln1(h))
        h = h + self.attn2(self.ln2(h), context)
        h = h + self.ff(self.ln3(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hh, ww))


class UNet(nn.Module):
    """Latent epsilon-prediction UNet: one ResBlock + TransformerBlock per level and side."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], heads: int, context_dim: int):
        super().__init__()
        self.base = widths[0]
        temb = 4 * widths[0]
        self.time = nn.Sequential(nn.Linear(widths[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_ch, widths[0], 3, padding=1)
        self.down_res = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.down_res.append(ResBlock(prev, w, temb))
            self.down_attn.append(TransformerBlock(w, heads, context_dim))
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            prev = w
        self.mid_res1 = ResBlock(prev, prev, temb)
        self.mid_attn = TransformerBlock(prev, heads, context_dim)
        self.mid_res2 = ResBlock(prev, prev, temb)
        self.up_res = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up_res.append(ResBlock(prev + w, w, temb))
            self.up_attn.append(TransformerBlock(w, heads, context_dim))
            if i > 0:
                self.upsample.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
            prev = widths[i - 1] if i > 0 else w
        self.norm_out = nn.GroupNorm(_groups(widths[0]), widths[0])
        self.conv_out = nn.Conv2d(widths[0], in_ch, 3, padding=1)
        # Start as a zero predictor so early training is stable.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        temb = self.time(timestep_embedding(timestep, self.base))
        h = self.conv_in(sample)
        skips = []
        for i, (res, attn) in enumerate(zip(self.down_res, self.down_attn)):
            h = attn(res(h, temb), context)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, temb), context), temb)
        for i, (res, attn) in enumerate(zip(self.up_res, self.up_attn)):
            h = attn(res(torch.cat([h, skips.pop()], dim=1), temb), context)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))

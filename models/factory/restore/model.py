"""The restoration UNet: concat[x_t, degraded] (6 channels) + 0-based step index -> resnoise.

Shape choices, and why:
- Fully convolutional, three 2x down-samplings: any H, W that are multiples of 8.
- No normalisation layers. GroupNorm statistics depend on the whole input, so overlapping tiles
  of one photo would be normalised differently and disagree at the seams; a plain residual UNet
  (as in DRUNet, the strong learned denoiser) has no such coupling.
- The step index (5 values) picks a learned embedding that scales and shifts every residual
  block (FiLM); residual branches start at zero, so the untrained net is a clean identity path.
- Additive skips (not concatenation) keep the parameter budget for the coarse levels.
"""
from __future__ import annotations

import torch
from torch import nn

WIDTHS = (48, 96, 160, 176)
BLOCKS = (1, 1, 1, 2)  # residual blocks per level on each side; the last entry is the middle
EMBED = 64


class ResBlock(nn.Module):
    def __init__(self, ch: int, embed: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.film = nn.Linear(embed, 2 * ch)
        self.act = nn.SiLU()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.act(self.conv1(x)) * (1 + scale) + shift
        return x + self.conv2(self.act(h))


class RestorationUNet(nn.Module):
    def __init__(self, steps: int = 5, widths=WIDTHS, blocks=BLOCKS, embed: int = EMBED,
                 in_ch: int = 6, out_ch: int = 3):
        super().__init__()
        self.config = {"steps": steps, "widths": list(widths), "blocks": list(blocks),
                       "embed": embed, "in_ch": in_ch, "out_ch": out_ch}
        self.embed = nn.Sequential(nn.Embedding(steps, embed), nn.Linear(embed, embed), nn.SiLU())
        self.stem = nn.Conv2d(in_ch, widths[0], 3, padding=1)
        levels = len(widths) - 1
        self.enc = nn.ModuleList(
            nn.ModuleList(ResBlock(widths[i], embed) for _ in range(blocks[i])) for i in range(levels))
        self.down = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(levels))
        self.mid = nn.ModuleList(ResBlock(widths[-1], embed) for _ in range(blocks[-1]))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(levels))
        self.dec = nn.ModuleList(
            nn.ModuleList(ResBlock(widths[i], embed) for _ in range(blocks[i])) for i in range(levels))
        self.head = nn.Sequential(nn.SiLU(), nn.Conv2d(widths[0], out_ch, 3, padding=1))

    @property
    def multiple_of(self) -> int:
        return 2 ** (len(self.config["widths"]) - 1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        emb = self.embed(timestep)
        h = self.stem(sample)
        skips = []
        for blocks, down in zip(self.enc, self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for i in reversed(range(len(self.up))):
            h = self.up[i](h) + skips[i]
            for block in self.dec[i]:
                h = block(h, emb)
        return self.head(h)


def build(config: dict | None = None) -> RestorationUNet:
    return RestorationUNet(**(config or {}))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Fixed settings of the Shapes recipe: schedule, network sizes, budgets and cache paths.

Kept in one place so that training, export, the RL stage and the card agree on them, and so that
`--smoke` differs from the full recipe only by the presets chosen here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

FACTORY = Path(__file__).resolve().parent.parent
REPO = FACTORY.parent.parent
CACHE = FACTORY / ".cache" / "shapes"
BASE_CHECKPOINT = CACHE / "base" / "model.pt"
RL_DIR = CACHE / "rl"
TIMESHIFT_TABLE = CACHE / "timeshift.json"
PACKS = REPO / "models" / "packs"
PARITY = REPO / "test" / "fixtures" / "parity"

# Stable Diffusion's scaled-linear schedule, T = 1000: the engine treats the pack like SD.
SCHEDULE = {"kind": "scaled_linear", "betaStart": 0.00085, "betaEnd": 0.012, "trainSteps": 1000}

# Special tokens of the word-level tokenizer; pad is id 0 so that "" encodes to all zeros.
PAD, UNK = "[PAD]", "[UNK]"
MAX_LENGTH = 12
# Every word a Shapes prompt can use (checked against world.all_prompts in the tests).
WORDS = ("a", "red", "green", "blue", "yellow", "circle", "square", "triangle",
         "left", "right", "of", "above", "below")


@dataclass
class NetConfig:
    """Sizes of the three networks (the whole checkpoint is rebuilt from this)."""
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 4
    vae_widths: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    unet_widths: tuple[int, ...] = (48, 64, 96)
    unet_heads: int = 4
    vocab: list[str] = field(default_factory=lambda: [PAD, UNK, *WORDS])
    max_length: int = MAX_LENGTH

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vae_widths"] = list(self.vae_widths)
        d["unet_widths"] = list(self.unet_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        d = dict(d)
        d["vae_widths"] = tuple(d["vae_widths"])
        d["unet_widths"] = tuple(d["unet_widths"])
        return cls(**d)


TINY_NETS = {"text_dim": 16, "text_layers": 1, "text_heads": 2, "vae_widths": (8, 8, 8),
             "unet_widths": (16, 16, 16), "unet_heads": 2}

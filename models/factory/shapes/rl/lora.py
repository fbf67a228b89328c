"""LoRA adapters on the UNet's attention projections, and merging them back into plain weights.

What B²-DiffuRL and DDPO tuned on Stable Diffusion (rank 4 on the attention projections); here an
option (`Budget.lora_rank` > 0), since at the Shapes budget it moved the model too little (see
`train.py`). `merge` folds W + (α/r)·B·A into the Linear weights in float64, rounded once to
float32, so the same adapter gives the same merged weights on any machine.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# Linear layers of the UNet's self- and cross-attention (nets.Attention: q, k, v, out).
TARGETS = ("attn1.q", "attn1.k", "attn1.v", "attn1.out", "attn2.q", "attn2.k", "attn2.v", "attn2.out")


class LoRALinear(nn.Module):
    """y = W x + b + (α/r)·B(A x), with W, b frozen; B starts at zero so training starts at W."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank
        self.down = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.up = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * ((x @ self.down.t()) @ self.up.t())

    def merged_weight(self) -> torch.Tensor:
        # On the CPU, like apply_adapter, so both paths round the same float64 values.
        delta = self.up.detach().cpu().double() @ self.down.detach().cpu().double()
        w = self.base.weight.detach().cpu().double()
        return (w + self.scale * delta).float().to(self.base.weight.device)


def _targets(unet: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    found = []
    for name, module in unet.named_modules():
        for target in TARGETS:
            if name.endswith(target) and isinstance(module, nn.Linear):
                parent_name, _, child = name.rpartition(".")
                found.append((unet.get_submodule(parent_name), child, module))
    return found


def add_lora(unet: nn.Module, rank: int = 4, alpha: float | None = None) -> list[nn.Parameter]:
    """Freeze `unet`, put adapters on its attention projections; returns the trainable params."""
    for p in unet.parameters():
        p.requires_grad_(False)
    targets = _targets(unet)
    if not targets:
        raise ValueError("no attention projections (attn1/attn2 q, k, v, out) found in the UNet")
    params: list[nn.Parameter] = []
    for parent, child, linear in targets:
        wrapped = LoRALinear(linear, rank, float(alpha if alpha is not None else rank))
        setattr(parent, child, wrapped)
        params += [wrapped.down, wrapped.up]
    return params


def adapter_state(unet: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters alone (name → tensor on CPU), with rank and scale, for saving."""
    out: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if isinstance(module, LoRALinear):
            out[f"{name}.down"] = module.down.detach().cpu().clone()
            out[f"{name}.up"] = module.up.detach().cpu().clone()
            out[f"{name}.scale"] = torch.tensor(module.scale, dtype=torch.float64)
    return out


def merge(unet: nn.Module) -> nn.Module:
    """Replace every LoRALinear with a plain Linear holding the merged weight (in place)."""
    for name, module in list(unet.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            plain = module.base
            plain.weight.data.copy_(module.merged_weight())
            for p in plain.parameters():
                p.requires_grad_(True)
            setattr(unet.get_submodule(parent_name) if parent_name else unet, child, plain)
    return unet


def apply_adapter(unet: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Merge a saved adapter state into a plain UNet (the base) in place; the inverse of saving."""
    names = sorted({k.rsplit(".", 1)[0] for k in state})
    for name in names:
        linear = unet.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"adapter names {name}, which is not a Linear layer of this UNet")
        down, up = state[f"{name}.down"], state[f"{name}.up"]
        scale = float(state[f"{name}.scale"])
        delta = up.double() @ down.double()
        merged = (linear.weight.detach().cpu().double() + scale * delta).float()
        linear.weight.data.copy_(merged.to(linear.weight.device))
    return unet

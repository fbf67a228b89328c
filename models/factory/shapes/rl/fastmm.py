"""Matrix products through numpy's BLAS while a CPU RL run samples and trains.

The factory's torch is Debian's build with the reference ("generic") BLAS: on the 2-core CPU
three quarters of a Shapes UNet call were its Linear and attention products. numpy ships
OpenBLAS, so inside `numpy_matmul()` every `F.linear` and every tensor `@` goes through
`np.matmul` (an autograd Function with its own backward); convolutions stay on oneDNN.
Measured on one thread: guided UNet evaluations 20 -> 75 per second, forward + backward
7.6 -> 28.6 pairs per second; ε agrees with torch's to 1.2e-5 (its RMS is 1.2), gradients to
8e-6 relative. The sampler and the trainer must use the same path (log π recomputed for the PPO
ratio is compared with the sampled one), so a run enables it for its whole process.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F


def _np_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = np.matmul(a.detach().contiguous().numpy(), b.detach().contiguous().numpy())
    return torch.from_numpy(np.ascontiguousarray(out))


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Undo matmul's batch broadcasting in a gradient."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad


class NumpyMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b)
        return _np_matmul(a, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = _sum_to(_np_matmul(grad, b.transpose(-1, -2)), a.shape)
        if ctx.needs_input_grad[1]:
            gb = _sum_to(_np_matmul(a.transpose(-1, -2), grad), b.shape)
        return ga, gb


def numpy_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear as one 2-D product (x flattened to rows) through numpy."""
    y = NumpyMatmul.apply(x.reshape(-1, x.shape[-1]), weight.t())
    y = y.reshape(*x.shape[:-1], weight.shape[0])
    return y + bias if bias is not None else y


def _tensor_matmul(a, b):
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.device.type == "cpu" \
            and a.dim() >= 2 and b.dim() >= 2 and a.dtype == b.dtype \
            and a.dtype in (torch.float32, torch.float64):
        return NumpyMatmul.apply(a, b)
    return _ORIGINAL_MATMUL(a, b)


_ORIGINAL_MATMUL = torch.Tensor.__matmul__


@contextlib.contextmanager
def numpy_matmul(enabled: bool = True):
    """Route F.linear and tensor `@` through numpy's BLAS inside the block (CPU only)."""
    if not enabled:
        yield
        return
    old_linear, old_matmul = F.linear, torch.Tensor.__matmul__
    F.linear = numpy_linear
    torch.Tensor.__matmul__ = _tensor_matmul
    try:
        yield
    finally:
        F.linear, torch.Tensor.__matmul__ = old_linear, old_matmul

"""The plain PyTorch kernels: the reference numerics every backend reproduces, and the path for CPU tensors.

Both the dispatch (vggt.runtime.kernels) and the backends that fall back to them (vggt.runtime.npu)
import this module, so it imports neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention with scale 1/sqrt(D): q [B, H, Nq, D], k and v [B, H, Nk, D] -> [B, H, Nq, D]."""
    return F.scaled_dot_product_attention(q, k, v)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the last dim (non-interleaved halves)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_mul(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x [B, H, N, D] and cos, sin [1, 1, N, D]."""
    return x * cos + rotate_half(x) * sin


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU."""
    return F.gelu(x)

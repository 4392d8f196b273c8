"""Compute kernels the model calls: attention, rotary embedding, exact GELU.

Every attention, RoPE and GELU in `vggt/` goes through these functions so that a device backend
can swap in a fused kernel in one place. The implementations here are plain PyTorch and define
the reference numerics every backend must reproduce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Softmax attention with scale 1/sqrt(D), no mask.

    q: [B, H, Nq, D], k and v: [B, H, Nk, D] -> [B, H, Nq, D].
    """
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the last dim (non-interleaved halves)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_mul(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin.

    x: [B, H, N, D]; cos, sin: broadcastable to x ([1, 1, N, D] or [B, 1, N, D]).
    """
    return x * cos + rotate_half(x) * sin


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU."""
    return F.gelu(x)

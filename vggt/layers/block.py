"""Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

from __future__ import annotations

import torch
from torch import nn

from vggt.layers.attention import Attention
from vggt.layers.layer_scale import LayerScale
from vggt.layers.mlp import Mlp
from vggt.layers.rope import RopeTables


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        bias: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=bias, proj_bias=bias, qk_norm=qk_norm, norm_eps=norm_eps)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=bias)
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, C] -> [B, N, C], written into `out` when given (no autograd; it may be x: x is read first)."""
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return torch.add(x, self.ls2(self.mlp(self.norm2(x))), out=out)

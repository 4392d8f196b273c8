"""Multi-head self-attention with optional QK LayerNorm and 2D RoPE (aggregator, camera trunk, DINOv2)."""

from __future__ import annotations

import torch
from torch import nn

from vggt.layers.linear import Linear
from vggt.layers.rope import RopeTables
from vggt.runtime import kernels


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """x: [B, N, C] -> [B, N, C]."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope.apply(q), rope.apply(k)
        return self.output(kernels.attention(q, k, v))

    # the same attention split into its token-wise parts (chunked inference, sequence parallelism)
    def _project(self, x: torch.Tensor, rows: slice) -> torch.Tensor:
        """x: [B, N, C] through the `rows` of the fused qkv projection -> [B, N, rows / C, H, D]."""
        bias = None if self.qkv.bias is None else self.qkv.bias[rows]
        out = kernels.linear(x, self.qkv.weight[rows], bias)
        return out.view(x.shape[0], x.shape[1], -1, self.num_heads, self.head_dim)

    def queries(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """Normalised input x: [B, N, C] -> rotated queries [B, H, N, D] (the first third of qkv)."""
        C = x.shape[-1]
        q = self.q_norm(self._project(x, slice(0, C))[:, :, 0].transpose(1, 2))
        return q if rope is None else rope.apply(q)

    def keys_values(self, x: torch.Tensor, rope: RopeTables | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised input x: [B, N, C] -> rotated keys and values, each [B, H, N, D]."""
        C = x.shape[-1]
        k, v = self._project(x, slice(C, 3 * C)).permute(2, 0, 3, 1, 4).unbind(0)
        k = self.k_norm(k)
        return (k if rope is None else rope.apply(k)), v

    def output(self, heads: torch.Tensor) -> torch.Tensor:
        """Attention result [B, H, N, D] -> output projection [B, N, C]."""
        B, _, N, _ = heads.shape
        return self.proj(heads.transpose(1, 2).reshape(B, N, -1))

"""The tracker's update transformer: time attention per track, space attention via virtual tracks.

Reference quirk kept for the weights: the attention blocks normalise x and then add the residual
to the normalised x (x = norm1(x); x = x + attn(x)), unlike a pre-norm block.
"""

from __future__ import annotations

import torch
from torch import nn

from vggt.layers import Mlp
from vggt.runtime import kernels


class MultiheadAttention(nn.Module):
    """Attention with `nn.MultiheadAttention`'s parameter names (packed in_proj), routed through the kernels."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: [B, Nq, D] attends to context: [B, Nk, D] -> [B, Nq, D]."""
        B, Nq, D = x.shape
        w_q, w_kv = self.in_proj_weight.split((D, 2 * D))
        b_q, b_kv = self.in_proj_bias.split((D, 2 * D))
        q = nn.functional.linear(x, w_q, b_q)
        k, v = nn.functional.linear(context, w_kv, b_kv).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, -1, self.num_heads, D // self.num_heads).transpose(1, 2)

        out = kernels.attention(heads(q), heads(k), heads(v))
        return self.out_proj(out.transpose(1, 2).reshape(B, Nq, D))


class AttnBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x)
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = MultiheadAttention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = x + self.cross_attn(x, self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class EfficientUpdateFormer(nn.Module):
    def __init__(
        self,
        depth: int = 6,
        input_dim: int = 388,
        hidden_size: int = 384,
        num_heads: int = 8,
        output_dim: int = 130,
        mlp_ratio: float = 4.0,
        num_virtual_tracks: int = 64,
    ):
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))  # sic: checkpoint key
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)

        def blocks(kind: type[nn.Module]) -> nn.ModuleList:
            return nn.ModuleList(kind(hidden_size, num_heads, mlp_ratio) for _ in range(depth))

        self.time_blocks = blocks(AttnBlock)
        self.space_virtual_blocks = blocks(AttnBlock)
        self.space_point2virtual_blocks = blocks(CrossAttnBlock)
        self.space_virtual2point_blocks = blocks(CrossAttnBlock)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, T, input_dim] (tracks x frames) -> [B, N, T, output_dim]."""
        init = self.input_transform(self.input_norm(x))
        B, N, T, D = init.shape
        tokens = torch.cat((init, self.virual_tracks.expand(B, -1, T, -1)), dim=1)
        M = tokens.shape[1]
        for time_block, v2p, virtual_block, p2v in zip(
            self.time_blocks,
            self.space_virtual2point_blocks,
            self.space_virtual_blocks,
            self.space_point2virtual_blocks,
        ):
            tokens = time_block(tokens.reshape(B * M, T, D)).view(B, M, T, D)
            space = tokens.transpose(1, 2).reshape(B * T, M, D)
            points, virtual = space[:, :N], space[:, N:]
            virtual = virtual_block(v2p(virtual, points))
            points = p2v(points, virtual)
            tokens = torch.cat((points, virtual), dim=1).view(B, T, M, D).transpose(1, 2)
        return self.flow_head(self.output_norm(tokens[:, :N] + init))

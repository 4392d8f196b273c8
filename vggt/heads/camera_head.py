"""Camera head: iterative refinement of the 9-D pose encoding from the camera tokens.

Each iteration embeds the current (detached, raw) encoding, modulates the normalised camera
tokens with it (adaLN shift / scale / gate), runs the trunk and adds a predicted delta.
"""

from __future__ import annotations

import torch
from torch import nn

from vggt.heads.activations import activate_pose
from vggt.layers import Block, Mlp


class CameraHead(nn.Module):
    def __init__(
        self,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
        num_iterations: int = 4,
        pose_dim: int = 9,
    ):
        super().__init__()
        self.num_iterations = num_iterations
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, pose_dim))
        self.trunk = nn.Sequential(*(Block(dim_in, num_heads, mlp_ratio, init_values) for _ in range(trunk_depth)))
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.embed_pose = nn.Linear(pose_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, pose_dim)

    def forward(
        self, aggregated_tokens_list: list[torch.Tensor], num_iterations: int | None = None
    ) -> list[torch.Tensor]:
        """Last aggregator layer [B, S, P, C] -> list of `num_iterations` activated encodings [B, S, 9]."""
        last = aggregated_tokens_list[-1][:, :, 0]
        weight = self.token_norm.weight  # kept tokens may be held in bf16 or in host memory
        pose_tokens = self.token_norm(last.to(weight.device).to(weight.dtype))
        B, S, _ = pose_tokens.shape
        normed = self.adaln_norm(pose_tokens)
        encoding = None
        predictions = []
        for _ in range(num_iterations or self.num_iterations):
            if encoding is None:
                condition = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                condition = self.embed_pose(encoding.detach())
            shift, scale, gate = self.poseLN_modulation(condition).chunk(3, dim=-1)
            h = gate * (normed * (1 + scale) + shift) + pose_tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(h)))
            encoding = delta if encoding is None else encoding + delta
            predictions.append(activate_pose(encoding))
        return predictions

"""DINOv2 ViT-L/14 with 4 register tokens, the patch embed of VGGT-1B.

Only the architecture: VGGT checkpoints carry its weights (no DINOv2 weights are loaded).
Token order inside the ViT is [cls, registers, patches]; the position embedding is added to
[cls, patches] before the registers are inserted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vggt.layers.block import Block
from vggt.layers.checkpoint import run_block
from vggt.layers.patch_embed import PatchEmbed


class DinoVisionTransformer(nn.Module):
    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
    ):
        super().__init__()
        grid = img_size // patch_size
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        # unused by VGGT (no masked-image modelling) but part of the checkpoint; frozen as upstream
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=1.0, qk_norm=False, norm_eps=1e-6) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.activation_checkpointing = False

    def position_embedding(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """[1, 1 + height * width, C] for a height x width patch grid.

        The 37x37 table is resized bicubically with antialiasing (in float32) for other grids and
        cast to `dtype`; the native grid gets the table as stored (as upstream, also under autocast).
        """
        num_table = self.pos_embed.shape[1] - 1
        if height == width and height * width == num_table:
            return self.pos_embed
        side = math.isqrt(num_table)
        table = self.pos_embed.float()
        patch_table = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_table = F.interpolate(patch_table, size=(height, width), mode="bicubic", antialias=True)
        patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, height * width, -1)
        return torch.cat((table[:, :1], patch_table), dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, 3, H, W] normalised -> final-norm patch tokens [B, (H/14) * (W/14), C]."""
        B, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.position_embedding(H // self.patch_size, W // self.patch_size, x.dtype)
        x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = run_block(block, x, checkpointed=self.activation_checkpointing and self.training)
        return self.norm(x)[:, 1 + self.num_register_tokens :]

"""Non-overlapping patch embedding: a stride-`patch_size` convolution, tokens row-major."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, (H/p) * (W/p), C]."""
        return self.proj(x).flatten(2).transpose(1, 2)

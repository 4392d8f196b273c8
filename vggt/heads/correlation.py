"""Correlation pyramid of the tracker.

Level l is the feature map average-pooled l times by 2. For each track and frame, the
correlation (track feature . map feature / sqrt(C)) is read in a (2r+1)^2 window around the
track's position at that level. Sampling the map first and correlating the window afterwards is
identical (both operations are linear) and needs O(window) instead of O(H * W) memory per track.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vggt.heads.sampling import sample_bilinear


class CorrelationPyramid:
    def __init__(self, fmaps: torch.Tensor, num_levels: int, radius: int):
        """fmaps: [B, S, C, H, W]."""
        B, S, C, H, W = fmaps.shape
        self.shape = (B, S, C)
        level = fmaps.reshape(B * S, C, H, W)
        self.levels = [level]
        for _ in range(num_levels - 1):
            level = F.avg_pool2d(level, 2, stride=2)
            self.levels.append(level)
        offsets = torch.arange(-radius, radius + 1, device=fmaps.device, dtype=torch.float32)
        # window ordering of the reference (and of corr_mlp's weights): x offset outer, y offset inner
        dx, dy = torch.meshgrid(offsets, offsets, indexing="ij")
        self.window = torch.stack((dx, dy), dim=-1).reshape(1, 1, -1, 2)  # [1, 1, K, 2]

    def sample(self, track_feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """track_feats: [B, S, N, C], coords: [B, S, N, 2] (level-0 pixels) -> [B, S, N, levels * K]."""
        B, S, C = self.shape
        N = coords.shape[2]
        feats = track_feats.reshape(B * S, N, C)
        centers = coords.reshape(B * S, N, 1, 2).to(torch.float32)
        out = []
        for i, fmap in enumerate(self.levels):
            window = sample_bilinear(fmap, centers / 2**i + self.window, padding_mode="zeros")  # [BS, C, N, K]
            out.append(torch.einsum("bcnk,bnc->bnk", window, feats.to(window.dtype)) / math.sqrt(C))
        return torch.cat(out, dim=-1).view(B, S, N, -1)

"""Track head: a DPT feature extractor (stride 2, no position embedding) + the iterative tracker."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vggt.heads.dpt_head import DPTHead
from vggt.heads.tracker import BaseTrackerPredictor


class TrackHead(nn.Module):
    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        features: int = 128,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        iters: int = 4,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        hidden_size: int = 384,
        num_heads: int = 8,
        depth: int = 6,
        num_virtual_tracks: int = 64,
        max_scale: float = 518.0,
    ):
        super().__init__()
        self.iters = iters
        self.feature_extractor = DPTHead(
            dim_in,
            patch_size=patch_size,
            features=features,
            out_channels=out_channels,
            intermediate_layer_idx=intermediate_layer_idx,
            feature_only=True,
            down_ratio=stride,
            pos_embed=False,
        )
        self.tracker = BaseTrackerPredictor(
            stride=stride,
            corr_levels=corr_levels,
            corr_radius=corr_radius,
            latent_dim=features,
            hidden_size=hidden_size,
            num_heads=num_heads,
            depth=depth,
            num_virtual_tracks=num_virtual_tracks,
            max_scale=max_scale,
        )

    def min_image_size(self) -> int:
        """Smallest image side the tracker's correlation pyramid supports."""
        return self.tracker.stride * self.tracker.min_feature_size()

    def forward(
        self,
        aggregated_tokens_list: list[torch.Tensor],
        images: torch.Tensor,
        patch_start_idx: int,
        query_points: torch.Tensor,
        iters: int | None = None,
        frames_chunk_size: int | None = 8,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """images [B, S, 3, H, W], query_points [B, N, 2] pixels of frame 0.

        Returns (per-iteration tracks [B, S, N, 2], visibility [B, S, N], confidence [B, S, N]).
        """
        fmaps = self.feature_extractor(aggregated_tokens_list, images, patch_start_idx, frames_chunk_size)
        return self.tracker(query_points, fmaps, iters or self.iters)

"""Track head: a DPT feature extractor (stride 2, no position embedding) + the iterative tracker."""

from __future__ import annotations

import torch
from torch import nn

from vggt.config import VGGTConfig
from vggt.heads.dpt_head import DPTHead
from vggt.heads.tracker import BaseTrackerPredictor


class TrackHead(nn.Module):
    def __init__(self, config: VGGTConfig):
        super().__init__()
        c = config
        self.iters = c.tracker_iterations
        self.feature_extractor = DPTHead(
            c.head_dim_in,
            patch_size=c.patch_size,
            features=c.track_features,
            out_channels=c.track_out_channels,
            intermediate_layer_idx=c.dpt_intermediate_layers,
            feature_only=True,
            down_ratio=c.tracker_stride,
            pos_embed=False,
        )
        self.tracker = BaseTrackerPredictor(
            stride=c.tracker_stride,
            corr_levels=c.tracker_corr_levels,
            corr_radius=c.tracker_corr_radius,
            latent_dim=c.track_features,
            hidden_size=c.tracker_hidden_size,
            num_heads=c.tracker_num_heads,
            depth=c.tracker_depth,
            num_virtual_tracks=c.tracker_num_virtual_tracks,
            max_scale=c.tracker_max_scale,
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

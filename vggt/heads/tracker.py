"""Iterative point tracker (CoTracker / VGGSfM style) on the track head's feature maps.

Query points live in frame 0. Every iteration reads the correlation of each track's feature
around its current position, embeds the flow from frame 0, and lets the update transformer
predict position and feature deltas. Frame 0 is pinned to the query.
"""

from __future__ import annotations

import torch
from torch import nn

from vggt.heads.correlation import CorrelationPyramid
from vggt.heads.sampling import sample_points
from vggt.heads.sincos import flow_embedding, grid_sincos_embed
from vggt.heads.tracker_transformer import EfficientUpdateFormer
from vggt.layers import GELU, Mlp

SPATIAL_EMBED_BASE = 10000.0


class BaseTrackerPredictor(nn.Module):
    def __init__(
        self,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        latent_dim: int = 128,
        hidden_size: int = 384,
        num_heads: int = 8,
        depth: int = 6,
        num_virtual_tracks: int = 64,
        max_scale: float = 518.0,
    ):
        super().__init__()
        self.stride = stride
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.latent_dim = latent_dim
        self.max_scale = max_scale
        self.flows_emb_dim = latent_dim // 2
        self.transformer_dim = 3 * latent_dim + 4  # flow embedding (2 * latent/2 + 4) + correlation + feature

        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.transformer_dim))
        self.corr_mlp = Mlp(corr_levels * (2 * corr_radius + 1) ** 2, hidden_size, latent_dim)
        self.updateformer = EfficientUpdateFormer(
            depth=depth,
            input_dim=self.transformer_dim,
            hidden_size=hidden_size,
            num_heads=num_heads,
            output_dim=latent_dim + 2,
            num_virtual_tracks=num_virtual_tracks,
        )
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def min_feature_size(self) -> int:
        """Smallest feature-map side the correlation pyramid can pool `corr_levels - 1` times."""
        return 2 ** (self.corr_levels - 1)

    def forward(
        self, query_points: torch.Tensor, fmaps: torch.Tensor, iters: int = 4
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """query_points: [B, N, 2] input pixels, fmaps: [B, S, C, H', W'].

        Returns (per-iteration tracks [B, S, N, 2] in input pixels, visibility [B, S, N], confidence [B, S, N]).
        """
        B, S, C, Hf, Wf = fmaps.shape
        N = query_points.shape[1]
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        queries = query_points.to(torch.float32) / self.stride
        coords = queries[:, None].expand(B, S, N, 2)
        track_feats = sample_points(fmaps[:, 0], queries)[:, None].expand(B, S, N, C)
        pyramid = CorrelationPyramid(fmaps, self.corr_levels, self.corr_radius)

        # constant over iterations: spatial embedding at the query and the frame-0 / other-frame token
        grid = torch.stack(
            torch.meshgrid(
                torch.arange(Wf, device=fmaps.device, dtype=torch.float32),
                torch.arange(Hf, device=fmaps.device, dtype=torch.float32),
                indexing="xy",
            ),
            dim=-1,
        )  # [Hf, Wf, (x, y)]
        spatial = grid_sincos_embed(grid, self.transformer_dim, SPATIAL_EMBED_BASE).permute(2, 0, 1)[None]
        query_embed = sample_points(spatial.expand(B, -1, -1, -1), queries)  # [B, N, E]
        ref = torch.cat((self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(1, S - 1, -1)), dim=1)
        constant = query_embed[:, :, None] + ref[:, None]  # [B, N, S, E]

        predictions = []
        for _ in range(iters):
            coords = coords.detach()
            corr = self.corr_mlp(pyramid.sample(track_feats, coords))
            flows = coords - coords[:, :1]
            flow_feats = torch.cat(
                (flow_embedding(flows, self.flows_emb_dim), flows / self.max_scale, flows / self.max_scale), dim=-1
            )
            x = torch.cat((flow_feats, corr, track_feats), dim=-1).transpose(1, 2) + constant  # [B, N, S, E]
            delta = self.updateformer(x).transpose(1, 2)  # [B, S, N, 2 + C]
            delta_feats = self.ffeat_norm(delta[..., 2:].reshape(-1, C)).view(B, S, N, C)
            track_feats = track_feats + self.ffeat_updater(delta_feats)
            coords = coords + delta[..., :2]
            coords = torch.cat((queries[:, None], coords[:, 1:]), dim=1)
            predictions.append(coords * self.stride)

        vis = torch.sigmoid(self.vis_predictor(track_feats).squeeze(-1))
        conf = torch.sigmoid(self.conf_predictor(track_feats).squeeze(-1))
        return predictions, vis, conf

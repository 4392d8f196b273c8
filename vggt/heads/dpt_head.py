"""DPT dense head: four aggregator layers -> multi-scale features -> fused full-resolution map.

Used for depth (exp values), world points (inv_log values) and, with `feature_only`, as the
track head's feature extractor. Frames are processed in chunks to bound memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vggt.heads.activations import activate_head
from vggt.heads.sincos import grid_sincos_embed, uv_grid
from vggt.layers.token_chunks import check_frames_chunk_size
from vggt.runtime.host_copy import HostCopier

POS_EMBED_RATIO = 0.1
POS_EMBED_BASE = 100.0


def upsample(x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
    """Bilinear resize (align_corners=True) to `size`, or x2 when no size is given."""
    if size is None:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def add_position_embedding(x: torch.Tensor, image_width: int, image_height: int) -> torch.Tensor:
    """x: [N, C, h, w] + 0.1 * sincos embedding of its diagonal-normalised pixel grid."""
    _, C, h, w = x.shape
    grid = uv_grid(w, h, image_width / image_height, x.device)
    embed = grid_sincos_embed(grid, C, POS_EMBED_BASE).permute(2, 0, 1)[None]
    return x + (POS_EMBED_RATIO * embed).to(x.dtype)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, F, h, w], consumed: the ReLUs run in place (each input is a fresh map no caller reads again), which
        on a CPU saves writing a new map to memory not yet touched (the heads' ReLUs: 0.05 -> 0.007 s a DPT head)."""
        # reference quirk: its in-place ReLU makes the skip add relu(x), not x; the weights expect it
        x = F.relu_(x)
        return self.conv2(F.relu_(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: Sequence[int] | None = None
    ) -> torch.Tensor:
        if self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(skip)
        return self.out_conv(upsample(self.resConfUnit2(x), size))


class DPTHead(nn.Module):
    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.intermediate_layer_idx = tuple(intermediate_layer_idx)
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.outputs_on_host = False  # each chunk's outputs go to host memory as it finishes (VGGT.set_host_offload)

        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, kernel_size=1) for oc in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, oc in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            hidden = 32
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, output_dim, 1)
            )

    def forward(
        self,
        aggregated_tokens_list: list[torch.Tensor],
        images: torch.Tensor,
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Aggregated tokens ([B, S, P, C] per layer), images [B, S, 3, H, W].

        Returns features [B, S, F, H/r, W/r] when `feature_only`, else
        (values [B, S, H, W, output_dim - 1], confidence [B, S, H, W]).
        """
        check_frames_chunk_size(frames_chunk_size)
        S = images.shape[1]
        step = S if not frames_chunk_size or frames_chunk_size >= S else frames_chunk_size
        device = self.norm.weight.device
        offloaded = self.outputs_on_host or any(t.device != device for t in aggregated_tokens_list if t is not None)
        copier = HostCopier(device) if offloaded else None
        chunks = [
            self._placed(
                self._forward_frames(aggregated_tokens_list, images, patch_start_idx, s, min(s + step, S), copier),
                copier,
            )
            for s in range(0, S, step)
        ]
        if copier is not None:
            copier.flush()
        if len(chunks) == 1:
            return chunks[0]
        if self.feature_only:
            return torch.cat(chunks, dim=1)
        return torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=1)

    def _placed(self, chunk, copier: HostCopier | None):
        """One chunk's outputs, on their way to host memory when `outputs_on_host` (complete at `copier.flush()`)."""
        if not self.outputs_on_host or not copier.staging:  # on a CPU the outputs are in host memory already
            return chunk
        values = (chunk,) if self.feature_only else chunk
        on_host = tuple(torch.empty(value.shape, dtype=value.dtype) for value in values)
        for value, host in zip(values, on_host):
            copier.to_host(value, host)
        return on_host[0] if self.feature_only else on_host

    def _forward_frames(self, tokens_list, images, patch_start_idx, start, end, copier: HostCopier | None):
        B, _, _, H, W = images.shape
        S = end - start
        h, w = H // self.patch_size, W // self.patch_size
        features = []
        for project, resize, layer in zip(self.projects, self.resize_layers, self.intermediate_layer_idx):
            x = tokens_list[layer][:, start:end, patch_start_idx:]
            # kept tokens may be held in bf16 or in host memory: this chunk crosses as kept, then takes the head's dtype
            if x.device != self.norm.weight.device:
                x = copier.to_device(x)
            x = x.to(self.norm.weight.dtype)
            x = self.norm(x.reshape(B * S, h * w, -1))
            x = project(x.permute(0, 2, 1).reshape(B * S, -1, h, w))
            if self.pos_embed:
                x = add_position_embedding(x, W, H)
            features.append(resize(x))

        out = self._fuse(features)
        out = upsample(out, (h * self.patch_size // self.down_ratio, w * self.patch_size // self.down_ratio))
        if self.pos_embed:
            out = add_position_embedding(out, W, H)
        if self.feature_only:
            return out.view(B, S, *out.shape[1:])
        values, conf = activate_head(self.scratch.output_conv2(out), self.activation, self.conf_activation)
        return values.view(B, S, *values.shape[1:]), conf.view(B, S, *conf.shape[1:])

    def _fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Coarse-to-fine fusion of the four resized feature maps -> [N, F', 8h, 8w]."""
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(f) for i, f in enumerate(features, start=1))
        out = s.refinenet4(l4, size=l3.shape[2:])
        out = s.refinenet3(out, l3, size=l2.shape[2:])
        out = s.refinenet2(out, l2, size=l1.shape[2:])
        out = s.refinenet1(out, l1)
        return s.output_conv1(out)

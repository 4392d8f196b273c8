"""Bilinear sampling of feature maps at pixel coordinates (align_corners convention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_to_grid(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel (x, y) -> grid_sample's [-1, 1] with align_corners=True (pixel 0 -> -1, last -> +1)."""
    sx = 2.0 / max(width - 1, 1)
    sy = 2.0 / max(height - 1, 1)
    return torch.stack((coords[..., 0] * sx - 1, coords[..., 1] * sy - 1), dim=-1)


def sample_bilinear(fmap: torch.Tensor, coords: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """fmap: [B, C, H, W], coords: [B, N, K, 2] pixels -> [B, C, N, K]."""
    grid = pixel_to_grid(coords, fmap.shape[-2], fmap.shape[-1]).to(fmap.dtype)
    return F.grid_sample(fmap, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def sample_points(fmap: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """fmap: [B, C, H, W], points: [B, N, 2] pixels -> features [B, N, C] (border padding)."""
    return sample_bilinear(fmap, points[:, :, None]).squeeze(-1).transpose(1, 2)

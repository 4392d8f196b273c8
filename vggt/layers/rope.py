"""2D rotary position embedding of the aggregator (base frequency 100).

Each attention head of width D is split in two: the first D/2 channels rotate with the token's
row (y), the last D/2 with its column (x). Within a half the rotation is the non-interleaved
`rotate_half` form, with frequencies 1 / base^(2j / (D/2)) repeated for both quarters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vggt.runtime import kernels


@dataclass
class RopeTables:
    """cos/sin of the y and x angles for a token sequence, each [1, 1, N, D/2] float32."""

    cos_y: torch.Tensor
    sin_y: torch.Tensor
    cos_x: torch.Tensor
    sin_x: torch.Tensor

    def repeat(self, times: int) -> RopeTables:
        """Tables for `times` sequences concatenated along N (global attention over frames)."""
        return RopeTables(*(t.repeat(1, 1, times, 1) for t in (self.cos_y, self.sin_y, self.cos_x, self.sin_x)))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x: [B, H, N, D] -> [B, H, N, D]."""
        y_half, x_half = x.chunk(2, dim=-1)
        dtype = x.dtype
        y_half = kernels.rotary_mul(y_half, self.cos_y.to(dtype), self.sin_y.to(dtype))
        x_half = kernels.rotary_mul(x_half, self.cos_x.to(dtype), self.sin_x.to(dtype))
        return torch.cat((y_half, x_half), dim=-1)


def grid_positions(height: int, width: int, num_special: int, device: torch.device) -> torch.Tensor:
    """Integer (y, x) of every token of a frame: [num_special + height * width, 2].

    Patch positions are row-major and shifted by +1 so that the special (camera and register)
    tokens, placed first, own position (0, 0).
    """
    ys = torch.arange(height, device=device).repeat_interleave(width)
    xs = torch.arange(width, device=device).repeat(height)
    patches = torch.stack((ys, xs), dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=patches.dtype, device=device)
    return torch.cat((special, patches), dim=0)


class RotaryPositionEmbedding2D:
    """Builds `RopeTables` for integer 2D positions. Has no parameters."""

    def __init__(self, frequency: float = 100.0):
        self.frequency = float(frequency)

    def tables(self, positions: torch.Tensor, head_dim: int) -> RopeTables:
        """positions: [N, 2] integer (y, x) -> tables for a head of width `head_dim`."""
        half = head_dim // 2
        exponents = torch.arange(0, half, 2, device=positions.device, dtype=torch.float32) / half
        inv_freq = 1.0 / (self.frequency**exponents)
        angles = positions.to(torch.float32)[..., None] * inv_freq  # [N, 2, half / 2]
        angles = torch.cat((angles, angles), dim=-1)[None, None]  # [1, 1, N, 2, half]
        cos, sin = angles.cos(), angles.sin()
        y, x = 0, 1
        return RopeTables(*(t[..., axis, :].contiguous() for axis in (y, x) for t in (cos, sin)))

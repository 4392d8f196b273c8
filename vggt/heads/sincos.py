"""Sinusoidal embeddings used by the DPT heads and the tracker."""

from __future__ import annotations

import torch


def sincos_1d(pos: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """pos: [M] -> [M, dim] = [sin(pos * w), cos(pos * w)], w_k = base^(-k / (dim/2)), k < dim/2.

    Computed in float32: NPUs have no fast double precision.
    """
    omega = torch.arange(dim // 2, device=pos.device, dtype=torch.float32) / (dim / 2.0)
    omega = 1.0 / base**omega
    angles = pos.reshape(-1).to(torch.float32)[:, None] * omega[None]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def grid_sincos_embed(xy: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """xy: [..., 2] -> [..., dim]: the first dim/2 channels embed x, the last dim/2 embed y."""
    flat = xy.reshape(-1, 2)
    emb = torch.cat((sincos_1d(flat[:, 0], dim // 2, base), sincos_1d(flat[:, 1], dim // 2, base)), dim=-1)
    return emb.view(*xy.shape[:-1], dim)


def uv_grid(width: int, height: int, aspect_ratio: float, device: torch.device) -> torch.Tensor:
    """Normalised (x, y) of every pixel of a height x width map: [height, width, 2].

    Both axes span the image diagonal as 1: x in +-(ar / diag) * (w-1)/w, y in +-(1 / diag) * (h-1)/h
    with diag = sqrt(ar^2 + 1) and ar = image width / image height.
    """
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    x_end = span_x * (width - 1) / width
    y_end = span_y * (height - 1) / height
    xs = torch.linspace(-x_end, x_end, width, device=device, dtype=torch.float32)
    ys = torch.linspace(-y_end, y_end, height, device=device, dtype=torch.float32)
    return torch.stack((xs[None, :].expand(height, width), ys[:, None].expand(height, width)), dim=-1)


def flow_embedding(flows: torch.Tensor, dim: int) -> torch.Tensor:
    """flows: [..., 2] -> [..., 2 * dim]: per axis, sin/cos interleaved (even = sin, odd = cos).

    Frequencies are k * 1000 / dim for k = 0, 2, 4, ... (linear, as in the tracker weights).
    """
    freqs = torch.arange(0, dim, 2, device=flows.device, dtype=torch.float32) * (1000.0 / dim)
    parts = []
    for axis in range(2):
        angles = flows[..., axis : axis + 1].to(torch.float32) * freqs
        parts.append(torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1)

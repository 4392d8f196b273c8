"""Two-layer perceptron with exact GELU (timm / DINOv2 key names `fc1`, `fc2`)."""

from __future__ import annotations

import torch
from torch import nn

from vggt.layers.linear import Linear
from vggt.runtime import kernels


class GELU(nn.Module):
    """Exact GELU through the runtime kernels (drop-in for `nn.GELU()` in Sequentials)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.gelu(x)


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None, bias: bool = True):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features, bias=bias)
        self.fc2 = Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(kernels.linear_gelu(x, self.fc1))

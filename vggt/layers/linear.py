"""nn.Linear through the runtime kernels: the same module (parameters, state-dict keys, hooks), whose float32
inference on a CPU may run in oneDNN (vggt.runtime.kernels.linear)."""

from __future__ import annotations

import torch
from torch import nn

from vggt.runtime import kernels


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_features] -> [..., out_features]."""
        return kernels.linear(x, self.weight, self.bias)

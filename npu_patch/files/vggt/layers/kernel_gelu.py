"""Exact GELU through vggt.runtime.kernels, as a module that stands in for nn.GELU (added by VGGT_npu.patch).

On an NPU the native GELU computes the tanh approximation whatever `approximate` says; kernels.gelu
calls torch_npu's exact npu_gelu there and plain torch elsewhere.
"""

import torch
from torch import nn

from vggt.runtime import kernels


class KernelGELU(nn.GELU):
    """nn.GELU whose exact form runs through vggt.runtime.kernels.gelu (no parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.gelu(x) if self.approximate == "none" else super().forward(x)

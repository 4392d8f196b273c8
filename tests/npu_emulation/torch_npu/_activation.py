"""Emulation of `torch_npu.npu_gelu`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def npu_gelu(input: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU of `input` (any shape, fp16/bf16/fp32): 'none' is the erf form, 'tanh' the tanh approximation.

    Unlike native `F.gelu` on an NPU (which runs tanh whatever `approximate` says), this op honours `approximate`.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"npu_gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if input.dtype not in _DTYPES:
        raise TypeError(f"npu_gelu: input must be fp16, bf16 or fp32, got {input.dtype}")
    return F.gelu(input, approximate=approximate)

"""Weight layouts that CPU GEMM libraries read faster, for inference on a CPU."""

from __future__ import annotations

import torch
from torch import nn


def lay_out_linears_for_few_rows(module: nn.Module) -> int:
    """Store every float32 nn.Linear weight [out, in] of `module` as the transpose of an [in, out] row-major tensor:
    the same values and shape, read faster by MKL's sgemm when the input has a few rows (the GEMM then streams the
    weight; measured on a Xeon with AMX, 2 threads: 8 x 2048 -> 8192 in 2.7 instead of 3.7 ms). Not for bf16
    weights, which that layout slows down. Already laid out weights are left alone. Returns how many it laid out."""
    laid_out = 0
    for layer in module.modules():
        weight = layer.weight if isinstance(layer, nn.Linear) else None
        if weight is None or weight.dtype != torch.float32 or weight.device.type != "cpu" or weight.t().is_contiguous():
            continue
        with torch.no_grad():
            layer.weight = nn.Parameter(weight.t().contiguous().t(), requires_grad=weight.requires_grad)
        laid_out += 1
    return laid_out

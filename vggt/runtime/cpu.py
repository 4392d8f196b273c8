"""CPU inference kernels and weight layouts: what the CPU's GEMM libraries (MKL, oneDNN) run faster.

Inference only (autograd off); training and every other device keep the plain PyTorch ops.
"""

from __future__ import annotations

import torch
from torch import nn

from vggt.runtime.precision import cpu_bf16_instructions


def _onednn_linear_pointwise():
    """oneDNN's linear with a fused elementwise epilogue (the op torch.compile lowers linear + GELU to on a CPU), or
    None where this torch has no such op."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):  # older torch: no such op
        return None


def _onednn_bf16() -> bool:
    """Whether oneDNN computes bf16 on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


LINEAR_POINTWISE = _onednn_linear_pointwise()
FUSED_MIN_ROWS = 256  # fewer rows stream the weight and the fused epilogue saves nothing (camera head: 8 rows)
ONEDNN_BF16 = LINEAR_POINTWISE is not None and _onednn_bf16()


def _autocast_dtype() -> torch.dtype | None:
    """The CPU autocast dtype when CPU autocast is on, else None (torch 2.1 to 2.14 spell it differently)."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


def fuses_linear_gelu(x: torch.Tensor, linear: nn.Linear) -> bool:
    """Whether linear_gelu computes gelu(linear(x)) for these: a CPU input of at least FUSED_MIN_ROWS rows without
    autograd, bf16 weights (held in bf16 for inference, VGGT.hold_in_compute_dtype), and x in bf16 or under a bf16
    CPU autocast. Not float32: there it measured no faster in VGGT-1B's aggregator."""
    return (
        ONEDNN_BF16
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.numel() >= FUSED_MIN_ROWS * x.shape[-1]
        and linear.weight.dtype == torch.bfloat16
        and torch.bfloat16 in (x.dtype, _autocast_dtype())
    )


def linear_gelu(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Exact (erf) GELU of linear(x) in one oneDNN call, x: [..., in] -> [..., out] bf16, where fuses_linear_gelu
    holds: no [..., out] intermediate is written and read back (VGGT-1B's bf16 aggregator at 8 x 224 px: 4 % faster,
    Xeon with AMX, 2 threads). The GELU reads the GEMM's float32 accumulator, not its bf16 rounding: the result is
    at most a bf16 ulp from the plain ops'."""
    bias = None if linear.bias is None else linear.bias.to(torch.bfloat16)
    return LINEAR_POINTWISE(x.to(torch.bfloat16), linear.weight, bias, "gelu", [], "none")


AMX_BF16 = cpu_bf16_instructions() == "AMX-BF16"  # lay_out_linears_for_few_rows measured faster with AMX only


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

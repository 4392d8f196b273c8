"""CPU inference kernels and weight layouts: what the CPU's GEMM libraries (MKL, oneDNN) run faster.

Inference only (autograd off); training and every other device keep the plain PyTorch ops.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import torch
from torch import nn

from vggt.runtime import procfs
from vggt.runtime.precision import cpu_autocast_dtype, cpu_bf16_instructions


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
ONEDNN_MIN_ROWS = 256  # fewer rows stream the weight: oneDNN and its fused epilogue save nothing (camera head: 8)
ONEDNN_BF16 = LINEAR_POINTWISE is not None and _onednn_bf16()
FLOAT32_GEMM_ENV = "VGGT_CPU_FLOAT32_GEMM"  # onednn / mkl overrides float32_gemm_library's choice
FLOAT32_GEMM_LIBRARIES = ("onednn", "mkl")


def float32_gemm_library() -> str:
    """Which library computes float32 linears in inference on this CPU: "onednn" on AMD CPUs, where MKL's sgemm
    (torch's default) measured slower than oneDNN's (AMD EPYC Zen 2, 2 threads, VGGT-1B's aggregator at 8 x 224 px:
    55.9 instead of 58.6 s; its GEMM shapes 4-10 % faster), "mkl" elsewhere and where this torch lacks oneDNN's
    linear. FLOAT32_GEMM_ENV overrides the choice."""
    forced = os.environ.get(FLOAT32_GEMM_ENV)
    if forced is not None:
        if forced not in FLOAT32_GEMM_LIBRARIES:
            raise ValueError(f"{FLOAT32_GEMM_ENV}={forced!r}: use one of {', '.join(FLOAT32_GEMM_LIBRARIES)}")
        return forced
    return "onednn" if LINEAR_POINTWISE is not None and procfs.cpuinfo_field("vendor_id") == "AuthenticAMD" else "mkl"


ONEDNN_FLOAT32 = float32_gemm_library() == "onednn"


def _is_compiling_function() -> Callable[[], bool]:
    """torch.compiler.is_compiling (torch >= 2.3), else torch._dynamo's (imported only then: 1.6 s of import)."""
    compiler = getattr(torch, "compiler", None)
    if hasattr(compiler, "is_compiling"):
        return compiler.is_compiling
    return importlib.import_module("torch._dynamo").is_compiling


_compiling = _is_compiling_function()  # True while torch.compile traces a call


def _onednn_sized_inference(x: torch.Tensor) -> bool:
    """x: [..., in] is a CPU input of at least ONEDNN_MIN_ROWS rows, without autograd (oneDNN's ops have none),
    in eager mode: inductor cannot lower these ops on unpacked weights, and picks its own GEMMs for F.linear."""
    return (
        not torch.is_grad_enabled()
        and not _compiling()
        and x.device.type == "cpu"
        and x.numel() >= ONEDNN_MIN_ROWS * x.shape[-1]
    )


def fuses_linear_gelu(x: torch.Tensor, linear: nn.Linear) -> bool:
    """Whether linear_gelu computes gelu(linear(x)) for these: a CPU input of at least ONEDNN_MIN_ROWS rows without
    autograd, bf16 weights (held in bf16 for inference, VGGT.hold_in_compute_dtype), and x in bf16 or under a bf16
    CPU autocast. Not float32: there it measured no faster in VGGT-1B's aggregator."""
    return (
        ONEDNN_BF16
        and _onednn_sized_inference(x)
        and linear.weight.dtype == torch.bfloat16
        and torch.bfloat16 in (x.dtype, cpu_autocast_dtype())
    )


def onednn_computes_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` computes F.linear(x, weight, ...) in oneDNN: float32 inference on a CPU whose float32 GEMMs
    go to oneDNN (float32_gemm_library), outside autocast (whose casts F.linear applies), at least ONEDNN_MIN_ROWS
    rows and a row-major weight."""
    return (
        ONEDNN_FLOAT32
        and _onednn_sized_inference(x)
        and x.dtype == weight.dtype == torch.float32
        and cpu_autocast_dtype() is None
        and weight.is_contiguous()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear in one oneDNN call, where onednn_computes_linear holds: x [..., in] -> [..., out]."""
    return LINEAR_POINTWISE(x, weight, bias, "none", [], "")


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

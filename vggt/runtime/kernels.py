"""Compute kernels the model calls: attention, rotary embedding, exact GELU (alone or after a linear), the
transformer blocks' linears.

Every attention, RoPE and GELU in `vggt/` goes through these functions. The backend is chosen per
call from the tensor's device (npu -> fused torch_npu ops, cuda -> SDPA restricted to the flash /
memory-efficient kernels, anything else -> plain PyTorch; in eager bf16 inference on a CPU linear + GELU in one
oneDNN call, in eager float32 inference on an AMD CPU the linears in oneDNN) and can be forced with the environment
variable VGGT_KERNELS=torch|cuda|npu (the tests run the NPU path on CPU tensors that way). The
plain PyTorch functions of vggt.runtime.reference define the numerics every backend reproduces.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from vggt.runtime import cpu, cuda, npu, reference

KERNELS_ENV = "VGGT_KERNELS"
BACKENDS = ("torch", "cuda", "npu")


def backend_for(x: torch.Tensor) -> str:
    """The kernel backend for tensors on x's device, unless VGGT_KERNELS forces one."""
    forced = os.environ.get(KERNELS_ENV)
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{KERNELS_ENV}={forced!r} is not one of {', '.join(BACKENDS)}")
        return forced
    return x.device.type if x.device.type in ("cuda", "npu") else "torch"


def split_attention_tokens(device: torch.device) -> int | None:
    """The longest sequence one attention call on `device` takes before it runs split (split_attention of the NPU
    backend, vggt/runtime/npu.py); None where attention never splits."""
    forced = os.environ.get(KERNELS_ENV)
    backend = forced if forced else device.type
    return npu.attention_max_seq() if backend == "npu" else None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention with scale 1/sqrt(D), no mask, no dropout.

    q: [B, H, Nq, D], k and v: [B, H, Nk, D] -> [B, H, Nq, D].
    """
    backend = backend_for(q)
    if backend == "npu":
        return npu.attention(q, k, v)
    if backend == "cuda":
        return cuda.attention(q, k, v)
    return reference.attention(q, k, v)


def rotary_mul(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin.

    x: [B, H, N, D]; cos, sin: [1, 1, N, D] in x's dtype.
    """
    if backend_for(x) == "npu":
        return npu.rotary_mul(x, cos, sin)
    return reference.rotary_mul(x, cos, sin)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU."""
    if backend_for(x) == "npu":
        return npu.gelu(x)
    return reference.gelu(x)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear: x [..., in], weight [out, in] -> [..., out]; in oneDNN for float32 inference on a CPU where its GEMMs
    are the faster (cpu.float32_gemm_library), unless VGGT_KERNELS forces a backend."""
    if not os.environ.get(KERNELS_ENV) and cpu.onednn_computes_linear(x, weight):
        return cpu.linear(x, weight, bias)
    return F.linear(x, weight, bias)


def linear_gelu(x: torch.Tensor, linear_layer: nn.Linear) -> torch.Tensor:
    """Exact GELU of linear_layer(x): x [..., in] -> [..., out]; one fused oneDNN call for bf16 inference on a CPU
    (unless VGGT_KERNELS forces a backend: VGGT_KERNELS=torch runs the two plain ops)."""
    if not os.environ.get(KERNELS_ENV) and cpu.fuses_linear_gelu(x, linear_layer):
        return cpu.linear_gelu(x, linear_layer)
    return gelu(linear_layer(x))

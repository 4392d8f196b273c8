"""Ascend NPU kernels: torch_npu's fused attention, rotary multiply and exact GELU.

torch_npu is imported on first use, so this module is importable everywhere. Facts behind the
choices: npu_fusion_attention's default scale is 1.0 (pass 1/sqrt(D)); native GELU on NPU
ignores `approximate` and computes tanh-GELU, so the exact one is npu_gelu(approximate="none");
npu_rotary_mul('half') is exactly rotate_half RoPE but wants B and N below 1000.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import torch

from vggt.runtime import reference

ROTARY_MAX_BATCH_OR_HEADS = 1000


def torch_npu() -> ModuleType:
    """The torch_npu module (importing it registers the "npu" device with torch).

    Not cached here: sys.modules already is the cache, and tests swap in an emulation per test.
    """
    return importlib.import_module("torch_npu")


def installed() -> bool:
    """Whether torch_npu imports here (it needs the CANN toolkit's libraries)."""
    try:
        torch_npu()
    except ImportError:
        return False
    return True


def configure(deterministic: bool, allow_hf32: bool) -> None:
    """NPU process settings, torch's deterministic flag included; see vggt.runtime.device.configure_process."""
    npu = torch_npu().npu
    npu.set_compile_mode(jit_compile=False)
    npu.config.allow_internal_format = False
    npu.matmul.allow_hf32 = allow_hf32
    npu.conv.allow_hf32 = allow_hf32
    if deterministic and hasattr(npu, "set_deterministic_level"):  # torch_npu >= 2.12; 2.1 has only torch's flag
        # torch's flag first: set_deterministic_level then agrees with it, and torch_npu forbids touching it later
        torch.use_deterministic_algorithms(True)
        npu.set_deterministic_level(1)
    else:
        torch.use_deterministic_algorithms(deterministic)


def common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The narrowest floating dtype among the inputs: what autocast would run the op in.

    Under autocast q and k leave their LayerNorm in float32 while v leaves a bf16 matmul; the fused
    op needs one dtype.
    """
    return min((t.dtype for t in tensors), key=lambda d: torch.finfo(d).bits)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, H, N, D] q, k, v -> [B, H, Nq, D] through npu_fusion_attention (BNSD layout)."""
    dtype = common_dtype(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch_npu().npu_fusion_attention(
        q.to(dtype), k.to(dtype), v.to(dtype), q.shape[1], "BNSD", scale=scale, keep_prob=1.0
    )
    return out[0]


def rotary_mul(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x [B, H, N, D] and cos/sin [1, 1, N, D]."""
    if x.shape[0] >= ROTARY_MAX_BATCH_OR_HEADS or x.shape[1] >= ROTARY_MAX_BATCH_OR_HEADS:
        return reference.rotary_mul(x, cos, sin)  # outside the fused op's documented range
    return torch_npu().npu_rotary_mul(x.contiguous(), cos.contiguous(), sin.contiguous(), "half")


def gelu(x: torch.Tensor) -> torch.Tensor:
    return torch_npu().npu_gelu(x, approximate="none")

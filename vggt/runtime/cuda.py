"""CUDA kernels: scaled_dot_product_attention restricted to the flash and memory-efficient kernels.

The math kernel stays as the last resort for shapes the fused kernels reject; cuDNN attention is
left out (it was the first choice on H100 in torch 2.5 and had correctness issues there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _fused_sdpa_context() -> Callable[[], contextlib.AbstractContextManager]:
    try:  # torch >= 2.3
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
        return lambda: sdpa_kernel(backends)
    except ImportError:  # torch 2.1 / 2.2
        return lambda: torch.backends.cuda.sdp_kernel(enable_flash=True, enable_mem_efficient=True, enable_math=True)


fused_sdpa = _fused_sdpa_context()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, H, N, D] q, k, v -> [B, H, Nq, D]."""
    with fused_sdpa():
        return F.scaled_dot_product_attention(q, k, v)

"""AdamW built for the device: NpuFusedAdamW, fused CUDA AdamW or multi-tensor (foreach) AdamW."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from vggt.runtime import npu

FUSED_ADAMW_DTYPES = (torch.float32, torch.float16)  # NpuFusedAdamW rejects bf16 parameters


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    """The parameters of a list of tensors or of param-group dicts."""
    return [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]


def adamw(
    params: Iterable[Any],
    device: torch.device,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    zero_grad_set_to_none: bool = True,
) -> torch.optim.Optimizer:
    """AdamW over `params` (tensors or param groups) with the fastest implementation `device` allows.

    NPU: torch_npu's NpuFusedAdamW (one flat buffer per dtype) when its constraints hold (no bf16
    parameters, gradients zeroed in place rather than set to None), else foreach AdamW. CUDA: fused
    AdamW. CPU: torch's default AdamW. All of them compute the same update.
    """
    params = list(params)
    kwargs = {"lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps}
    if device.type == "npu":
        fits_fused = all(p.dtype in FUSED_ADAMW_DTYPES for p in _tensors(params))
        if fits_fused and not zero_grad_set_to_none:
            return npu.torch_npu().optim.NpuFusedAdamW(params, **kwargs)
        return torch.optim.AdamW(params, foreach=True, **kwargs)
    if device.type == "cuda":
        return torch.optim.AdamW(params, fused=True, **kwargs)
    return torch.optim.AdamW(params, **kwargs)

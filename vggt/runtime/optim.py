"""AdamW built for the device: NpuFusedAdamW, fused CUDA / CPU AdamW or multi-tensor (foreach) AdamW.

$VGGT_OPTIMIZER overrides the choice: "npu_fused" (torch_npu's NpuFusedAdamW, also on CPU tensors through
the test emulation), "foreach", "fused" (torch's fused kernel) or "torch" (torch's default AdamW).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import Any

import torch

from vggt.runtime import npu

OPTIMIZER_ENV = "VGGT_OPTIMIZER"
OPTIMIZERS = ("npu_fused", "foreach", "fused", "torch")
FUSED_ADAMW_DTYPES = (torch.float32, torch.float16)  # NpuFusedAdamW raises on bf16 parameters at its first step


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    """The parameters of a list of tensors or of param-group dicts."""
    return [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]


def _device_choice(device: torch.device, params: list[Any], zero_grad_set_to_none: bool, bucket_views: bool) -> str:
    """The fastest AdamW whose constraints `params` and the gradients' handling meet on `device`."""
    if device.type == "npu":
        fits_fused = all(p.dtype in FUSED_ADAMW_DTYPES for p in _tensors(params))
        return "npu_fused" if fits_fused and not zero_grad_set_to_none and not bucket_views else "foreach"
    if device.type == "cpu":
        return "fused" if fused_adamw_on_cpu() else "torch"
    return {"cuda": "fused"}.get(device.type, "torch")


@functools.lru_cache(maxsize=1)
def fused_adamw_on_cpu() -> bool:
    """Whether this torch has the fused CPU AdamW kernel (from 2.4; about 5x the for-loop AdamW's speed)."""
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    except RuntimeError:  # torch < 2.4: "`fused=True` requires all the params to be ... of supported devices"
        return False
    return True


def adamw(
    params: Iterable[Any],
    device: torch.device,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    zero_grad_set_to_none: bool = True,
    gradients_are_bucket_views: bool = False,
) -> torch.optim.Optimizer:
    """AdamW over `params` (tensors or param groups) with the fastest implementation `device` allows.

    NPU: torch_npu's NpuFusedAdamW (one flat buffer per dtype) when its constraints hold (no bf16
    parameters, gradients zeroed in place rather than set to None, gradients that are not DDP bucket views:
    it moves every gradient's whole storage into its buffer), else foreach AdamW. CUDA: fused AdamW. CPU:
    fused AdamW where torch has it (2.4 on), else torch's default AdamW. All of them compute the same update.
    $VGGT_OPTIMIZER (npu_fused | foreach | fused | torch) overrides the choice; npu_fused is refused where its
    constraints do not hold. A fused NPU optimizer refuses, at its first step, trainable parameters without a
    gradient.
    """
    params = list(params)
    kwargs = {"lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps}
    choice = os.environ.get(OPTIMIZER_ENV) or _device_choice(
        device, params, zero_grad_set_to_none, gradients_are_bucket_views
    )
    if choice not in OPTIMIZERS:
        raise ValueError(f"{OPTIMIZER_ENV}={choice!r} is not one of {', '.join(OPTIMIZERS)}")
    if choice == "npu_fused":
        return _npu_fused_adamw(params, zero_grad_set_to_none, gradients_are_bucket_views, kwargs)
    if choice == "foreach":
        return torch.optim.AdamW(params, foreach=True, **kwargs)
    if choice == "fused":
        return torch.optim.AdamW(params, fused=True, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def _npu_fused_adamw(
    params: list[Any], zero_grad_set_to_none: bool, bucket_views: bool, kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    """NpuFusedAdamW, refusing up front what it would break on later (bf16, set-to-none grads, bucket views)."""
    dtypes = sorted({str(p.dtype) for p in _tensors(params) if p.dtype not in FUSED_ADAMW_DTYPES})
    problems = [f"parameters of dtype {', '.join(dtypes)} (it takes float32 and float16)"] if dtypes else []
    if zero_grad_set_to_none:
        problems.append("gradients set to None by zero_grad (it keeps one flat gradient buffer)")
    if bucket_views:
        problems.append("DDP gradient bucket views (it would move each whole bucket into its buffer)")
    if problems:
        raise ValueError(
            f"{OPTIMIZER_ENV}=npu_fused: NpuFusedAdamW cannot take {'; '.join(problems)}; "
            f"use {OPTIMIZER_ENV}=foreach or leave it unset"
        )
    optimizer = npu.torch_npu().optim.NpuFusedAdamW(params, **kwargs)
    handle = optimizer.register_step_pre_hook(lambda opt, args, kw: _check_every_gradient(opt, handle))
    return optimizer


def _check_every_gradient(optimizer: torch.optim.Optimizer, handle: Any) -> None:
    """Before NpuFusedAdamW's first step: every parameter has a gradient (it builds its buffers and step counts from
    the gradients present then, and a parameter whose gradient comes later fails with KeyError 'step')."""
    missing = [tuple(p.shape) for group in optimizer.param_groups for p in group["params"] if p.grad is None]
    if missing:
        raise ValueError(
            f"NpuFusedAdamW: {len(missing)} trainable parameter(s) have no gradient at the first step (shapes "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}): unused or frozen modules. Freeze them "
            f"(optim.frozen), or use foreach AdamW ({OPTIMIZER_ENV}=foreach)"
        )
    handle.remove()

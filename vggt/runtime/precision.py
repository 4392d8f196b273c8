"""Mixed precision, device-agnostic: autocast contexts, the preferred dtype and the grad scaler.

bf16 wherever the hardware supports it (Atlas A2 NPUs, CUDA sm80+, CPUs); fp16 with a GradScaler
only where it does not. `torch.cuda.amp.*` would not reach an NPU (without monkey-patching torch),
so everything here goes through `torch.autocast(device_type=...)`.
"""

from __future__ import annotations

import contextlib

import torch

from vggt.runtime import npu

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`; None or float32 means full precision (no autocast)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that turns autocast off for `device`'s type (cpu, cuda or npu alike)."""
    return torch.autocast(device_type=device.type, enabled=False)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "npu":
        return bool(npu.torch_npu().npu.is_bf16_supported())
    return True


def preferred_amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where `device` supports it, else float16."""
    return torch.bfloat16 if bf16_supported(device) else torch.float16


def parse_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' | 'auto' (preferred_amp_dtype) | None (float32) -> torch dtype."""
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return preferred_amp_dtype(device)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)} or auto")
    return DTYPES[name]


def grad_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A GradScaler for `device`, enabled only for float16 (bf16 and fp32 have float32's exponent range)."""
    enabled = dtype == torch.float16
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3 takes the device type
        return torch.amp.GradScaler(device.type, enabled=enabled)
    if device.type == "npu":
        return npu.torch_npu().npu.amp.GradScaler(enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")

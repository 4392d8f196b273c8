"""Mixed precision, device-agnostic: autocast contexts, the preferred dtype and the grad scaler.

bf16 wherever the hardware supports it (Atlas A2 NPUs, CUDA sm80+, CPUs); fp16 with a GradScaler
only where it does not. `torch.cuda.amp.*` would not reach an NPU (without monkey-patching torch),
so everything here goes through `torch.autocast(device_type=...)`.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from vggt.runtime import npu, procfs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`; None or float32 means full precision (no autocast)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_autocast_dtype() -> torch.dtype | None:
    """The CPU autocast dtype when CPU autocast is on, else None (torch 2.1 to 2.14 spell it differently)."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


def autocast_computes_in(device: torch.device, dtype: torch.dtype | None) -> bool:
    """Whether autocast(device, dtype) computes in `dtype`: not for None or float32, nor where torch turns it off
    (torch 2.1's CPU autocast does so, with a warning, for float16)."""
    if dtype is None or dtype == torch.float32:
        return False
    if device.type != "cpu":
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with autocast(device, dtype):
            return cpu_autocast_dtype() == dtype


def autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that turns autocast off for `device`'s type (cpu, cuda or npu alike)."""
    return torch.autocast(device_type=device.type, enabled=False)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "npu":
        return bool(npu.torch_npu().npu.is_bf16_supported())
    return True


CPU_BF16_ENV = "VGGT_CPU_BF16"  # 1 / 0 overrides the detection (tests; a CPU that reports its flags wrongly)
CPU_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


def cpu_bf16_instructions() -> str | None:
    """Which bf16 instructions this CPU computes natively ("AMX-BF16", "AVX512-BF16"), None where it has none.

    bf16 without them is emulated in fp32 and slower than fp32 itself. torch >= 2.3 says so through private
    `torch.cpu._is_amx_tile_supported` / `_is_avx512_bf16_supported`; older torch through /proc/cpuinfo's flags.
    """
    forced = os.environ.get(CPU_BF16_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"{CPU_BF16_ENV}={forced!r}: use 1 (bf16 is native here) or 0 (it is not)")
        return f"{CPU_BF16_ENV}=1" if forced == "1" else None
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if amx is not None and avx512_bf16 is not None:
        return "AMX-BF16" if amx() else "AVX512-BF16" if avx512_bf16() else None
    flags = set((procfs.cpuinfo_field("flags") or "").split())
    return next((name for flag, name in CPU_BF16_FLAGS.items() if flag in flags), None)


def preferred_amp_dtype(device: torch.device) -> torch.dtype:
    """The dtype `auto` means: bfloat16 where `device` computes it natively; elsewhere float16 on accelerators
    (with loss scaling in training) and float32 on a CPU (bf16 emulated there is slower than fp32)."""
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16_instructions() else torch.float32
    return torch.bfloat16 if bf16_supported(device) else torch.float16


def describe_dtype_choice(name: str | torch.dtype | None, device: torch.device) -> str:
    """One line saying which dtype `name` gives on `device` and, for auto, why (the choice is printed)."""
    dtype = str(parse_dtype(name, device)).removeprefix("torch.")
    if name != "auto":
        return dtype
    if device.type != "cpu":
        return f"{dtype} (auto)"
    instructions = cpu_bf16_instructions()
    reason = f"this CPU has {instructions}" if instructions else "no AMX-BF16 or AVX512-BF16 on this CPU"
    return f"{dtype} (auto: {reason})"


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

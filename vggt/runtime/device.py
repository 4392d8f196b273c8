"""Device-agnostic helpers the model, training code and benchmarks use instead of backend APIs."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from types import ModuleType

import torch


def autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that turns autocast off for `device`'s type (cpu, cuda or npu alike)."""
    return torch.autocast(device_type=device.type, enabled=False)


def _import_torch_npu() -> bool:
    """Import torch_npu if it is installed (importing it registers `torch.npu`); True when it did."""
    try:
        import torch_npu  # noqa: F401
    except ImportError:
        return False
    return True


def _accelerator_module(device: torch.device) -> ModuleType | None:
    """`torch.cuda` or `torch.npu` for an accelerator device, None for the CPU."""
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        return torch.cuda
    if device.type == "npu" and _import_torch_npu():
        return torch.npu
    raise ValueError(f"unsupported device {device}: vggt.runtime supports cpu, cuda and npu (with torch_npu)")


def default_device() -> torch.device:
    """The best device here: an Ascend NPU (torch_npu installed and a card visible), else a CUDA GPU, else the CPU."""
    if _import_torch_npu() and torch.npu.is_available():
        return torch.device("npu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_device(name: str | None = None) -> torch.device:
    """A usable torch.device from a name such as "cpu", "cuda:1" or "npu:0"; None means default_device().

    Raises ValueError when the device's backend is missing or has no device visible.
    """
    if name is None:
        return default_device()
    if name.startswith("npu") and not _import_torch_npu():
        raise ValueError(f"device {name!r} needs torch_npu, which is not installed")
    try:
        device = torch.device(name)  # "npu" parses only once torch_npu has registered it
    except RuntimeError as err:
        raise ValueError(f"{name!r} is not a device name ({err}); use e.g. cpu, cuda:0 or npu:0") from err
    module = _accelerator_module(device)
    if module is not None and not module.is_available():
        raise ValueError(f"device {name!r} is not available on this machine")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on `device` to finish (a no-op on the CPU, whose ops run synchronously)."""
    module = _accelerator_module(device)
    if module is not None:
        module.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Restart the allocator's peak statistic at the current allocation (a no-op on the CPU)."""
    module = _accelerator_module(device)
    if module is not None:
        module.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak bytes held by tensors on `device` since the last reset_peak_memory; None on the CPU (no allocator stats)."""
    module = _accelerator_module(device)
    if module is None:
        return None
    return int(module.max_memory_allocated(device))


def _cpu_model_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what the platform module reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """A human-readable name of the hardware behind `device`: the GPU / NPU model, or the CPU model."""
    module = _accelerator_module(device)
    if module is None:
        return _cpu_model_name()
    return str(module.get_device_name(device))

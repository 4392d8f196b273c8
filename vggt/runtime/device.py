"""Accelerator detection and the device-level services the rest of the code asks for.

Picks the device once (NPU when torch_npu imports and a card is visible, else CUDA, else CPU;
VGGT_DEVICE or an explicit name overrides), and answers everything backend-specific about it:
distributed backend, synchronisation, memory statistics, seeding and process-level settings.
Nothing outside `vggt/runtime/` touches torch.cuda or torch_npu.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from vggt.runtime import npu
from vggt.runtime.host_malloc import keep_freed_host_memory
from vggt.runtime.procfs import host_available_bytes

DEVICE_ENV = "VGGT_DEVICE"
DIST_BACKENDS = {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}


def accelerator_module(device: torch.device) -> ModuleType | None:
    """The device module of an accelerator (torch.cuda, torch_npu.npu); None for the CPU."""
    return _module_of_kind(device.type)


def _module_of_kind(kind: str) -> ModuleType | None:
    """accelerator_module by device type name ("npu" is a torch.device only once torch_npu has registered it)."""
    if kind == "cpu":
        return None
    if kind == "cuda":
        return torch.cuda
    if kind == "npu" and npu.installed():
        return npu.torch_npu().npu
    raise ValueError(f"unsupported device type {kind!r}: vggt.runtime supports cpu, cuda and npu (with torch_npu)")


def default_device(local_rank: int | None = None) -> torch.device:
    """$VGGT_DEVICE if set, else an Ascend NPU (torch_npu installed, a card visible), else CUDA, else the CPU.

    An accelerator always carries its index (see resolve_device).
    """
    if os.environ.get(DEVICE_ENV):
        return resolve_device(os.environ[DEVICE_ENV], local_rank)
    return _with_index(torch.device(_detected_kind()), local_rank)


def _detected_kind() -> str:
    """The detected kind: npu when torch_npu is installed and a card is visible, else cuda when one is, else cpu."""
    if npu.installed() and npu.torch_npu().npu.is_available():
        return "npu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _with_index(device: torch.device, local_rank: int | None) -> torch.device:
    """`device` with an index: its own, else `local_rank`, else the current one of its kind.

    torch_npu <= 2.9 (mem_get_info and others) and older torch.cuda reject an accelerator without an index.
    """
    if device.type == "cpu" or device.index is not None:
        return device
    module = accelerator_module(device)
    return torch.device(device.type, module.current_device() if local_rank is None else local_rank)


def resolve_device(name: str | None = None, local_rank: int | None = None) -> torch.device:
    """A usable torch.device from "cpu", "cuda:1", "npu:0" or "auto"/None (default_device()).

    An accelerator named without an index ("npu", "cuda", "auto") gets `local_rank` when given (one card per
    process of a node), else the current device's index: callers always get "npu:N" / "cuda:N".
    Raises ValueError when the device's backend is missing or has no device visible.
    """
    if name is None or name == "auto":
        return default_device(local_rank)
    if name.startswith("npu") and not npu.installed():
        raise ValueError(f"device {name!r} needs torch_npu (and the CANN toolkit), which is not installed")
    try:
        device = torch.device(name)  # "npu" parses only once torch_npu has registered it
    except RuntimeError as err:
        raise ValueError(f"{name!r} is not a device name ({err}); use e.g. cpu, cuda:0 or npu:0") from err
    module = accelerator_module(device)
    if module is not None and not module.is_available():
        raise ValueError(f"device {name!r} is not available on this machine")
    return _with_index(device, local_rank)


def accelerator_count(kind: str | None = None) -> int:
    """How many accelerators of `kind` are visible; 0 for "cpu".

    `kind`: "npu" | "cuda" | "cpu", or None / "auto" for default_device()'s kind. What a launcher needs
    to start one process per card (torchrun --nproc_per_node).
    """
    if kind is None or kind == "auto":
        kind = default_device().type if os.environ.get(DEVICE_ENV) else _detected_kind()
    if kind == "npu" and not npu.installed():
        return 0
    module = _module_of_kind(kind)
    return 0 if module is None or not module.is_available() else int(module.device_count())


def distributed_backend(device: torch.device) -> str:
    """The torch.distributed backend for `device`: hccl (NPU), nccl (CUDA) or gloo (CPU)."""
    return DIST_BACKENDS[device.type]


def backend_device(backend: str) -> torch.device:
    """The device whose tensors the collectives of `backend` take: the CPU for gloo, else the current accelerator."""
    kinds = {name: kind for kind, name in DIST_BACKENDS.items()}
    if backend not in kinds:
        raise ValueError(f"unknown distributed backend {backend!r}; vggt.runtime uses {sorted(kinds)}")
    module = _module_of_kind(kinds[backend])
    return torch.device("cpu") if module is None else torch.device(kinds[backend], module.current_device())


def set_current_device(device: torch.device) -> None:
    """Make `device` (with its index) the current accelerator of this process, e.g. per DDP rank."""
    module = accelerator_module(device)
    if module is not None and device.index is not None:
        module.set_device(device)


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on `device` to finish (a no-op on the CPU, whose ops run synchronously)."""
    module = accelerator_module(device)
    if module is not None:
        module.synchronize(device)


# memory ------------------------------------------------------------------------------------------
def memory_allocated_bytes(device: torch.device) -> int | None:
    """Bytes currently held by tensors on `device`; None on the CPU (no allocator statistics)."""
    module = accelerator_module(device)
    return None if module is None else int(module.memory_allocated(device))


def reset_peak_memory(device: torch.device) -> None:
    """Restart the allocator's peak statistic at the current allocation (a no-op on the CPU)."""
    module = accelerator_module(device)
    if module is not None:
        module.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak bytes held by tensors on `device` since the last reset_peak_memory; None on the CPU."""
    module = accelerator_module(device)
    return None if module is None else int(module.max_memory_allocated(device))


def free_memory_bytes(device: torch.device) -> int | None:
    """Bytes a new allocation on `device` can still get: the accelerator's free memory, the host's MemAvailable
    for the CPU; None where neither is known."""
    module = accelerator_module(device)
    if module is not None:
        return int(module.mem_get_info(device)[0])
    return host_available_bytes()


# seeding and process settings ----------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and every accelerator of this process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices
    if npu.installed():
        npu.torch_npu().npu.manual_seed_all(seed)


def configure_process(device: torch.device, deterministic: bool = False, allow_tf32: bool = True) -> None:
    """Process-wide settings for `device`, applied in one place before any work.

    NPU: binary kernels (jit_compile=False, no online compilation per shape), private storage formats
    off (ND everywhere: NZ formats have known precision issues), HF32 for float32 matmul and conv when
    `allow_tf32`, and the CANN deterministic level when `deterministic` (torch_npu >= 2.12, whose
    set_deterministic_level also sets torch's flag). CUDA: TF32 for float32 matmul and cuDNN conv when
    `allow_tf32`; cuDNN deterministic and no autotuning when `deterministic`. CPU: glibc's malloc keeps freed
    blocks for the next tensor instead of unmapping them (vggt.runtime.host_malloc). Every device:
    torch.use_deterministic_algorithms(deterministic), once. What the collectives read when they
    initialise is configure_environment's, before init_process_group.
    """
    if device.type == "npu":
        npu.configure(deterministic=deterministic, allow_hf32=allow_tf32)
        return
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = False
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    if device.type == "cpu":
        keep_freed_host_memory()
    torch.use_deterministic_algorithms(deterministic)


def configure_environment(device: torch.device, deterministic: bool = False) -> None:
    """Environment the device's collective library reads when it initialises: call before init_process_group.

    NPU with `deterministic`: HCCL_DETERMINISTIC=true (deterministic all-reduce on A2), unless already set.
    """
    if device.type == "npu" and deterministic:
        os.environ.setdefault("HCCL_DETERMINISTIC", "true")


# names ---------------------------------------------------------------------------------------------
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
    module = accelerator_module(device)
    if module is None:
        return _cpu_model_name()
    return str(module.get_device_name(device))

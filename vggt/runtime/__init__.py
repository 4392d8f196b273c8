"""The device boundary: everything backend-specific (torch_npu, torch.cuda) lives under this package."""

from vggt.runtime import kernels
from vggt.runtime.device import (
    accelerator_count,
    accelerator_module,
    backend_device,
    configure_environment,
    configure_process,
    default_device,
    device_name,
    distributed_backend,
    free_memory_bytes,
    memory_allocated_bytes,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_device,
    seed_everything,
    set_current_device,
    synchronize,
)
from vggt.runtime.optim import adamw
from vggt.runtime.precision import (
    autocast,
    autocast_disabled,
    bf16_supported,
    cpu_bf16_instructions,
    describe_dtype_choice,
    grad_scaler,
    parse_dtype,
    preferred_amp_dtype,
)
from vggt.runtime.procfs import host_available_bytes, resident_memory_bytes

__all__ = [
    "accelerator_count",
    "accelerator_module",
    "adamw",
    "autocast",
    "autocast_disabled",
    "backend_device",
    "bf16_supported",
    "configure_environment",
    "configure_process",
    "cpu_bf16_instructions",
    "default_device",
    "describe_dtype_choice",
    "device_name",
    "distributed_backend",
    "free_memory_bytes",
    "grad_scaler",
    "host_available_bytes",
    "kernels",
    "memory_allocated_bytes",
    "parse_dtype",
    "peak_memory_bytes",
    "preferred_amp_dtype",
    "reset_peak_memory",
    "resident_memory_bytes",
    "resolve_device",
    "seed_everything",
    "set_current_device",
    "synchronize",
]

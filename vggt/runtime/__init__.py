"""The device boundary: everything backend-specific lives under this package."""

from vggt.runtime import kernels
from vggt.runtime.device import (
    autocast_disabled,
    default_device,
    device_name,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_device,
    synchronize,
)

__all__ = [
    "kernels",
    "autocast_disabled",
    "default_device",
    "device_name",
    "peak_memory_bytes",
    "reset_peak_memory",
    "resolve_device",
    "synchronize",
]

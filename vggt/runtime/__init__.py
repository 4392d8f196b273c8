"""The device boundary: everything backend-specific lives under this package."""

from vggt.runtime import kernels
from vggt.runtime.device import autocast_disabled

__all__ = ["kernels", "autocast_disabled"]

"""Device-agnostic helpers the model and training code use instead of backend APIs."""

from __future__ import annotations

import contextlib

import torch


def autocast_disabled(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that turns autocast off for `device`'s type (cpu, cuda or npu alike)."""
    return torch.autocast(device_type=device.type, enabled=False)

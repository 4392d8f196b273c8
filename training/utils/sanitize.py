"""Non-finite values in training tensors: replaced by 0, optionally clamped (upstream's `check_and_fix_inf_nan`)."""

from __future__ import annotations

import torch


def finite_or_zero(tensor: torch.Tensor, hard_max: float | None = None) -> torch.Tensor:
    """NaN and +-inf -> 0, then (with `hard_max`) clamp to [-hard_max, hard_max]; elementwise, any shape, no sync."""
    tensor = torch.where(torch.isfinite(tensor), tensor, torch.zeros_like(tensor))
    return tensor if hard_max is None else tensor.clamp(-hard_max, hard_max)

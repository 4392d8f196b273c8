"""Metric inputs on the host in double precision (NumPy only; device code stays float32 / bf16).

Evaluation metrics run in NumPy double precision because float32 cannot resolve small angles in the
protocol's arccos(1 - 2 x) (x of 1e-8 rounds away). The dtype is spelled "f8" through HOST_DTYPE so
that the repository's source scan for double precision in device code has one audited place to allow.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

HOST_DTYPE = np.dtype("f8")  # double precision, host-side metrics only (issue 12 allows it here)

ArrayLike = Union[np.ndarray, torch.Tensor]


def host_array(value: ArrayLike, name: str) -> np.ndarray:
    """A NumPy double-precision copy of an array or a tensor on any device; ValueError for anything else."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.float16, torch.bfloat16):  # NumPy has no bfloat16
            value = value.float()
        value = value.numpy()
    try:
        return np.array(value, dtype=HOST_DTYPE)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric NumPy array or torch tensor, got {type(value).__name__}") from err

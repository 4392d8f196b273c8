"""The synthetic-weight recipe: one tensor from its key and shape (vggt/synthetic_weights.py builds on it).

A generator seeded with crc32(key) draws each tensor, the procedure upstream's reference fixtures were
made with. Only torch and the standard library, so that a process running another implementation
(benchmarks/working_memory.py measuring upstream's model, our package off its path) loads this file by
path and fills that model with the same numbers, one tensor at a time.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

import torch


def synthetic_tensor(key: str, shape: Iterable[int]) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    x = torch.randn(shape, generator=generator, dtype=torch.float32)
    if len(shape) == 1:
        if key.endswith("weight"):
            return 1.0 + 0.1 * x  # norm affine weights
        if key.endswith("gamma"):
            return 0.1 + 0.02 * x  # LayerScale
        return 0.02 * x  # biases
    if key.endswith("weight"):
        return x / math.sqrt(math.prod(shape[1:]))  # linear, conv and in_proj weights
    return 0.02 * x  # tokens and embeddings

"""Deterministic synthetic weights for any architecture, without a download: a public tool.

Each tensor is drawn from a generator seeded with crc32(key) (the procedure upstream's reference
fixtures were made with), so any implementation with the same keys and shapes gets the same numbers.
What it is for: checking a port, a device or a kernel backend against those fixtures; benchmarking
with the real shapes where the checkpoint cannot be downloaded (benchmarks/); smoke-testing
`vggt predict` end to end (`synthetic_model(config).save_pretrained(dir)`, then `--model dir`).
The numbers are not trained: the outputs are well-scaled but meaningless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.synthetic_recipe import synthetic_tensor
from vggt.weights import build_on_meta_device, load_weights


def synthetic_state_dict(shapes: Mapping[str, Iterable[int]]) -> dict[str, torch.Tensor]:
    """{key: shape} (e.g. {k: v.shape for k, v in model.state_dict().items()}) -> {key: tensor}."""
    return {key: synthetic_tensor(key, shape) for key, shape in shapes.items()}


def synthetic_model(config: VGGTConfig) -> VGGT:
    """VGGT of `config` holding the synthetic weights (built without a random init), in eval mode."""
    model = build_on_meta_device(VGGT, config)
    load_weights(model, synthetic_state_dict({k: v.shape for k, v in model.state_dict().items()}))
    return model.eval()

"""Activation checkpointing switch shared by the aggregator and the DINOv2 patch embed."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_block(block: nn.Module, x: torch.Tensor, *args, checkpointed: bool = False) -> torch.Tensor:
    """block(x, *args), recomputed in backward instead of stored when `checkpointed`."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(block, x, *args, use_reentrant=False)
    return block(x, *args)

"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
import torch

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT


@pytest.fixture
def tiny_model() -> VGGT:
    """A randomly initialised tiny VGGT in eval mode (seeded)."""
    torch.manual_seed(0)
    return VGGT(config=VGGTConfig.tiny()).eval()

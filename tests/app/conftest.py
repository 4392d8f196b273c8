"""Fixtures for the `vggt app` tests: predict's tiny synthetic weights and rendered scene, and magenta images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.predict.conftest import RESOLUTION, scene_images, tiny_weights  # noqa: F401 (fixtures)

APP_RESOLUTION = RESOLUTION


@pytest.fixture(scope="session")
def magenta_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three 160x120 PNGs of textured magenta: every point of their scene is magenta, a colour no control has."""
    folder = tmp_path_factory.mktemp("magenta")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(3):
        pixels = np.zeros((120, 160, 3), dtype=np.uint8)
        pixels[..., 0] = pixels[..., 2] = rng.integers(200, 256, (120, 160))
        pixels[..., 1] = rng.integers(0, 40, (120, 160))
        path = folder / f"view_{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths

"""A posed frame on disk, and the error every scene reader raises for missing or malformed files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Frame:
    image_path: Path
    extrinsic: np.ndarray  # [3, 4] camera-from-world, OpenCV (x right, y down, z forward)
    intrinsic: np.ndarray  # [3, 3] pixels
    depth_path: Path | None = None
    mask_path: Path | None = None  # valid-depth mask, where the format has one


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and what to do."""

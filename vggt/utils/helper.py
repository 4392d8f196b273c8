"""Array helpers that upstream's COLMAP demo imports from `vggt.utils.helper`: a pixel grid and random mask thinning."""

from __future__ import annotations

import numpy as np


def create_pixel_coordinate_grid(num_frames: int, height: int, width: int) -> np.ndarray:
    """(x, y, frame index) of every pixel of `num_frames` frames: float32 [S, H, W, 3].

    x runs over columns 0..W-1 and y over rows 0..H-1. Upstream's docstring promises a tuple, but its
    code returns this one array, and so does this function.
    """
    for name, value in (("num_frames", num_frames), ("height", height), ("width", width)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    frame, y, x = np.meshgrid(
        np.arange(num_frames, dtype=np.float32),
        np.arange(height, dtype=np.float32),
        np.arange(width, dtype=np.float32),
        indexing="ij",
    )
    return np.stack((x, y, frame), axis=-1)


def randomly_limit_trues(mask: np.ndarray, max_trues: int) -> np.ndarray:
    """`mask` itself when it has at most `max_trues` True entries; otherwise a new boolean mask of the same shape
    with `max_trues` of its True entries kept, chosen uniformly without replacement with NumPy's global random
    state (np.random.seed makes the choice reproducible). A non-boolean mask counts its non-zero entries as True.
    """
    mask = np.asarray(mask)
    if int(max_trues) != max_trues or max_trues < 0:
        raise ValueError(f"max_trues must be a non-negative integer, got {max_trues!r}")
    true_indices = np.flatnonzero(mask)
    if true_indices.size <= max_trues:
        return mask
    kept = np.random.choice(true_indices, size=int(max_trues), replace=False)
    limited = np.zeros(mask.size, dtype=bool)
    limited[kept] = True
    return limited.reshape(mask.shape)

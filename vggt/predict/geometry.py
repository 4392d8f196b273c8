"""From the model's pixels back to the original images: intrinsics, pixel positions and content masks.

Two pixel conventions meet here. The model's outputs use pixel *indices*: depth[v, u] is sampled at (u, v) and the
decoded intrinsics put the principal point at (W/2, H/2) in those units (upstream's unprojection convention).
Original images use COLMAP's *continuous* convention: the top-left pixel covers [0, 1) x [0, 1), its centre is
(0.5, 0.5). Index u of the model image is the continuous coordinate u + 0.5, which PreprocessTransform maps to
the original image (undoing resize, crop and padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vggt.utils.load_fn import PreprocessTransform


def model_index_to_original(uv: np.ndarray, transform: PreprocessTransform) -> np.ndarray:
    """Model pixel indices [..., 2] (u, v) -> continuous (COLMAP) coordinates [..., 2] of the original image."""
    return transform.to_original(np.asarray(uv, dtype=np.float32) + 0.5)


def original_index_to_model(xy: np.ndarray, transform: PreprocessTransform) -> np.ndarray:
    """Pixel indices [..., 2] of the original image (what an image viewer shows) -> model pixel indices [..., 2]."""
    return transform.from_original(np.asarray(xy, dtype=np.float32) + 0.5) - 0.5


def original_intrinsics(intrinsic: np.ndarray, transforms: Sequence[PreprocessTransform]) -> np.ndarray:
    """Model intrinsics [S, 3, 3] (index convention) -> intrinsics of the original images [S, 3, 3] (continuous).

    A camera point projecting to model index u = fx X/Z + cx lies at continuous original x = (u + 0.5 - ox) / sx,
    so fx' = fx / sx and cx' = (cx + 0.5 - ox) / sx (the same for y).
    """
    out = np.zeros((len(transforms), 3, 3), dtype=np.float32)
    for frame, transform in enumerate(transforms):
        (sx, sy), (ox, oy) = transform.scale, transform.offset
        k = intrinsic[frame].astype(np.float32)
        out[frame] = [
            [k[0, 0] / sx, 0, (k[0, 2] + 0.5 - ox) / sx],
            [0, k[1, 1] / sy, (k[1, 2] + 0.5 - oy) / sy],
            [0, 0, 1],
        ]
    return out


def content_mask(transforms: Sequence[PreprocessTransform], height: int, width: int) -> np.ndarray:
    """bool [S, H, W]: True where a model pixel shows the original image, False on padding."""
    mask = np.zeros((len(transforms), height, width), dtype=bool)
    for frame, transform in enumerate(transforms):
        x0, y0, x1, y1 = transform.content
        mask[frame, y0:y1, x0:x1] = True
    return mask


def transform_arrays(transforms: Sequence[PreprocessTransform]) -> dict[str, np.ndarray]:
    """The preprocessing geometry as arrays for predictions.npz (see PreprocessTransform)."""
    return {
        "original_size": np.array([t.original_size for t in transforms], dtype=np.int64),  # (W, H)
        "preprocess_scale": np.array([t.scale for t in transforms], dtype=np.float32),
        "preprocess_offset": np.array([t.offset for t in transforms], dtype=np.float32),
        "content_box": np.array([t.content for t in transforms], dtype=np.int64),
    }

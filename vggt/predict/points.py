"""The confidence-filtered, coloured point cloud that the PLY, GLB, COLMAP, preview and viewer exports share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

MIN_CONFIDENCE = 1e-5  # always dropped, whatever the percentile (upstream's demos do the same)


@dataclass
class PointCloud:
    """N points lifted from depth: where they are, their colour, and the model pixel they came from."""

    xyz: np.ndarray  # [N, 3] float32, world (= first camera) frame, OpenCV axes
    rgb: np.ndarray  # [N, 3] uint8
    confidence: np.ndarray  # [N] float32 depth confidence
    frame: np.ndarray  # [N] int64 frame index
    pixel: np.ndarray  # [N, 2] int64 model pixel index (u, v)

    def __len__(self) -> int:
        return len(self.xyz)

    def subset(self, keep: np.ndarray) -> PointCloud:
        """The points selected by an index or boolean array."""
        return PointCloud(self.xyz[keep], self.rgb[keep], self.confidence[keep], self.frame[keep], self.pixel[keep])


def confidence_threshold(confidence: np.ndarray, valid: np.ndarray, percentile: float) -> float:
    """The `percentile`-th percentile (0-100) of the confidence over valid pixels; 0 keeps everything."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"--conf-threshold is a percentile from 0 to 100, got {percentile}")
    values = confidence[valid]
    return float(np.percentile(values, percentile)) if percentile > 0 and values.size else 0.0


def confident_points(
    world_points: np.ndarray, confidence: np.ndarray, images: np.ndarray, valid: np.ndarray, percentile: float
) -> PointCloud:
    """Pixels whose confidence reaches the percentile, among valid (non-padding) ones with finite points.

    world_points [S, H, W, 3], confidence [S, H, W], images [S, 3, H, W] in [0, 1], valid bool [S, H, W].
    """
    usable = valid & np.isfinite(world_points).all(axis=-1) & (confidence > MIN_CONFIDENCE)
    keep = usable & (confidence >= confidence_threshold(confidence, usable, percentile))
    frame, v, u = np.nonzero(keep)
    rgb = np.clip(images.transpose(0, 2, 3, 1)[frame, v, u] * 255 + 0.5, 0, 255).astype(np.uint8)
    return PointCloud(
        xyz=world_points[frame, v, u].astype(np.float32),
        rgb=rgb,
        confidence=confidence[frame, v, u].astype(np.float32),
        frame=frame.astype(np.int64),
        pixel=np.stack([u, v], axis=-1).astype(np.int64),
    )


POINT_SOURCES = {  # where a saved cloud's points come from -> (points key, confidence key) of predictions.npz
    "depth": ("world_points_from_depth", "depth_conf"),  # depth unprojected by the predicted cameras
    "point_map": ("world_points", "world_points_conf"),  # the point head's map
}


def saved_cloud(
    arrays: Mapping[str, np.ndarray], percentile: float, source: str = "depth", frame: int | None = None
) -> PointCloud:
    """The confident points of a `vggt predict` predictions.npz (`arrays`): from `source` (POINT_SOURCES), of every
    frame or of `frame` only, the percentile taken over the pixels shown. Padding (content_box) is left out, and
    for depth points the frames without a usable camera (camera_valid), as in points.ply; the point map needs none."""
    if source not in POINT_SOURCES:
        raise ValueError(f"unknown point source {source!r}; choose from {', '.join(POINT_SOURCES)}")
    points_key, confidence_key = POINT_SOURCES[source]
    if points_key not in arrays:
        raise ValueError(f"these predictions have no {points_key} (the model has no point head); show depth points")
    shown = np.zeros(arrays[confidence_key].shape, dtype=bool)
    for index, (x0, y0, x1, y1) in enumerate(arrays["content_box"]):
        shown[index, y0:y1, x0:x1] = frame is None or index == frame
    if source == "depth":
        shown &= arrays["camera_valid"][:, None, None]
    return confident_points(arrays[points_key], arrays[confidence_key], arrays["images"], shown, percentile)

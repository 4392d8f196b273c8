"""Camera frustums in world coordinates, for the GLB scene and the preview render."""

from __future__ import annotations

import numpy as np

from vggt.utils.geometry import closed_form_inverse_se3

FRUSTUM_EDGES = ((0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1))  # apex to corners, then the rim


def camera_centers(extrinsic: np.ndarray) -> np.ndarray:
    """Camera-from-world [S, 3, 4] -> camera centres in the world [S, 3]."""
    return closed_form_inverse_se3(extrinsic.astype(np.float32))[:, :3, 3]


def scene_scale(points: np.ndarray, extrinsic: np.ndarray) -> float:
    """A robust size of the scene: the diagonal of the box spanning the points' 5-95 percentiles and every camera
    (1 when there is neither)."""
    corners = [camera_centers(extrinsic)] if len(extrinsic) else []
    if len(points):
        corners.append(np.percentile(points.reshape(-1, 3), [5, 95], axis=0))
    if not corners:
        return 1.0
    spanned = np.concatenate(corners)
    return float(np.linalg.norm(spanned.max(axis=0) - spanned.min(axis=0))) or 1.0


def frustum_vertices(
    extrinsic: np.ndarray, intrinsic: np.ndarray, image_hw: tuple[int, int], depth: float
) -> np.ndarray:
    """[S, 5, 3] world points per camera: its centre, then the image corners (top-left, top-right, bottom-right,
    bottom-left) lifted to z-depth `depth`."""
    height, width = image_hw
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    world_from_cam = closed_form_inverse_se3(extrinsic.astype(np.float32))
    out = np.zeros((len(extrinsic), 5, 3))
    for frame, k in enumerate(intrinsic.astype(np.float32)):
        rays = np.stack([(corners[:, 0] - k[0, 2]) / k[0, 0], (corners[:, 1] - k[1, 2]) / k[1, 1], np.ones(4)], -1)
        cam = np.concatenate([np.zeros((1, 3)), rays * depth])
        out[frame] = cam @ world_from_cam[frame, :3, :3].T + world_from_cam[frame, :3, 3]
    return out

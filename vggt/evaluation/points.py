"""Point-map accuracy after a Umeyama similarity alignment: accuracy, completeness and their mean (overall).

accuracy: mean distance from each aligned predicted point to its nearest ground-truth point.
completeness: mean distance from each ground-truth point to its nearest aligned predicted point.
overall: (accuracy + completeness) / 2. All in ground-truth units, lower is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggt.evaluation.host import ArrayLike, host_array


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] -> [N, 3]."""
        return self.scale * points @ self.rotation.T + self.translation


@dataclass(frozen=True)
class PointMetrics:
    accuracy: float
    completeness: float
    overall: float
    alignment: Similarity  # prediction -> ground truth


def umeyama_alignment(source: ArrayLike, target: ArrayLike) -> Similarity:
    """The similarity transform minimising sum |target - (s R source + t)|^2 over corresponding points [N, 3]."""
    src = host_array(source, "source").reshape(-1, 3)
    dst = host_array(target, "target").reshape(-1, 3)
    if src.shape != dst.shape or len(src) < 3:
        raise ValueError(f"alignment needs equal numbers (>= 3) of corresponding points, got {len(src)} and {len(dst)}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centered, dst_centered = src - src_mean, dst - dst_mean
    covariance = dst_centered.T @ src_centered / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the closest orthogonal matrix would be a reflection
        reflection[2] = -1.0
    rotation = (u * reflection) @ vt
    variance = np.mean(np.sum(src_centered**2, axis=1))
    if variance == 0:
        raise ValueError("the source points all coincide; a similarity alignment is undefined")
    scale = float(np.sum(singular * reflection) / variance)
    return Similarity(scale, rotation, dst_mean - scale * rotation @ src_mean)


def _nearest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[N] distance from each query point [N, 3] to its nearest reference point [M, 3] (scipy's k-d tree)."""
    try:
        from scipy.spatial import cKDTree  # optional dependency: only point metrics need it
    except ImportError as err:
        raise ImportError("point-map metrics need scipy: pip install scipy (or 'vggt-npu[eval]')") from err
    distances, _ = cKDTree(reference).query(queries, k=1)
    return distances


def point_metrics(pred_points: ArrayLike, gt_points: ArrayLike, valid_mask: ArrayLike | None = None) -> PointMetrics:
    """Accuracy, completeness and overall of pred_points against gt_points after aligning pred to gt.

    pred_points, gt_points: [..., 3] per-pixel point maps in corresponding order (e.g. [S, H, W, 3]); valid_mask
    [...] (bool) selects the pixels whose ground truth exists (default: every finite ground-truth point). The
    Umeyama similarity is estimated from the valid correspondences, then both clouds are compared by nearest
    neighbours, so the metrics do not rely on the correspondences.
    """
    pred = host_array(pred_points, "pred_points")
    gt = host_array(gt_points, "gt_points")
    if pred.shape != gt.shape or pred.shape[-1:] != (3,):
        raise ValueError(f"pred_points {pred.shape} and gt_points {gt.shape} must both be [..., 3] of equal shape")
    valid = np.isfinite(gt).all(axis=-1)
    if valid_mask is not None:
        mask = host_array(valid_mask, "valid_mask") != 0
        if mask.shape != valid.shape:
            raise ValueError(f"valid_mask {mask.shape} must be the point maps' shape without the last axis")
        valid &= mask
    pred, gt = pred[valid], gt[valid]
    if not np.isfinite(pred).all():
        raise ValueError("pred_points holds non-finite values where the ground truth is valid")
    alignment = umeyama_alignment(pred, gt)
    aligned = alignment.apply(pred)
    accuracy = float(np.mean(_nearest_distances(aligned, gt)))
    completeness = float(np.mean(_nearest_distances(gt, aligned)))
    return PointMetrics(accuracy, completeness, (accuracy + completeness) / 2, alignment)

"""Depth-map accuracy after per-frame median scaling: AbsRel and the delta < 1.25 inlier ratio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggt.evaluation.host import ArrayLike, host_array

DELTA_THRESHOLD = 1.25


@dataclass(frozen=True)
class DepthMetrics:
    """Means over the frames that have valid pixels, and the per-frame values [S] (NaN for frames without any)."""

    abs_rel: float  # mean |d * s - d_gt| / d_gt, lower is better
    delta_1_25: float  # share of pixels with max(d * s / d_gt, d_gt / (d * s)) < 1.25, in [0, 1], higher is better
    per_frame_abs_rel: np.ndarray
    per_frame_delta_1_25: np.ndarray


def _frames(depth: np.ndarray, name: str) -> np.ndarray:
    """[S, H, W, 1], [S, H, W] or [H, W] -> [S, H, W]."""
    if depth.ndim == 4 and depth.shape[-1] == 1:
        return depth[..., 0]
    if depth.ndim == 2:
        return depth[None]
    if depth.ndim != 3:
        raise ValueError(f"{name} must be [S, H, W], [S, H, W, 1] or [H, W], got shape {depth.shape}")
    return depth


def depth_metrics(pred_depth: ArrayLike, gt_depth: ArrayLike, valid_mask: ArrayLike | None = None) -> DepthMetrics:
    """AbsRel and delta < 1.25 of pred_depth against gt_depth, each frame scaled by median(gt) / median(pred).

    pred_depth, gt_depth: [S, H, W] (or [S, H, W, 1], [H, W]) z-depths; valid pixels have a finite gt > 0, and
    valid_mask (bool, same shape) when given. Medians and metrics use the valid pixels only.
    """
    pred = _frames(host_array(pred_depth, "pred_depth"), "pred_depth")
    gt = _frames(host_array(gt_depth, "gt_depth"), "gt_depth")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_depth {pred.shape} and gt_depth {gt.shape} must have the same shape")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > 0)
    if valid_mask is not None:
        mask = _frames(np.asarray(host_array(valid_mask, "valid_mask") != 0), "valid_mask")
        if mask.shape != gt.shape:
            raise ValueError(f"valid_mask {mask.shape} must have the depth maps' shape {gt.shape}")
        valid &= mask
    abs_rel = np.full(len(gt), np.nan)
    delta = np.full(len(gt), np.nan)
    for frame in range(len(gt)):
        p, g = pred[frame][valid[frame]], gt[frame][valid[frame]]
        if g.size == 0:
            continue
        scaled = p * (np.median(g) / np.median(p))
        abs_rel[frame] = np.mean(np.abs(scaled - g) / g)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero prediction is an outlier, not an error
            ratio = np.maximum(scaled / g, g / scaled)
        delta[frame] = np.mean(ratio < DELTA_THRESHOLD)
    if np.isnan(abs_rel).all():
        raise ValueError("no frame has a valid ground-truth pixel (finite depth > 0 inside valid_mask)")
    return DepthMetrics(float(np.nanmean(abs_rel)), float(np.nanmean(delta)), abs_rel, delta)

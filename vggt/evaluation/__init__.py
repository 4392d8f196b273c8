"""Evaluation: the published Co3D camera-pose protocol, depth metrics and point-map metrics (`vggt eval`).

Metric functions take NumPy arrays or torch tensors on any device and compute on the host in double
precision.
"""

from vggt.evaluation.depth import DepthMetrics, depth_metrics
from vggt.evaluation.points import PointMetrics, Similarity, point_metrics, umeyama_alignment
from vggt.evaluation.pose import (
    AUC_THRESHOLDS,
    co3d_opencv_extrinsics,
    frame_pairs,
    pose_auc,
    relative_pose_errors,
    rotation_errors_deg,
    translation_errors_deg,
)

__all__ = [
    "AUC_THRESHOLDS",
    "DepthMetrics",
    "PointMetrics",
    "Similarity",
    "co3d_opencv_extrinsics",
    "depth_metrics",
    "frame_pairs",
    "point_metrics",
    "pose_auc",
    "relative_pose_errors",
    "rotation_errors_deg",
    "translation_errors_deg",
    "umeyama_alignment",
]

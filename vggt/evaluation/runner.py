"""Run a model over selected sequences and aggregate the protocol's metrics per group (category / scene).

Pose: every pair's rotation and translation errors are pooled per group, AUC@30/15/5/3 computed on the pool,
then averaged over groups. Depth (where ground truth exists): AbsRel and delta < 1.25 per frame after median
scaling, averaged per group, then over groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from vggt.evaluation.depth import depth_metrics
from vggt.evaluation.pose import AUC_THRESHOLDS, pose_auc, relative_pose_errors
from vggt.evaluation.sequences import EvalSequence
from vggt.models.vggt import VGGT
from vggt.predict.geometry import model_index_to_original
from vggt.runtime import autocast
from vggt.utils.load_fn import PreprocessTransform, load_and_preprocess_images_with_transforms
from vggt.utils.pose_enc import pose_encoding_to_extri_intri


@dataclass
class GroupResult:
    """Pooled errors of one category or scene."""

    sequences: int = 0
    rotation_deg: list[np.ndarray] = field(default_factory=list)
    translation_deg: list[np.ndarray] = field(default_factory=list)
    depth_abs_rel: list[float] = field(default_factory=list)  # per frame with valid ground truth
    depth_delta: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        rotation, translation = np.concatenate(self.rotation_deg), np.concatenate(self.translation_deg)
        row: dict[str, float | int | None] = {"sequences": self.sequences, "pairs": int(rotation.size)}
        for tau in AUC_THRESHOLDS:
            row[f"AUC{tau}"] = pose_auc(rotation, translation, tau)
        row["RotErrMedian"] = float(np.median(rotation))
        row["TransErrMedian"] = float(np.median(translation))
        row["DepthAbsRel"] = float(np.mean(self.depth_abs_rel)) if self.depth_abs_rel else None
        row["DepthDelta1.25"] = float(np.mean(self.depth_delta)) if self.depth_delta else None
        return row


def resample_depth(depth: np.ndarray, transform: PreprocessTransform, height: int, width: int) -> np.ndarray:
    """Ground-truth depth [h, w] of the original image -> [height, width] model pixels (nearest; 0 off-image)."""
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    xy = np.floor(model_index_to_original(np.stack([u, v], axis=-1), transform)).astype(np.int64)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < depth.shape[1]) & (xy[..., 1] >= 0) & (xy[..., 1] < depth.shape[0])
    out = np.zeros((height, width), dtype=np.float32)
    out[inside] = depth[xy[..., 1][inside], xy[..., 0][inside]]
    return out


@torch.no_grad()
def evaluate_sequence(
    model: VGGT, sequence: EvalSequence, device: torch.device, dtype: torch.dtype, resolution: int, group: GroupResult
) -> None:
    """Predict the sequence's frames in drawn order and add its pair errors and depth metrics to `group`."""
    images, transforms = load_and_preprocess_images_with_transforms(sequence.image_paths, "crop", resolution)
    with autocast(device, dtype):
        output = model(images.to(device))
    extrinsic, _ = pose_encoding_to_extri_intri(output["pose_enc"].float(), images.shape[-2:])
    rotation, translation = relative_pose_errors(extrinsic[0], sequence.extrinsics)
    group.sequences += 1
    group.rotation_deg.append(rotation)
    group.translation_deg.append(translation)
    if sequence.depth_readers is None:
        return
    height, width = images.shape[-2:]
    gt = np.stack([resample_depth(read(), t, height, width) for read, t in zip(sequence.depth_readers, transforms)])
    if not (gt > 0).any():
        return
    metrics = depth_metrics(output["depth"][0, ..., 0], gt)
    valid = np.isfinite(metrics.per_frame_abs_rel)
    group.depth_abs_rel.extend(metrics.per_frame_abs_rel[valid].tolist())
    group.depth_delta.extend(metrics.per_frame_delta_1_25[valid].tolist())


def evaluate(
    model: VGGT, sequences: Sequence[EvalSequence], device: torch.device, dtype: torch.dtype, resolution: int
) -> dict[str, GroupResult]:
    """Group results in the order the groups first appear; a progress bar over the sequences."""
    model = model.to(device).eval()
    groups: dict[str, GroupResult] = {}
    for sequence in tqdm(sequences, desc="evaluating", unit="sequence"):
        evaluate_sequence(model, sequence, device, dtype, resolution, groups.setdefault(sequence.group, GroupResult()))
    return groups


def mean_over_groups(rows: dict[str, dict[str, float | int | None]]) -> dict[str, float | None]:
    """The mean of each metric over the groups that have it (AUCs, median errors, depth)."""
    keys = [key for key in next(iter(rows.values())) if key not in ("sequences", "pairs")]
    mean: dict[str, float | None] = {}
    for key in keys:
        values = [row[key] for row in rows.values() if row[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean

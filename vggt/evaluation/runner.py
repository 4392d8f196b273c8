"""Run a model over selected sequences and aggregate the protocol's metrics per group (category / scene).

Pose: every pair's rotation and translation errors are pooled per group, AUC@30/15/5/3 computed on the pool,
then averaged over groups. Depth (where ground truth exists): AbsRel and delta < 1.25 per frame after median
scaling, averaged per group, then over groups. Points (where ground-truth depth and intrinsics exist, and scipy
is installed): the point head's map (else the predicted depth unprojected with the predicted cameras) against
the ground-truth depth unprojected with the true cameras, on at most POINT_SAMPLES valid pixels per sequence,
after a Umeyama similarity alignment; accuracy, completeness and overall per sequence, averaged per group, then
over groups.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from vggt.evaluation.depth import depth_metrics
from vggt.evaluation.points import point_metrics
from vggt.evaluation.pose import AUC_THRESHOLDS, pose_auc, relative_pose_errors
from vggt.evaluation.sequences import EvalSequence
from vggt.models.vggt import VGGT
from vggt.predict.geometry import model_index_to_original
from vggt.runtime import autocast
from vggt.utils.geometry import unproject_depth_map_to_point_map
from vggt.utils.load_fn import PreprocessTransform, load_and_preprocess_images_with_transforms
from vggt.utils.pose_enc import pose_encoding_to_extri_intri

POINT_SAMPLES = 20_000  # valid pixels per sequence for the point metrics (nearest neighbours cost N log N)
POINT_SAMPLE_SEED = 0  # a private generator: the protocol's global random state is left alone


@dataclass
class GroupResult:
    """Pooled errors of one category or scene."""

    sequences: int = 0
    rotation_deg: list[np.ndarray] = field(default_factory=list)
    translation_deg: list[np.ndarray] = field(default_factory=list)
    depth_abs_rel: list[float] = field(default_factory=list)  # per frame with valid ground truth
    depth_delta: list[float] = field(default_factory=list)
    point_accuracy: list[float] = field(default_factory=list)  # per sequence with ground-truth points
    point_completeness: list[float] = field(default_factory=list)
    point_overall: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        rotation, translation = np.concatenate(self.rotation_deg), np.concatenate(self.translation_deg)
        row: dict[str, float | int | None] = {"sequences": self.sequences, "pairs": int(rotation.size)}
        for tau in AUC_THRESHOLDS:
            row[f"AUC{tau}"] = pose_auc(rotation, translation, tau)
        row["RotErrMedian"] = float(np.median(rotation))
        row["TransErrMedian"] = float(np.median(translation))
        row["DepthAbsRel"] = float(np.mean(self.depth_abs_rel)) if self.depth_abs_rel else None
        row["DepthDelta1.25"] = float(np.mean(self.depth_delta)) if self.depth_delta else None
        for key, values in (
            ("PointAccuracy", self.point_accuracy),
            ("PointCompleteness", self.point_completeness),
            ("PointOverall", self.point_overall),
        ):
            row[key] = float(np.mean(values)) if values else None
        return row


def sample_at_model_pixels(values: np.ndarray, transform: PreprocessTransform, height: int, width: int) -> np.ndarray:
    """A per-pixel map [h, w, ...] of the original image -> [height, width, ...] at the model's pixels.

    Each model pixel takes the original pixel its centre falls in (nearest, no blending of depths across
    edges); pixels outside the original image are 0 (invalid).
    """
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    xy = np.floor(model_index_to_original(np.stack([u, v], axis=-1), transform)).astype(np.int64)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < values.shape[1]) & (xy[..., 1] >= 0) & (xy[..., 1] < values.shape[0])
    out = np.zeros((height, width, *values.shape[2:]), dtype=np.float32)
    out[inside] = values[xy[..., 1][inside], xy[..., 0][inside]]
    return out


def scipy_available() -> bool:
    """Point metrics need scipy's k-d tree; without it they are left out (with a warning from `evaluate`)."""
    return importlib.util.find_spec("scipy") is not None


def _add_point_metrics(
    pred_points: np.ndarray, gt_points: np.ndarray, valid: np.ndarray, sequence: EvalSequence, group: GroupResult
) -> None:
    """Point metrics of one sequence on at most POINT_SAMPLES of its valid pixels [S, H, W]."""
    pixels = np.flatnonzero(valid)
    if pixels.size < 3:
        return
    if pixels.size > POINT_SAMPLES:
        pixels = np.sort(np.random.default_rng(POINT_SAMPLE_SEED).choice(pixels, POINT_SAMPLES, replace=False))
    pred, gt = pred_points.reshape(-1, 3)[pixels], gt_points.reshape(-1, 3)[pixels]
    if not np.isfinite(pred).all():
        warnings.warn(f"{sequence.group}/{sequence.name}: non-finite predicted points; no point metrics", stacklevel=2)
        return
    metrics = point_metrics(pred, gt)
    group.point_accuracy.append(metrics.accuracy)
    group.point_completeness.append(metrics.completeness)
    group.point_overall.append(metrics.overall)


@torch.no_grad()
def evaluate_sequence(
    model: VGGT,
    sequence: EvalSequence,
    device: torch.device,
    dtype: torch.dtype,
    resolution: int,
    group: GroupResult,
    with_points: bool = True,
) -> None:
    """Predict the sequence's frames in drawn order and add its pair errors, depth and point metrics to `group`."""
    images, transforms = load_and_preprocess_images_with_transforms(sequence.image_paths, "crop", resolution)
    with autocast(device, dtype):
        output = model(images.to(device))
    extrinsic, intrinsic = pose_encoding_to_extri_intri(output["pose_enc"].float(), images.shape[-2:])
    rotation, translation = relative_pose_errors(extrinsic[0], sequence.extrinsics)
    group.sequences += 1
    group.rotation_deg.append(rotation)
    group.translation_deg.append(translation)
    if sequence.depth_readers is None:
        return
    height, width = images.shape[-2:]
    original_depths = [read() for read in sequence.depth_readers]
    gt = np.stack([sample_at_model_pixels(d, t, height, width) for d, t in zip(original_depths, transforms)])
    if not (gt > 0).any():
        return
    metrics = depth_metrics(output["depth"][0, ..., 0], gt)
    valid = np.isfinite(metrics.per_frame_abs_rel)
    group.depth_abs_rel.extend(metrics.per_frame_abs_rel[valid].tolist())
    group.depth_delta.extend(metrics.per_frame_delta_1_25[valid].tolist())
    if not with_points or sequence.intrinsics is None:
        return
    gt_points = np.stack(
        [
            sample_at_model_pixels(unproject_depth_map_to_point_map(d[None], e[None], k[None])[0], t, height, width)
            for d, e, k, t in zip(original_depths, sequence.extrinsics, sequence.intrinsics, transforms)
        ]
    )
    if "world_points" in output:
        pred_points = output["world_points"][0].float().cpu().numpy()
    else:
        pred_points = unproject_depth_map_to_point_map(output["depth"][0], extrinsic[0], intrinsic[0])
    _add_point_metrics(pred_points, gt_points, gt > 0, sequence, group)


def evaluate(
    model: VGGT, sequences: Sequence[EvalSequence], device: torch.device, dtype: torch.dtype, resolution: int
) -> dict[str, GroupResult]:
    """Group results in the order the groups first appear; a progress bar over the sequences."""
    model = model.to_inference_device(device).eval()
    with_points = scipy_available()
    if not with_points and any(s.intrinsics is not None and s.depth_readers for s in sequences):
        warnings.warn("point metrics need scipy (pip install scipy); evaluating without them", stacklevel=2)
    groups: dict[str, GroupResult] = {}
    for sequence in tqdm(sequences, desc="evaluating", unit="sequence"):
        group = groups.setdefault(sequence.group, GroupResult())
        evaluate_sequence(model, sequence, device, dtype, resolution, group, with_points)
    return groups


def mean_over_groups(rows: dict[str, dict[str, float | int | None]]) -> dict[str, float | None]:
    """The mean of each metric over the groups that have it (AUCs, median errors, depth)."""
    keys = [key for key in next(iter(rows.values())) if key not in ("sequences", "pairs")]
    mean: dict[str, float | None] = {}
    for key in keys:
        values = [row[key] for row in rows.values() if row[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean

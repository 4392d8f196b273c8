"""First-camera, unit-mean-distance normalisation of a batch's ground truth (runs on any device, float32).

Every sequence is re-expressed in its first camera's frame and divided by the mean distance of its valid
points to that camera's centre, so the network is supervised in a frame and scale it can infer from the images.
"""

from __future__ import annotations

import torch

from training.utils.sanitize import finite_or_zero
from vggt.utils.geometry import closed_form_inverse_se3

_SCALE_MIN = 1e-6
_SCALE_MAX = 1e6
_COUNT_EPS = 1e-3  # keeps a sequence without valid points finite (its scale then clamps to _SCALE_MIN)


def _mean_point_distance(world_points: torch.Tensor, point_masks: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean norm of the valid points [B, S, H, W, 3] -> [B], clamped to a usable range."""
    mask = point_masks.to(world_points.dtype)
    distance_sum = (world_points.norm(dim=-1) * mask).sum(dim=(1, 2, 3))
    count = mask.sum(dim=(1, 2, 3))
    return (distance_sum / (count + _COUNT_EPS)).clamp(_SCALE_MIN, _SCALE_MAX)


def normalize_camera_extrinsics_and_points_batch(
    extrinsics: torch.Tensor,
    cam_points: torch.Tensor | None = None,
    world_points: torch.Tensor | None = None,
    depths: torch.Tensor | None = None,
    point_masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Express each sequence in its first camera's frame and scale it to unit mean point distance.

    Args:
        extrinsics: camera-from-world [B, S, 3, 4].
        cam_points: camera-frame points [B, S, H, W, 3] or None.
        world_points: world points [B, S, H, W, 3] or None.
        depths: [B, S, H, W] or None.
        point_masks: valid pixels [B, S, H, W] bool or None.

    Returns:
        (extrinsics [B, S, 3, 4] with E_0 = [I | 0], cam_points, world_points, depths), float32, non-finite -> 0;
        a None input stays None. The scale needs both `world_points` and `point_masks`; without either, only the
        rigid change of frame is applied (scale 1), which is what a cameras-only dataset can be given.
    """
    extrinsics = extrinsics.float()
    batch = extrinsics.shape[0]
    first_inv = closed_form_inverse_se3(extrinsics[:, 0])  # [B, 4, 4] world-from-camera-0
    # E_i * E_0^-1 restricted to its top 3 rows: [R_i | t_i] [[R_0^T, -R_0^T t_0], [0, 1]].
    new_extrinsics = torch.matmul(extrinsics, first_inv.unsqueeze(1))

    new_world = None
    if world_points is not None:
        rotation0 = extrinsics[:, 0, :, :3].reshape(batch, 1, 1, 1, 3, 3)
        translation0 = extrinsics[:, 0, :, 3].reshape(batch, 1, 1, 1, 3)
        new_world = torch.matmul(rotation0, world_points.float().unsqueeze(-1)).squeeze(-1) + translation0

    new_cam = cam_points.float() if cam_points is not None else None
    new_depths = depths.float() if depths is not None else None
    if new_world is not None and point_masks is not None:
        scale = _mean_point_distance(new_world, point_masks)
        new_world = new_world / scale.view(batch, 1, 1, 1, 1)
        translation = new_extrinsics[..., 3:] / scale.view(batch, 1, 1, 1)
        new_extrinsics = torch.cat((new_extrinsics[..., :3], translation), dim=-1)
        if new_cam is not None:
            new_cam = new_cam / scale.view(batch, 1, 1, 1, 1)
        if new_depths is not None:
            new_depths = new_depths / scale.view(batch, 1, 1, 1)
    outputs = (new_extrinsics, new_cam, new_world, new_depths)
    extrinsics_out, cam_out, world_out, depths_out = (None if t is None else finite_or_zero(t) for t in outputs)
    return extrinsics_out, cam_out, world_out, depths_out

"""Rigid-transform inversion and depth-map unprojection."""

from __future__ import annotations

import numpy as np
import torch


def closed_form_inverse_se3(se3: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Invert rigid transforms [N, 3, 4] or [N, 4, 4] -> [N, 4, 4] as [R^T | -R^T t].

    Returns the same array type, dtype and device as the input; no general matrix inverse is used, so it is exact
    for rotations and safe on accelerators.
    """
    if se3.ndim != 3 or tuple(se3.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"closed_form_inverse_se3 expects shape [N, 3, 4] or [N, 4, 4], got {tuple(se3.shape)}")
    rotation = se3[:, :3, :3]
    translation = se3[:, :3, 3:]
    if isinstance(se3, torch.Tensor):
        rotation_t = rotation.transpose(1, 2)
        top = torch.cat((rotation_t, -torch.matmul(rotation_t, translation)), dim=-1)
        bottom = torch.zeros_like(se3[:, :1, :])
        bottom[:, :, 3] = 1
        return torch.cat((top, bottom), dim=1)
    rotation_t = np.transpose(rotation, (0, 2, 1))
    top = np.concatenate((rotation_t, -np.matmul(rotation_t, translation)), axis=-1)
    bottom = np.zeros_like(se3[:, :1, :])
    bottom[:, :, 3] = 1
    return np.concatenate((top, bottom), axis=1)


def _to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """Host float32 copy of a NumPy array or a torch tensor on any device."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # NumPy has no bfloat16; widen half types on the torch side first.
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()
        array = array.numpy()
    return np.asarray(array, dtype=np.float32)


def _validated_inputs(
    depth_map: np.ndarray | torch.Tensor,
    extrinsics_cam: np.ndarray | torch.Tensor,
    intrinsics_cam: np.ndarray | torch.Tensor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host copies as (depth [S, H, W], extrinsics [S, 3|4, 4], intrinsics [S, 3, 3]), or a ValueError."""
    depth = _to_numpy(depth_map)
    extrinsics = _to_numpy(extrinsics_cam)
    intrinsics = _to_numpy(intrinsics_cam)
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    elif depth.ndim != 3:
        raise ValueError(f"depth_map must have shape [S, H, W, 1] or [S, H, W], got {depth.shape}")
    frames = depth.shape[0]
    if extrinsics.shape not in ((frames, 3, 4), (frames, 4, 4)):
        raise ValueError(
            f"extrinsics_cam must have shape [S, 3, 4] or [S, 4, 4] with S={frames} (from depth_map), "
            f"got {extrinsics.shape}"
        )
    if intrinsics.shape != (frames, 3, 3):
        raise ValueError(
            f"intrinsics_cam must have shape [S, 3, 3] with S={frames} (from depth_map), got {intrinsics.shape}"
        )
    skew = np.abs(intrinsics[:, [0, 1], [1, 0]]).max(initial=0.0)
    if skew != 0:
        raise ValueError(f"intrinsics_cam must have zero skew (K[0, 1] == K[1, 0] == 0), got |skew| up to {skew:g}")
    return depth, extrinsics, intrinsics


def depth_to_camera_points(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Z-depth [S, H, W] -> camera-frame points [S, H, W, 3], pixel (v, u) at integer coordinates (no +0.5)."""
    _, height, width = depth.shape
    v, u = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    fx, fy = intrinsics[:, 0, 0, None, None], intrinsics[:, 1, 1, None, None]
    cx, cy = intrinsics[:, 0, 2, None, None], intrinsics[:, 1, 2, None, None]
    return np.stack(((u - cx) * depth / fx, (v - cy) * depth / fy, depth), axis=-1)


def unproject_depth_map_to_point_map(
    depth_map: np.ndarray | torch.Tensor,
    extrinsics_cam: np.ndarray | torch.Tensor,
    intrinsics_cam: np.ndarray | torch.Tensor,
) -> np.ndarray:
    """Lift per-pixel depth to world points.

    Args:
        depth_map: [S, H, W, 1] or [S, H, W] z-depth in the camera frame (NumPy or torch, any device).
        extrinsics_cam: camera-from-world [S, 3, 4] (OpenCV convention).
        intrinsics_cam: pinhole [S, 3, 3] with zero skew.

    Returns:
        float32 NumPy array [S, H, W, 3] of world points; pixel (v, u) is sampled at integer coordinates.
    """
    depth, extrinsics, intrinsics = _validated_inputs(depth_map, extrinsics_cam, intrinsics_cam)
    cam_points = depth_to_camera_points(depth, intrinsics)
    world_from_cam = closed_form_inverse_se3(extrinsics)
    world_points = np.einsum("sij,shwj->shwi", world_from_cam[:, :3, :3], cam_points)
    world_points += world_from_cam[:, None, None, :3, 3]
    return world_points

"""Camera extrinsics/intrinsics <-> the 9-d "absT_quaR_FoV" pose encoding predicted by the camera head.

Encoding layout: [T (3) | quaternion XYZW (4) | fov_h | fov_w]. Extrinsics are OpenCV camera-from-world [R | T];
intrinsics are pinhole with the principal point at the image centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vggt.utils.rotation import mat_to_quat, quat_to_mat

_SUPPORTED_TYPES = ("absT_quaR_FoV",)
_ENCODING_DIM = 9


def _check_encoding_type(pose_encoding_type: str) -> None:
    if pose_encoding_type not in _SUPPORTED_TYPES:
        raise ValueError(f"Unknown pose_encoding_type {pose_encoding_type!r}; supported: {', '.join(_SUPPORTED_TYPES)}")


def _image_hw(image_size_hw: Sequence[int] | torch.Tensor | None, purpose: str) -> tuple[float, float]:
    """(H, W) as Python floats so the FoV arithmetic stays in the tensors' own dtype."""
    if image_size_hw is None:
        raise ValueError(f"image_size_hw=(H, W) is required to {purpose}")
    if len(image_size_hw) != 2:
        raise ValueError(f"image_size_hw must be (H, W), got {image_size_hw!r}")
    height, width = (float(v) for v in image_size_hw)
    return height, width


def _check_trailing_shape(name: str, tensor: torch.Tensor, allowed: tuple[tuple[int, ...], ...]) -> None:
    trailing = tuple(tensor.shape[-len(allowed[0]) :])
    if tensor.dim() < len(allowed[0]) or trailing not in allowed:
        wanted = " or ".join(f"[..., {', '.join(map(str, shape))}]" for shape in allowed)
        raise ValueError(f"{name} must have shape {wanted}, got {tuple(tensor.shape)}")


def extri_intri_to_pose_encoding(
    extrinsics: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size_hw: Sequence[int] | torch.Tensor | None = None,
    pose_encoding_type: str = "absT_quaR_FoV",
) -> torch.Tensor:
    """Cameras -> pose encoding.

    Args:
        extrinsics: camera-from-world [B, S, 3, 4] (a [B, S, 4, 4] homogeneous matrix is also accepted).
        intrinsics: pinhole matrices [B, S, 3, 3]; only the focal lengths are used.
        image_size_hw: (H, W) of the images the intrinsics refer to.
        pose_encoding_type: only "absT_quaR_FoV".

    Returns:
        float32 [B, S, 9] = [T, quaternion XYZW with w >= 0, fov_h, fov_w].
    """
    _check_encoding_type(pose_encoding_type)
    _check_trailing_shape("extrinsics", extrinsics, ((3, 4), (4, 4)))
    _check_trailing_shape("intrinsics", intrinsics, ((3, 3),))
    height, width = _image_hw(image_size_hw, "convert focal lengths to fields of view")

    quat = mat_to_quat(extrinsics[..., :3, :3])
    translation = extrinsics[..., :3, 3]
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat((translation, quat, fov_h.unsqueeze(-1), fov_w.unsqueeze(-1)), dim=-1).float()


def _intrinsics_from_fov(fov_h: torch.Tensor, fov_w: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """Fields of view [...] -> pinhole matrices [..., 3, 3] centred on the image."""
    fy = (height / 2) / torch.tan(fov_h / 2)
    fx = (width / 2) / torch.tan(fov_w / 2)
    zero = torch.zeros_like(fx)
    one = torch.ones_like(fx)
    rows = (
        torch.stack((fx, zero, zero + width / 2), dim=-1),
        torch.stack((zero, fy, zero + height / 2), dim=-1),
        torch.stack((zero, zero, one), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def pose_encoding_to_extri_intri(
    pose_encoding: torch.Tensor,
    image_size_hw: Sequence[int] | torch.Tensor | None = None,
    pose_encoding_type: str = "absT_quaR_FoV",
    build_intrinsics: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pose encoding [B, S, 9] -> (extrinsics [B, S, 3, 4], intrinsics [B, S, 3, 3] or None).

    The quaternion need not be unit length. `image_size_hw` is only required when `build_intrinsics` is True;
    the principal point is placed at (W/2, H/2). Outputs keep the encoding's dtype and device.
    """
    _check_encoding_type(pose_encoding_type)
    if pose_encoding.dim() < 1 or pose_encoding.shape[-1] != _ENCODING_DIM:
        raise ValueError(f"pose_encoding must have shape [..., {_ENCODING_DIM}], got {tuple(pose_encoding.shape)}")

    translation = pose_encoding[..., :3]
    rotation = quat_to_mat(pose_encoding[..., 3:7])
    extrinsics = torch.cat((rotation, translation.unsqueeze(-1)), dim=-1)
    if not build_intrinsics:
        return extrinsics, None

    height, width = _image_hw(image_size_hw, "build intrinsics (or pass build_intrinsics=False)")
    intrinsics = _intrinsics_from_fov(pose_encoding[..., 7], pose_encoding[..., 8], height, width)
    return extrinsics, intrinsics

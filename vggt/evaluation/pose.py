"""The published Co3D camera-pose protocol: relative pose errors over all frame pairs and their AUC.

For S frames the pairs are i < j in the order of torch.combinations (0-1, 0-2, ..., 1-2, ...). A pair's
relative pose is E_i @ inverse(E_j) of the 4x4 camera-from-world matrices, for prediction and ground
truth alike, so a similarity transform applied to every predicted camera (world rotation, translation
and scale) changes no error: rotations are compared directly, translations only by direction.
"""

from __future__ import annotations

import math

import numpy as np

from vggt.evaluation.host import HOST_DTYPE, ArrayLike, host_array

ERROR_CLAMP = 1e-15  # the protocol's floor on 1 - cos^2, so arccos never sees 1 + rounding
NORM_EPS = 1e-15  # added to |t| before normalising, as in the published code (a zero translation gives 90 deg)
NON_FINITE_ERROR_RAD = 1e6  # the protocol's stand-in for an undefined translation angle
AUC_THRESHOLDS = (30, 15, 5, 3)


def co3d_opencv_extrinsics(rotation: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """PyTorch3D camera R [..., 3, 3], T [..., 3] (Co3D test annotations) -> OpenCV camera-from-world [..., 3, 4].

    PyTorch3D maps row vectors x_cam = x_world @ R + T with x left and y up; OpenCV maps column vectors
    with x right and y down: flip the first two entries of T and the first two columns of R, transpose R.
    """
    rotation = host_array(rotation, "R")
    translation = host_array(translation, "T")
    if rotation.shape[-2:] != (3, 3) or translation.shape[-1:] != (3,) or rotation.shape[:-2] != translation.shape[:-1]:
        raise ValueError(f"R must be [..., 3, 3] and T [..., 3] with equal leading shapes, got {rotation.shape} and "
                         f"{translation.shape}")  # fmt: skip
    flip = np.array([-1.0, -1.0, 1.0], dtype=HOST_DTYPE)
    rotation_cv = np.swapaxes(rotation * flip, -1, -2)  # columns flipped, then transposed
    return np.concatenate([rotation_cv, (translation * flip)[..., None]], axis=-1)


def _homogeneous(extrinsics: np.ndarray, name: str) -> np.ndarray:
    """[S, 3, 4] or [S, 4, 4] -> [S, 4, 4]."""
    if extrinsics.ndim != 3 or extrinsics.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(f"{name} must be [S, 3, 4] or [S, 4, 4] camera-from-world matrices, got {extrinsics.shape}")
    full = np.zeros((extrinsics.shape[0], 4, 4), dtype=HOST_DTYPE)
    full[:, :3] = extrinsics[:, :3]
    full[:, 3, 3] = 1.0
    return full


def frame_pairs(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of every pair i < j, in torch.combinations order: [P] each, P = S (S - 1) / 2."""
    first, second = np.triu_indices(num_frames, k=1)  # row-major upper triangle: (0, 1), (0, 2), ..., (1, 2), ...
    return first, second


def _rigid_inverse(poses: np.ndarray) -> np.ndarray:
    """[N, 4, 4] rigid transforms -> their inverses, [R^T | -R^T t]."""
    rotation_t = np.swapaxes(poses[:, :3, :3], -1, -2)
    inverse = np.zeros_like(poses)
    inverse[:, :3, :3] = rotation_t
    inverse[:, :3, 3] = -np.einsum("nij,nj->ni", rotation_t, poses[:, :3, 3])
    inverse[:, 3, 3] = 1.0
    return inverse


def relative_poses(extrinsics: np.ndarray) -> np.ndarray:
    """[S, 4, 4] camera-from-world -> [P, 4, 4] E_i @ inverse(E_j) for the pairs of frame_pairs."""
    first, second = frame_pairs(len(extrinsics))
    return extrinsics[first] @ _rigid_inverse(extrinsics[second])


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] -> unit quaternions (w, x, y, z) [N, 4], up to sign.

    Each quaternion is read from the largest of its four squared components (4 w^2 = 1 + trace, ...), the
    numerically safe branch, then normalised.
    """
    m = rotation
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    squares = np.stack(
        [1 + trace, 1 + 2 * m[:, 0, 0] - trace, 1 + 2 * m[:, 1, 1] - trace, 1 + 2 * m[:, 2, 2] - trace], axis=1
    )  # 4 w^2, 4 x^2, 4 y^2, 4 z^2
    # candidate k holds 4 q_k q_l for every l; dividing by 4 q_k = 2 sqrt(squares[k]) gives q
    candidates = np.stack(
        [
            np.stack([squares[:, 0], m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], 1),
            np.stack([m[:, 2, 1] - m[:, 1, 2], squares[:, 1], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], 1),
            np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], squares[:, 2], m[:, 1, 2] + m[:, 2, 1]], 1),
            np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], squares[:, 3]], 1),
        ],
        axis=1,
    )  # [N, 4 candidates, 4 components]
    best = np.argmax(squares, axis=1)
    quaternion = candidates[np.arange(len(m)), best]
    norm = np.linalg.norm(quaternion, axis=1, keepdims=True)
    return quaternion / np.where(norm > 0, norm, 1.0)


def rotation_errors_deg(pred_rotation: np.ndarray, gt_rotation: np.ndarray) -> np.ndarray:
    """Angle between rotations [N, 3, 3] in degrees: arccos(1 - 2 max(1 - (q . q')^2, 1e-15))."""
    dot = np.sum(rotation_to_quaternion(pred_rotation) * rotation_to_quaternion(gt_rotation), axis=1)
    gap = np.maximum(1.0 - dot**2, ERROR_CLAMP)
    return np.degrees(np.arccos(1.0 - 2.0 * gap))


def translation_errors_deg(pred_translation: np.ndarray, gt_translation: np.ndarray) -> np.ndarray:
    """Angle between translation directions [N, 3] in degrees, sign-agnostic: min(e, |180 - e|).

    arccos(sqrt(1 - max(1 - (t . t')^2, 1e-15))) of the normalised vectors; non-finite results count as 1e6 rad.
    """
    pred = pred_translation / (np.linalg.norm(pred_translation, axis=1, keepdims=True) + NORM_EPS)
    gt = gt_translation / (np.linalg.norm(gt_translation, axis=1, keepdims=True) + NORM_EPS)
    gap = np.maximum(1.0 - np.sum(pred * gt, axis=1) ** 2, ERROR_CLAMP)
    with np.errstate(invalid="ignore"):  # NaN inputs become the 1e6 rad error below
        radians = np.arccos(np.sqrt(1.0 - gap))
    radians = np.where(np.isfinite(radians), radians, NON_FINITE_ERROR_RAD)
    degrees = np.degrees(radians)
    return np.minimum(degrees, np.abs(180.0 - degrees))


def relative_pose_errors(pred_extrinsics: ArrayLike, gt_extrinsics: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Pose errors of every frame pair: (rotation [P], translation direction [P]) in degrees, double precision.

    pred_extrinsics, gt_extrinsics: [S, 3, 4] (or [S, 4, 4]) OpenCV camera-from-world, NumPy or torch. P = S (S - 1)
    / 2, pairs in frame_pairs order.
    """
    pred = _homogeneous(host_array(pred_extrinsics, "pred_extrinsics"), "pred_extrinsics")
    gt = _homogeneous(host_array(gt_extrinsics, "gt_extrinsics"), "gt_extrinsics")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_extrinsics has {len(pred)} frames but gt_extrinsics {len(gt)}; they must match")
    if len(pred) < 2:
        raise ValueError(f"relative pose errors need at least 2 frames, got {len(pred)}")
    pred_relative, gt_relative = relative_poses(pred), relative_poses(gt)
    rotation = rotation_errors_deg(pred_relative[:, :3, :3], gt_relative[:, :3, :3])
    translation = translation_errors_deg(pred_relative[:, :3, 3], gt_relative[:, :3, 3])
    return rotation, translation


def pose_auc(rotation_deg: ArrayLike, translation_deg: ArrayLike, max_threshold: int) -> float:
    """AUC in percent of max(rotation, translation) error per pair, over 1-degree bins up to `max_threshold`.

    Histogram over [0, 1), [1, 2), ..., [tau - 1, tau] (last bin closed), divided by the number of pairs,
    AUC = mean of its cumulative sum. Non-finite errors count as failures.
    """
    rotation = host_array(rotation_deg, "rotation_deg").reshape(-1)
    translation = host_array(translation_deg, "translation_deg").reshape(-1)
    if rotation.shape != translation.shape:
        raise ValueError(f"rotation_deg has {rotation.size} errors but translation_deg {translation.size}")
    if rotation.size == 0:
        raise ValueError("pose_auc needs at least one pair")
    if isinstance(max_threshold, bool) or int(max_threshold) != max_threshold or max_threshold < 1:
        raise ValueError(f"max_threshold must be a positive whole number of degrees, got {max_threshold!r}")
    errors = np.maximum(rotation, translation)
    errors = np.where(np.isnan(errors), math.inf, errors)
    histogram, _ = np.histogram(errors, bins=np.arange(int(max_threshold) + 1))
    return float(np.mean(np.cumsum(histogram / errors.size)) * 100.0)

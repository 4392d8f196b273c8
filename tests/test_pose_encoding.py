"""Pose encoding and quaternion conversions, checked against upstream numbers and closed-form rotations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import assert_close_to_reference
from vggt.utils.pose_enc import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri
from vggt.utils.rotation import mat_to_quat, quat_to_mat

FIXTURES = Path(__file__).parent / "fixtures"
POSE_TOL = 1e-5  # absolute, for encodings and extrinsics (|values| < 3, so 1e-5 is over 40 float32 steps)
# Focal lengths (255 to 3184) are (size / 2) / tan(fov / 2): float32 tan differs by a step or two across CPUs.
FOCAL_ULPS = 8


@pytest.fixture(scope="module")
def pose() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "pose.npz") as data:
        return {key: data[key] for key in data.files}


def _image_hw(pose: dict[str, np.ndarray]) -> tuple[int, int]:
    return int(pose["image_hw"][0]), int(pose["image_hw"][1])


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about unit `axis` by `angle`, float64: I + sin(a) K + (1 - cos(a)) K^2."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _axis_angle_quat_xyzw(axis: np.ndarray, angle: float) -> np.ndarray:
    return np.append(math.sin(angle / 2) * axis, math.cos(angle / 2))


def _random_axis_angles(count: int, seed: int) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0.0, math.pi, size=count)
    return list(zip(axes, angles))


def _max_abs(actual: torch.Tensor, expected: np.ndarray) -> float:
    return float(np.abs(actual.numpy().astype(np.float64) - expected).max())


def test_encoding_matches_upstream_fixture(pose):
    encoding = extri_intri_to_pose_encoding(
        torch.from_numpy(pose["extrinsics"]), torch.from_numpy(pose["intrinsics"]), _image_hw(pose)
    )
    assert encoding.dtype == torch.float32
    assert encoding.shape == pose["pose_enc"].shape
    assert _max_abs(encoding, pose["pose_enc"]) <= POSE_TOL


@pytest.mark.parametrize("prefix", ["", "noisy_"])
def test_decoding_matches_upstream_fixture(pose, prefix):
    extrinsics, intrinsics = pose_encoding_to_extri_intri(torch.from_numpy(pose[f"{prefix}pose_enc"]), _image_hw(pose))
    assert extrinsics.shape == pose[f"{prefix}decoded_extrinsics"].shape
    assert intrinsics.shape == pose[f"{prefix}decoded_intrinsics"].shape
    assert _max_abs(extrinsics, pose[f"{prefix}decoded_extrinsics"]) <= POSE_TOL
    # scale=0: each entry of K is its own quantity, and its zeros and ones are set, not computed
    assert_close_to_reference(
        intrinsics, pose[f"{prefix}decoded_intrinsics"], ulps=FOCAL_ULPS, scale=0.0, what=f"{prefix}decoded_intrinsics"
    )


def test_encode_then_decode_recovers_the_input_cameras(pose):
    hw = _image_hw(pose)
    encoding = extri_intri_to_pose_encoding(
        torch.from_numpy(pose["extrinsics"]), torch.from_numpy(pose["intrinsics"]), hw
    )
    extrinsics, intrinsics = pose_encoding_to_extri_intri(encoding, hw)
    assert _max_abs(extrinsics, pose["extrinsics"]) <= POSE_TOL
    # The fixture's principal points are already at the image centre, so K round-trips exactly.
    np.testing.assert_allclose(intrinsics.numpy(), pose["intrinsics"], rtol=1e-6, atol=POSE_TOL)


def test_decoded_intrinsics_follow_the_fov_formula_with_centred_principal_point(pose):
    height, width = _image_hw(pose)
    encoding = pose["noisy_pose_enc"].astype(np.float64)
    _, intrinsics = pose_encoding_to_extri_intri(torch.from_numpy(pose["noisy_pose_enc"]), (height, width))
    k = intrinsics.numpy()
    np.testing.assert_allclose(k[..., 1, 1], (height / 2) / np.tan(encoding[..., 7] / 2), rtol=1e-6)
    np.testing.assert_allclose(k[..., 0, 0], (width / 2) / np.tan(encoding[..., 8] / 2), rtol=1e-6)
    assert np.all(k[..., 0, 2] == width / 2) and np.all(k[..., 1, 2] == height / 2)
    assert np.all(k[..., 2, 2] == 1) and np.all(k[..., [0, 1, 2, 2], [1, 0, 0, 1]] == 0)


def test_encoded_fov_is_twice_atan_of_half_size_over_focal(pose):
    height, width = _image_hw(pose)
    encoding = extri_intri_to_pose_encoding(
        torch.from_numpy(pose["extrinsics"]), torch.from_numpy(pose["intrinsics"]), (height, width)
    ).numpy()
    k = pose["intrinsics"].astype(np.float64)
    np.testing.assert_allclose(encoding[..., 7], 2 * np.arctan((height / 2) / k[..., 1, 1]), atol=1e-6)
    np.testing.assert_allclose(encoding[..., 8], 2 * np.arctan((width / 2) / k[..., 0, 0]), atol=1e-6)
    np.testing.assert_array_equal(encoding[..., :3], pose["extrinsics"][..., :3, 3])  # exact: copied, not computed


def test_decoding_without_intrinsics_needs_no_image_size(pose):
    extrinsics, intrinsics = pose_encoding_to_extri_intri(torch.from_numpy(pose["pose_enc"]), build_intrinsics=False)
    assert intrinsics is None
    assert _max_abs(extrinsics, pose["decoded_extrinsics"]) <= POSE_TOL


def test_quat_to_mat_matches_rodrigues_rotation():
    cases = _random_axis_angles(64, seed=0)
    quats = torch.tensor(np.stack([_axis_angle_quat_xyzw(a, t) for a, t in cases]), dtype=torch.float32)
    expected = np.stack([_rodrigues(a, t) for a, t in cases])
    assert _max_abs(quat_to_mat(quats), expected) < 1e-6


def test_quat_to_mat_ignores_quaternion_scale():
    axis, angle = _random_axis_angles(1, seed=1)[0]
    quat = torch.tensor(_axis_angle_quat_xyzw(axis, angle), dtype=torch.float32)
    assert _max_abs(quat_to_mat(3.7 * quat), _rodrigues(axis, angle)) < 1e-6


def test_mat_to_quat_recovers_axis_angle_quaternion_with_nonnegative_w():
    cases = _random_axis_angles(64, seed=2) + [(np.array([0.0, 0.0, 1.0]), 0.0), (np.array([0.6, 0.0, 0.8]), 3.1)]
    matrices = torch.tensor(np.stack([_rodrigues(a, t) for a, t in cases]), dtype=torch.float32)
    # Angles lie in [0, pi], so cos(angle / 2) >= 0 already is the standardised sign.
    expected = np.stack([_axis_angle_quat_xyzw(a, t) for a, t in cases])
    quats = mat_to_quat(matrices)
    assert torch.all(quats[:, 3] >= 0)
    assert _max_abs(quats, expected) < 1e-5


@pytest.mark.parametrize("axis", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.6, -0.8)])
def test_mat_to_quat_handles_half_turns_where_w_vanishes(axis):
    axis = np.array(axis)
    quat = mat_to_quat(torch.tensor(_rodrigues(axis, math.pi), dtype=torch.float32))
    assert abs(float(quat[3])) < 1e-6
    # At w = 0 the sign is a convention, so compare up to sign.
    assert abs(abs(float(np.dot(quat.numpy(), np.append(axis, 0.0)))) - 1) < 1e-6


def test_rotation_round_trip_is_orthonormal_and_keeps_batch_shape():
    cases = _random_axis_angles(30, seed=3)
    matrices = torch.tensor(np.stack([_rodrigues(a, t) for a, t in cases]), dtype=torch.float32).reshape(2, 3, 5, 3, 3)
    quats = mat_to_quat(matrices)
    assert quats.shape == (2, 3, 5, 4)
    np.testing.assert_allclose(quats.norm(dim=-1).numpy(), 1.0, atol=1e-6)
    rebuilt = quat_to_mat(quats)
    assert float((rebuilt - matrices).abs().max()) < 1e-6
    eye = torch.eye(3).expand_as(rebuilt)
    assert float((rebuilt @ rebuilt.transpose(-1, -2) - eye).abs().max()) < 1e-6
    np.testing.assert_allclose(torch.linalg.det(rebuilt).numpy(), 1.0, atol=1e-6)


def test_mat_to_quat_gradient_is_finite_at_identity():
    matrix = torch.eye(3, requires_grad=True)
    mat_to_quat(matrix).sum().backward()
    assert torch.isfinite(matrix.grad).all()


def test_unknown_pose_encoding_type_is_rejected(pose):
    extrinsics, intrinsics = torch.from_numpy(pose["extrinsics"]), torch.from_numpy(pose["intrinsics"])
    with pytest.raises(ValueError, match="Unknown pose_encoding_type 'relT_quaR_FoV'.*absT_quaR_FoV"):
        extri_intri_to_pose_encoding(extrinsics, intrinsics, (294, 518), pose_encoding_type="relT_quaR_FoV")
    with pytest.raises(ValueError, match="Unknown pose_encoding_type 'relT_quaR_FoV'"):
        pose_encoding_to_extri_intri(torch.zeros(1, 2, 9), (294, 518), pose_encoding_type="relT_quaR_FoV")


def test_wrong_camera_matrix_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"extrinsics must have shape .*got \(1, 2, 3, 3\)"):
        extri_intri_to_pose_encoding(torch.zeros(1, 2, 3, 3), torch.eye(3).expand(1, 2, 3, 3), (10, 10))
    with pytest.raises(ValueError, match=r"intrinsics must have shape \[\.\.\., 3, 3\], got \(1, 2, 4, 4\)"):
        extri_intri_to_pose_encoding(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 4, 4), (10, 10))


def test_encoding_with_wrong_last_dim_is_rejected():
    with pytest.raises(ValueError, match=r"pose_encoding must have shape \[\.\.\., 9\], got \(1, 2, 8\)"):
        pose_encoding_to_extri_intri(torch.zeros(1, 2, 8), (10, 10))


def test_missing_image_size_is_rejected_when_intrinsics_are_involved(pose):
    with pytest.raises(ValueError, match=r"image_size_hw=\(H, W\) is required"):
        extri_intri_to_pose_encoding(torch.from_numpy(pose["extrinsics"]), torch.from_numpy(pose["intrinsics"]))
    with pytest.raises(ValueError, match="build_intrinsics=False"):
        pose_encoding_to_extri_intri(torch.from_numpy(pose["pose_enc"]))
    with pytest.raises(ValueError, match=r"image_size_hw must be \(H, W\), got \(294, 518, 3\)"):
        pose_encoding_to_extri_intri(torch.from_numpy(pose["pose_enc"]), (294, 518, 3))


def test_mat_to_quat_rejects_non_3x3_input():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\], got \(2, 3, 4\)"):
        mat_to_quat(torch.zeros(2, 3, 4))

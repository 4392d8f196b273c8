"""The Co3D pose protocol against hand-computed errors and independent constructions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vggt.evaluation import co3d_opencv_extrinsics, frame_pairs, pose_auc, relative_pose_errors

ERROR_FLOOR_DEG = 1e-5  # the protocol's 1e-15 clamp leaves about 3.6e-6 degrees for identical poses


def axis_angle(axis, degrees: float) -> np.ndarray:
    """Rodrigues' formula: rotation [3, 3] by `degrees` about `axis`."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    theta = math.radians(degrees)
    return np.eye(3) + math.sin(theta) * cross + (1 - math.cos(theta)) * cross @ cross


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return axis_angle(rng.normal(size=3), rng.uniform(0, 180))


def extrinsic(rotation: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Camera-from-world [3, 4] of a camera at world position `center`."""
    return np.concatenate([rotation, -(rotation @ center)[:, None]], axis=1)


def random_cameras(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.stack([extrinsic(random_rotation(rng), rng.normal(size=3) * 3) for _ in range(count)])


def test_ground_truth_as_prediction_scores_100_and_zero_error():
    cameras = random_cameras(np.random.default_rng(0), 10)
    rotation, translation = relative_pose_errors(cameras, cameras)
    assert rotation.shape == translation.shape == (45,)
    assert rotation.max() < ERROR_FLOOR_DEG and translation.max() < ERROR_FLOOR_DEG
    for tau in (30, 15, 5, 3):
        assert pose_auc(rotation, translation, tau) == pytest.approx(100.0)


def test_similarity_transform_of_all_predicted_cameras_leaves_the_errors_unchanged():
    rng = np.random.default_rng(1)
    gt = random_cameras(rng, 8)
    pred = np.stack([extrinsic(axis_angle(rng.normal(size=3), 4) @ e[:, :3], rng.normal(size=3)) for e in gt])
    # the world moves by x' = s W x + c: a camera-from-world [R | t] becomes [R W^T | s t - R W^T c]
    world_rotation, scale, shift = random_rotation(rng), 3.7, rng.normal(size=3) * 5
    moved = np.stack(
        [np.concatenate([e[:, :3] @ world_rotation.T, (scale * e[:, 3] - e[:, :3] @ world_rotation.T @ shift)[:, None]],
                        axis=1) for e in pred]
    )  # fmt: skip
    before = relative_pose_errors(pred, gt)
    after = relative_pose_errors(moved, gt)
    assert before[0].min() > 0.1  # the prediction really is wrong
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)


@pytest.mark.parametrize("degrees", [0.01, 0.5, 7.0, 45.0, 120.0])
def test_rotating_one_camera_in_place_gives_that_angle_as_rotation_error(degrees):
    # camera 1 turns about its own centre: the relative rotation changes by `degrees`, the baseline not at all
    gt = np.stack([extrinsic(np.eye(3), np.zeros(3)), extrinsic(axis_angle([0, 1, 0], 30), np.array([2.0, 0, 1]))])
    turned = axis_angle([1, 2, 3], degrees) @ gt[1, :, :3]
    pred = np.stack([gt[0], extrinsic(turned, np.array([2.0, 0, 1]))])
    rotation, translation = relative_pose_errors(pred, gt)
    assert rotation[0] == pytest.approx(degrees, rel=1e-6, abs=ERROR_FLOOR_DEG)
    assert translation[0] < ERROR_FLOOR_DEG


@pytest.mark.parametrize(("degrees", "expected"), [(10.0, 10.0), (60.0, 60.0), (150.0, 30.0), (180.0, 0.0)])
def test_moving_a_camera_centre_gives_the_baseline_angle_folded_at_90_degrees(degrees, expected):
    # identity rotations: the relative translation of (0, 1) is camera 1's centre, so the error is the angle
    # between the two centres' directions, folded by min(e, |180 - e|)
    gt = np.stack([extrinsic(np.eye(3), np.zeros(3)), extrinsic(np.eye(3), np.array([1.0, 0, 0]))])
    moved = 2.5 * np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees)), 0])
    pred = np.stack([gt[0], extrinsic(np.eye(3), moved)])
    rotation, translation = relative_pose_errors(pred, gt)
    assert rotation[0] < ERROR_FLOOR_DEG
    assert translation[0] == pytest.approx(expected, abs=1e-5)


def test_pairs_follow_torch_combinations_order():
    rng = np.random.default_rng(2)
    gt = random_cameras(rng, 5)
    pred = gt.copy()
    pred[2, :, :3] = axis_angle([0, 0, 1], 5) @ gt[2, :, :3]  # only frame 2 is wrong
    rotation, _ = relative_pose_errors(pred, gt)
    expected_pairs = torch.combinations(torch.arange(5), r=2).tolist()
    assert [list(p) for p in zip(*frame_pairs(5))] == expected_pairs
    wrong = [2 in pair for pair in itertools.combinations(range(5), 2)]
    np.testing.assert_allclose(rotation[wrong], 5.0, rtol=1e-6)
    assert rotation[~np.array(wrong)].max() < ERROR_FLOOR_DEG


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(3)
    gt, pred = random_cameras(rng, 4), random_cameras(rng, 4)
    from_numpy = relative_pose_errors(pred, gt)
    from_torch = relative_pose_errors(torch.from_numpy(pred).float(), torch.from_numpy(gt).float())
    np.testing.assert_allclose(from_torch[0], from_numpy[0], atol=1e-3)
    np.testing.assert_allclose(from_torch[1], from_numpy[1], atol=1e-3)


def test_non_finite_translation_counts_as_a_million_radians():
    gt = random_cameras(np.random.default_rng(4), 2)
    pred = gt.copy()
    pred[1, 0, 3] = np.nan
    _, translation = relative_pose_errors(pred, gt)
    assert translation[0] == pytest.approx(abs(180 - math.degrees(1e6)))


def test_co3d_conversion_maps_points_like_pytorch3d_with_x_and_y_flipped():
    # PyTorch3D: x_cam = x_world @ R + T in its (left, up, forward) axes; OpenCV's axes are (right, down, forward)
    rng = np.random.default_rng(5)
    rotation, translation = random_rotation(rng), rng.normal(size=3)
    points = rng.normal(size=(6, 3))
    pytorch3d_camera = points @ rotation + translation
    opencv = co3d_opencv_extrinsics(rotation, translation)
    assert opencv.shape == (3, 4)
    np.testing.assert_allclose(points @ opencv[:, :3].T + opencv[:, 3], pytorch3d_camera * [-1, -1, 1], atol=1e-12)
    batched = co3d_opencv_extrinsics(
        torch.from_numpy(np.stack([rotation] * 3)), torch.from_numpy(np.stack([translation] * 3))
    )
    assert batched.shape == (3, 3, 4)
    np.testing.assert_allclose(batched[1], opencv)


def test_auc_of_hand_built_error_lists():
    # max(rotation, translation) = [0.5, 2.9, 40]; tau 3 bins [0,1) [1,2) [2,3]: [1, 0, 1] / 3 -> cumsum mean 4/9
    assert pose_auc([0.5, 0.2, 40.0], [0.1, 2.9, 1.0], 3) == pytest.approx(100 * 4 / 9)
    # tau 5: [1, 0, 1, 0, 0] / 3 -> cumsum [1/3, 1/3, 2/3, 2/3, 2/3], mean 8/15
    assert pose_auc([0.5, 0.2, 40.0], [0.1, 2.9, 1.0], 5) == pytest.approx(100 * 8 / 15)
    # the last bin is closed: an error of exactly tau counts in it
    assert pose_auc([3.0], [0.0], 3) == pytest.approx(100 / 3)
    assert pose_auc([30.0], [0.0], 30) == pytest.approx(100 / 30)
    assert pose_auc([30.001], [0.0], 30) == 0.0
    # an error just under 1 degree fills every bin's cumulative share
    assert pose_auc(np.array([0.999, 0.0]), np.array([0.0, 0.0]), 30) == pytest.approx(100.0)


def test_auc_counts_nan_errors_as_failures():
    assert pose_auc([0.0, float("nan")], [0.0, 0.0], 3) == pytest.approx(50.0)


def test_auc_refuses_mismatched_or_empty_lists_and_bad_thresholds():
    with pytest.raises(ValueError, match="translation_deg"):
        pose_auc([1.0, 2.0], [1.0], 30)
    with pytest.raises(ValueError, match="at least one pair"):
        pose_auc([], [], 30)
    with pytest.raises(ValueError, match="max_threshold"):
        pose_auc([1.0], [1.0], 2.5)


def test_relative_pose_errors_refuse_mismatched_frames():
    cameras = random_cameras(np.random.default_rng(6), 3)
    with pytest.raises(ValueError, match="frames"):
        relative_pose_errors(cameras, cameras[:2])
    with pytest.raises(ValueError, match=r"\[S, 3, 4\]"):
        relative_pose_errors(cameras[:, :2], cameras[:, :2])

"""Depth unprojection and SE(3) inversion, checked by reprojecting through a hand-built pinhole camera."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vggt.utils.geometry import closed_form_inverse_se3, unproject_depth_map_to_point_map

FIXTURES = Path(__file__).parent / "fixtures"
FRAMES, HEIGHT, WIDTH = 3, 6, 8


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation about `axis` by `angle`, float64: I + sin(a) K + (1 - cos(a)) K^2."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _shape_pattern(shape: tuple[int, ...]) -> str:
    return r"\(" + r", ".join(str(size) for size in shape) + r"\)"


def _cameras(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (depth [S, H, W, 1], camera-from-world extrinsics [S, 3, 4], intrinsics [S, 3, 3])."""
    rng = np.random.default_rng(seed)
    rotations = [_rodrigues(rng.normal(size=3), rng.uniform(0.2, 2.5)) for _ in range(FRAMES)]
    translations = rng.normal(size=(FRAMES, 3, 1))
    extrinsics = np.concatenate((np.stack(rotations), translations), axis=-1)
    intrinsics = np.zeros((FRAMES, 3, 3))
    intrinsics[:, 0, 0] = rng.uniform(5, 9, FRAMES)
    intrinsics[:, 1, 1] = rng.uniform(5, 9, FRAMES)
    intrinsics[:, 0, 2] = rng.uniform(2, 5, FRAMES)
    intrinsics[:, 1, 2] = rng.uniform(2, 4, FRAMES)
    intrinsics[:, 2, 2] = 1
    depth = rng.uniform(1, 5, size=(FRAMES, HEIGHT, WIDTH, 1))
    return depth.astype(np.float32), extrinsics.astype(np.float32), intrinsics.astype(np.float32)


@pytest.mark.parametrize("group", ["batch_raw", "batch"])
def test_unprojection_matches_upstream_batch_world_points_on_valid_pixels(group):
    with np.load(FIXTURES / "loss.npz") as data:
        depths, extrinsics, intrinsics, world_points, masks = (
            data[f"{group}/{name}"] for name in ("depths", "extrinsics", "intrinsics", "world_points", "point_masks")
        )
    for depth, extrinsic, intrinsic, expected, mask in zip(depths, extrinsics, intrinsics, world_points, masks):
        world = unproject_depth_map_to_point_map(depth, extrinsic, intrinsic)
        # Invalid pixels are zeroed in the fixture, so only valid ones are comparable.
        assert mask.mean() > 0.5
        assert float(np.abs(world[mask] - expected[mask]).max()) <= 1e-5


def test_unprojected_points_reproject_to_their_pixels_and_depths():
    depth, extrinsics, intrinsics = _cameras()
    world = unproject_depth_map_to_point_map(depth, extrinsics, intrinsics)
    assert world.shape == (FRAMES, HEIGHT, WIDTH, 3) and world.dtype == np.float32

    ext = extrinsics.astype(np.float64)
    cam = np.einsum("sij,shwj->shwi", ext[:, :, :3], world.astype(np.float64)) + ext[:, None, None, :, 3]
    pixels = np.einsum("sij,shwj->shwi", intrinsics.astype(np.float64), cam)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    np.testing.assert_allclose(cam[..., 2], depth[..., 0], atol=1e-5)
    np.testing.assert_allclose(pixels[..., 0] / pixels[..., 2], np.broadcast_to(u, (FRAMES, HEIGHT, WIDTH)), atol=1e-4)
    np.testing.assert_allclose(pixels[..., 1] / pixels[..., 2], np.broadcast_to(v, (FRAMES, HEIGHT, WIDTH)), atol=1e-4)


def test_identity_camera_unprojects_integer_pixel_centres_without_half_offset():
    depth = np.full((1, HEIGHT, WIDTH), 2.0, dtype=np.float32)
    extrinsics = np.eye(3, 4, dtype=np.float32)[None]
    intrinsics = np.array([[[4.0, 0.0, 3.0], [0.0, 5.0, 2.0], [0.0, 0.0, 1.0]]], dtype=np.float32)
    world = unproject_depth_map_to_point_map(depth, extrinsics, intrinsics)
    # Pixel (v=4, u=7): x = (7 - 3) * 2 / 4, y = (4 - 2) * 2 / 5.
    np.testing.assert_allclose(world[0, 4, 7], [2.0, 0.8, 2.0], atol=1e-6)
    np.testing.assert_allclose(world[0, 2, 3], [0.0, 0.0, 2.0], atol=1e-6)


def test_torch_inputs_and_channelless_depth_give_the_same_points():
    depth, extrinsics, intrinsics = _cameras(seed=1)
    from_numpy = unproject_depth_map_to_point_map(depth, extrinsics, intrinsics)
    from_torch = unproject_depth_map_to_point_map(
        torch.from_numpy(depth[..., 0]), torch.from_numpy(extrinsics), torch.from_numpy(intrinsics)
    )
    assert isinstance(from_torch, np.ndarray) and from_torch.dtype == np.float32
    # exact: torch inputs become the same float32 arrays before any arithmetic, so the same ops run on them
    np.testing.assert_array_equal(from_torch, from_numpy)


def test_homogeneous_4x4_extrinsics_are_accepted():
    depth, extrinsics, intrinsics = _cameras(seed=2)
    homogeneous = np.concatenate((extrinsics, np.tile(np.array([[[0, 0, 0, 1]]], np.float32), (FRAMES, 1, 1))), axis=1)
    # exact: the bottom row is dropped before any arithmetic, so both run the same ops on the same numbers
    np.testing.assert_array_equal(
        unproject_depth_map_to_point_map(depth, homogeneous, intrinsics),
        unproject_depth_map_to_point_map(depth, extrinsics, intrinsics),
    )


def test_nonzero_skew_is_rejected():
    depth, extrinsics, intrinsics = _cameras()
    intrinsics[1, 0, 1] = 0.5
    with pytest.raises(ValueError, match=r"zero skew.*got \|skew\| up to 0.5"):
        unproject_depth_map_to_point_map(depth, extrinsics, intrinsics)


@pytest.mark.parametrize("shape", [(FRAMES, HEIGHT), (FRAMES, HEIGHT, WIDTH, 2)])
def test_bad_depth_shape_is_rejected_naming_it(shape):
    _, extrinsics, intrinsics = _cameras()
    with pytest.raises(ValueError, match=r"depth_map must have shape .*got " + _shape_pattern(shape)):
        unproject_depth_map_to_point_map(np.ones(shape, np.float32), extrinsics, intrinsics)


def test_camera_count_or_shape_mismatch_is_rejected_naming_it():
    depth, extrinsics, intrinsics = _cameras()
    with pytest.raises(ValueError, match=r"extrinsics_cam .*S=3 .*got \(2, 3, 4\)"):
        unproject_depth_map_to_point_map(depth, extrinsics[:2], intrinsics)
    with pytest.raises(ValueError, match=r"intrinsics_cam .*got \(3, 2, 3\)"):
        unproject_depth_map_to_point_map(depth, extrinsics, intrinsics[:, :2])


@pytest.mark.parametrize("rows", [3, 4])
def test_closed_form_inverse_undoes_the_transform_in_torch(rows):
    _, extrinsics, _ = _cameras(seed=3)
    se3 = torch.from_numpy(extrinsics)
    if rows == 4:
        se3 = torch.cat((se3, torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(FRAMES, 1, 4)), dim=1)
    inverse = closed_form_inverse_se3(se3)
    assert isinstance(inverse, torch.Tensor) and inverse.dtype == torch.float32 and inverse.shape == (FRAMES, 4, 4)
    homogeneous = torch.cat((se3[:, :3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(FRAMES, 1, 4)), dim=1)
    assert float((inverse @ homogeneous - torch.eye(4)).abs().max()) < 1e-6


def test_closed_form_inverse_keeps_numpy_type_and_maps_points_back():
    _, extrinsics, _ = _cameras(seed=4)
    inverse = closed_form_inverse_se3(extrinsics)
    assert isinstance(inverse, np.ndarray) and inverse.dtype == np.float32 and inverse.shape == (FRAMES, 4, 4)
    point = np.array([0.3, -1.2, 2.5])
    in_camera = extrinsics[:, :, :3] @ point + extrinsics[:, :, 3]
    back = np.einsum("sij,sj->si", inverse[:, :3, :3], in_camera) + inverse[:, :3, 3]
    np.testing.assert_allclose(back, np.broadcast_to(point, (FRAMES, 3)), atol=1e-5)
    np.testing.assert_array_equal(inverse[:, 3], np.broadcast_to([0, 0, 0, 1], (FRAMES, 4)))


def test_closed_form_inverse_rejects_non_rigid_shapes():
    with pytest.raises(ValueError, match=r"\[N, 3, 4\] or \[N, 4, 4\], got \(3, 3\)"):
        closed_form_inverse_se3(torch.eye(3))

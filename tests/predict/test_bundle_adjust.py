"""--ba: bundle adjustment of track-head correspondences, on exact synthetic tracks and end to end."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.predict.conftest import predict_args, run_cli
from vggt.predict.bundle_adjust import TrackSet, adjust_tracks
from vggt.utils.load_fn import PreprocessTransform

pycolmap = pytest.importorskip("pycolmap")

K = np.array([[100.0, 0, 56], [0, 100.0, 42], [0, 0, 1]])  # model pixels of a 112x84 image
TRANSFORM = PreprocessTransform((160, 120), (0.7, 0.7), (0.0, 0.0), (0, 0, 112, 84))


def rotation(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula."""
    angle = np.linalg.norm(axis_angle)
    if angle == 0:
        return np.eye(3)
    x, y, z = axis_angle / angle
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def project(xyz: np.ndarray, extrinsic: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Model pixel indices [S, N, 2] of world points [N, 3] (index convention: u = fx X / Z + cx)."""
    cam = np.einsum("sij,nj->sni", extrinsic[:, :, :3], xyz) + extrinsic[:, None, :, 3]
    return np.stack([k[0, 0] * cam[..., 0] / cam[..., 2] + k[0, 2], k[1, 1] * cam[..., 1] / cam[..., 2] + k[1, 2]], -1)


def model_errors(reconstruction, scale: tuple[float, float] = (0.7, 0.7)) -> list[float]:
    """Every sighting's reprojection error by our own projection, in model pixels (`scale` per original pixel)."""
    errors = []
    for point in reconstruction.points3D.values():
        for element in point.track.elements:
            image = reconstruction.images[element.image_id]
            fx, fy, cx, cy = reconstruction.cameras[image.camera_id].params
            pose = image.cam_from_world().matrix()
            x, y, z = pose[:, :3] @ point.xyz + pose[:, 3]
            residual = np.array([fx * x / z + cx, fy * y / z + cy]) - image.points2D[element.point2D_idx].xy
            errors.append(float(np.linalg.norm(residual * scale)))
    return errors


def test_adjustment_makes_exact_tracks_reproject_exactly_from_perturbed_cameras() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform([-1.5, -1, 3], [1.5, 1, 5], size=(300, 3))
    truth = np.stack(
        [np.hstack([rotation(np.array([0, 0.08 * s, 0.02 * s])), [[-0.4 * s], [0.05 * s], [0.0]]]) for s in range(4)]
    )
    uv = project(xyz, truth, K)
    noisy = truth.copy()
    for s in range(1, 4):
        noisy[s, :, :3] = rotation(rng.normal(0, 0.01, 3)) @ truth[s, :, :3]
        noisy[s, :, 3] += rng.normal(0, 0.03, 3)
    outliers = np.arange(0, 300, 10)
    uv[2, outliers] += 30.0  # a wrong sighting in frame 2 for every tenth track
    tracks = TrackSet(
        xyz + rng.normal(0, 0.03, xyz.shape), np.zeros((300, 3), np.uint8), uv, np.ones((4, 300), dtype=bool)
    )
    predictions = {"extrinsic": noisy, "intrinsic": np.stack([K] * 4), "camera_valid": np.ones(4, dtype=bool)}

    reconstruction, points, before, after = adjust_tracks(
        tracks, predictions, [TRANSFORM] * 4, ["a.png", "b.png", "c.png", "d.png"], max_error=8.0
    )

    assert points == reconstruction.num_points3D() == 300  # every track is seen in >= 2 frames
    assert before > 0.5 and after < 0.01
    assert max(model_errors(reconstruction)) < 0.01
    frame_2 = reconstruction.images[3]
    assert frame_2.num_points3D == 300 - len(outliers)  # the wrong sightings never entered
    camera = reconstruction.cameras[1]
    assert (camera.width, camera.height) == (160, 120)


def test_predict_with_ba_and_query_points_end_to_end(tmp_path: Path, tiny_weights: Path, scene_images: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("10 20\n80.5, 60\n")  # pixels of the first 160x120 image, both separators
    out = tmp_path / "out"

    result = run_cli(
        *predict_args(scene_images, out, tiny_weights, "--ba", "--export", "colmap", "--query-points", queries),
        "--resolution",
        "182",  # tracking needs >= 128 px: 160x120 -> 182x140 (scales 1.1375 and 1.1667)
        "--max-query-points",
        "128",
        "--query-frames",
        "2",
        "--vis-thresh",
        "0",
        "--max-reproj-error",
        "1000",
    )

    assert result.status == 0, result.stderr
    with np.load(out / "predictions.npz") as data:
        assert data["track"].shape == (3, 2, 2) and data["vis"].shape == (3, 2)
        np.testing.assert_allclose(data["track_original"][0], [[10, 20], [80.5, 60]], atol=1e-3)  # frame 0 is pinned
        expected = (np.array([[10, 20], [80.5, 60]]) + 0.5) * data["preprocess_scale"][0] - 0.5
        np.testing.assert_allclose(data["query_points"], expected, atol=1e-4)
    reconstruction = pycolmap.Reconstruction(str(out / "sparse"))
    assert reconstruction.num_images() == 3 and reconstruction.num_points3D() > 0
    assert all(point.track.length() >= 2 for point in reconstruction.points3D.values())
    reported = float(re.search(r"-> ([0-9.]+) model px", result.stdout).group(1))
    assert np.mean(model_errors(reconstruction, (182 / 160, 140 / 120))) == pytest.approx(reported, abs=0.01)

"""`vggt predict` outputs, each read back by an independent reader and checked against our own geometry.

The run: 3 synthetic 160x120 views, tiny model with synthetic weights, crop mode at 112 px, so the model sees
112x84 images and every original pixel coordinate is the model's divided by exactly 0.7.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.predict.conftest import SCENE_SIZE, CliResult
from vggt.predict.ownership import MANIFEST_NAME

pycolmap = pytest.importorskip("pycolmap")
trimesh = pytest.importorskip("trimesh")

SCALE = 0.7  # model pixels per original pixel
UPSTREAM_KEYS = {"pose_enc", "depth", "depth_conf", "world_points", "world_points_conf", "images"}


# independent geometry ---------------------------------------------------------------------------
def rotation_from_xyzw(q: np.ndarray) -> np.ndarray:
    """Unit-quaternion (x, y, z, w) -> rotation matrix, the textbook formula."""
    x, y, z, w = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def cameras_from_pose_encoding(pose_enc: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """[S, 9] (T, quaternion xyzw, fov_h, fov_w) -> (camera-from-world [S, 3, 4], K [S, 3, 3] centred)."""
    extrinsic = np.stack([np.hstack([rotation_from_xyzw(p[3:7]), p[:3, None]]) for p in pose_enc])
    fy = (height / 2) / np.tan(pose_enc[:, 7] / 2)
    fx = (width / 2) / np.tan(pose_enc[:, 8] / 2)
    intrinsic = np.zeros((len(pose_enc), 3, 3))
    intrinsic[:, 0, 0], intrinsic[:, 1, 1], intrinsic[:, 0, 2], intrinsic[:, 1, 2] = fx, fy, width / 2, height / 2
    intrinsic[:, 2, 2] = 1
    return extrinsic, intrinsic


def unproject_pixel(depth: float, u: float, v: float, extrinsic: np.ndarray, k: np.ndarray) -> np.ndarray:
    """World point of model pixel (u, v) at z-depth `depth`: R^T (camera point - t)."""
    camera = depth * np.array([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], 1.0])
    return extrinsic[:, :3].T @ (camera - extrinsic[:, 3])


def confident_pixels(arrays: dict[str, np.ndarray], percentile: float = 50) -> tuple[np.ndarray, ...]:
    """(frame, v, u) of pixels whose depth confidence reaches the percentile (no padding in this run)."""
    confidence = arrays["depth_conf"]
    return np.nonzero(confidence >= np.percentile(confidence, percentile))


@pytest.fixture(scope="module")
def arrays(predicted: tuple[Path, CliResult]) -> dict[str, np.ndarray]:
    with np.load(predicted[0] / "predictions.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# predictions.npz ---------------------------------------------------------------------------------
def test_npz_holds_upstream_keys_with_model_resolution_shapes(arrays: dict[str, np.ndarray]) -> None:
    assert UPSTREAM_KEYS <= set(arrays)
    assert arrays["images"].shape == (3, 3, 84, 112)
    assert arrays["depth"].shape == (3, 84, 112, 1)
    assert arrays["depth_conf"].shape == arrays["world_points_conf"].shape == (3, 84, 112)
    assert arrays["world_points"].shape == arrays["world_points_from_depth"].shape == (3, 84, 112, 3)
    assert list(arrays["image_names"]) == ["frame000001.jpg", "frame000002.jpg", "frame000003.jpg"]


def test_npz_cameras_decode_the_pose_encoding(arrays: dict[str, np.ndarray]) -> None:
    extrinsic, intrinsic = cameras_from_pose_encoding(arrays["pose_enc"].astype(np.float64), 84, 112)
    np.testing.assert_allclose(arrays["extrinsic"], extrinsic, atol=1e-5)
    np.testing.assert_allclose(arrays["intrinsic"], intrinsic, rtol=1e-5)


def test_npz_world_points_from_depth_are_the_unprojected_depth(arrays: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    for frame, v, u in zip(rng.integers(0, 3, 50), rng.integers(0, 84, 50), rng.integers(0, 112, 50)):
        expected = unproject_pixel(
            arrays["depth"][frame, v, u, 0], u, v, arrays["extrinsic"][frame], arrays["intrinsic"][frame]
        )
        np.testing.assert_allclose(arrays["world_points_from_depth"][frame, v, u], expected, rtol=1e-4, atol=1e-5)


def test_npz_records_the_original_geometry(arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(arrays["original_size"], [SCENE_SIZE] * 3)
    np.testing.assert_allclose(arrays["preprocess_scale"], SCALE)
    np.testing.assert_array_equal(arrays["preprocess_offset"], 0)
    np.testing.assert_array_equal(arrays["content_box"], [[0, 0, 112, 84]] * 3)


# COLMAP ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reconstruction(predicted: tuple[Path, CliResult]):
    sparse = predicted[0] / "sparse"
    assert {"cameras.bin", "images.bin", "points3D.bin"} <= {p.name for p in sparse.iterdir()}
    return pycolmap.Reconstruction(str(sparse))


def test_colmap_cameras_are_the_predicted_ones_scaled_to_the_original_images(reconstruction, arrays) -> None:
    assert reconstruction.num_cameras() == reconstruction.num_images() == 3
    for frame in range(3):
        image = reconstruction.images[frame + 1]
        camera = reconstruction.cameras[image.camera_id]
        k = arrays["intrinsic"][frame]
        assert image.name == arrays["image_names"][frame]
        assert (camera.model_name, camera.width, camera.height) == ("PINHOLE", *SCENE_SIZE)
        # model pixel index u is continuous coordinate u + 0.5, which is (u + 0.5) / 0.7 in the original image
        expected = [k[0, 0] / SCALE, k[1, 1] / SCALE, (k[0, 2] + 0.5) / SCALE, (k[1, 2] + 0.5) / SCALE]
        np.testing.assert_allclose(camera.params, expected, rtol=1e-5)
        np.testing.assert_allclose(image.cam_from_world().matrix(), arrays["extrinsic"][frame], atol=1e-5)


def test_colmap_points_are_unprojected_depth_seen_where_they_project(reconstruction, arrays) -> None:
    assert 0 < reconstruction.num_points3D() == len(confident_pixels(arrays)[0])
    for point in list(reconstruction.points3D.values())[::97]:
        (element,) = point.track.elements
        image = reconstruction.images[element.image_id]
        x, y = image.points2D[element.point2D_idx].xy
        camera = reconstruction.cameras[image.camera_id]
        fx, fy, cx, cy = camera.params
        pose = image.cam_from_world().matrix()
        in_camera = pose[:, :3] @ point.xyz + pose[:, 3]
        projected = [fx * in_camera[0] / in_camera[2] + cx, fy * in_camera[1] / in_camera[2] + cy]
        np.testing.assert_allclose(projected, [x, y], atol=1e-3)

        frame = element.image_id - 1
        u, v = x * SCALE - 0.5, y * SCALE - 0.5  # back to the model pixel index the point was lifted from
        assert u == pytest.approx(round(u), abs=1e-6) and v == pytest.approx(round(v), abs=1e-6)
        u, v = round(u), round(v)
        expected = unproject_pixel(
            arrays["depth"][frame, v, u, 0], u, v, arrays["extrinsic"][frame], arrays["intrinsic"][frame]
        )
        np.testing.assert_allclose(point.xyz, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(point.color, np.round(arrays["images"][frame, :, v, u] * 255))


# PLY and GLB -------------------------------------------------------------------------------------
def test_ply_holds_the_confident_depth_points_with_their_colours(predicted, arrays) -> None:
    cloud = trimesh.load(predicted[0] / "points.ply")
    frame, v, u = confident_pixels(arrays)
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_allclose(cloud.vertices, arrays["world_points_from_depth"][frame, v, u], atol=1e-6)
    expected_rgb = np.round(arrays["images"][frame, :, v, u] * 255)  # [N, 3]
    np.testing.assert_array_equal(cloud.colors[:, :3], expected_rgb)


def test_glb_holds_the_points_in_gltf_axes_and_a_frustum_at_each_camera(predicted, arrays) -> None:
    scene = trimesh.load(predicted[0] / "scene.glb")
    ply = trimesh.load(predicted[0] / "points.ply")
    flip = np.array([1.0, -1.0, -1.0])  # OpenCV (y down, z forward) -> glTF (y up, z backward)
    np.testing.assert_allclose(scene.geometry["points"].vertices, ply.vertices * flip, atol=1e-6)
    frustums = sorted(name for name in scene.geometry if name.startswith("camera_"))
    assert frustums == ["camera_0000", "camera_0001", "camera_0002"]
    for frame, name in enumerate(frustums):
        rotation, translation = arrays["extrinsic"][frame, :, :3], arrays["extrinsic"][frame, :, 3]
        center = -rotation.T @ translation
        np.testing.assert_allclose(scene.geometry[name].vertices[0], center * flip, atol=1e-5)


# PNGs --------------------------------------------------------------------------------------------
def luminance(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(x.ravel())) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def test_depth_and_confidence_pngs_colour_each_frame_brighter_where_near_and_sure(predicted, arrays) -> None:
    for kind, values in (("depth", 1 / arrays["depth"][..., 0]), ("confidence", arrays["depth_conf"])):
        paths = sorted((predicted[0] / kind).iterdir())
        assert [p.name for p in paths] == ["0000_frame000001.png", "0001_frame000002.png", "0002_frame000003.png"]
        for frame, path in enumerate(paths):
            with Image.open(path) as image:
                assert (image.size, image.mode) == ((112, 84), "RGB")
            low, high = np.percentile(values, [2, 98])  # the colours saturate outside this shared range
            inside = (values[frame] > low) & (values[frame] < high)
            assert rank_correlation(luminance(path)[inside], values[frame][inside]) > 0.98


def test_previews_are_small_pngs_showing_something(predicted) -> None:
    for name, size in (("points.png", (640, 480)), ("frames.png", (112 * 3, 84 * 3))):
        path = predicted[0] / "preview" / name
        with Image.open(path) as image:
            assert image.size == size
            assert np.asarray(image).std() > 10  # not a blank canvas
        assert path.stat().st_size < 200_000


def test_summary_names_every_output_and_the_output_holds_nothing_else(predicted) -> None:
    out, result = predicted
    expected = {"predictions.npz", "depth", "confidence", "points.ply", "scene.glb", "sparse", "preview"}
    assert {p.name for p in out.iterdir()} == expected | {MANIFEST_NAME}
    for name in expected:
        assert name in result.stdout
    with open(out / MANIFEST_NAME) as manifest:
        assert set(json.load(manifest)["entries"]) == expected  # every output is recorded as predict's
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging directory left

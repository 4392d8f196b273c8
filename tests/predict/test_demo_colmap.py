"""demo_colmap.py at the repository root, run as upstream's users run it: the COLMAP model it writes into
--scene_dir/sparse, checked against a reference run of the model on upstream's preprocessing, and what it refuses."""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.predict.conftest import predict_args, run_cli
from tests.predict.demo_helpers import run_script
from tests.predict.test_predict_inputs import copy_images
from tests.predict.test_predict_ownership import tree
from vggt.demos import colmap_scene
from vggt.demos.colmap_scene import ColmapSceneOptions, load_square_images
from vggt.predict.bundle_adjust import BundleAdjustmentOptions, run_bundle_adjustment
from vggt.predict.inference import load_model, run_model
from vggt.predict.ownership import MANIFEST_NAME
from vggt.utils.load_fn import load_and_preprocess_images_square

pycolmap = pytest.importorskip("pycolmap")

MODEL_SIZE = 518
SQUARE_SIZE = 1024  # upstream's load size, the unit of --max_reproj_error
FRAMES = 3


def make_scene(root: Path, scene_images: Path) -> Path:
    copy_images(scene_images, root / "images", count=FRAMES)
    return root


def model_pixel_scale(size: tuple[int, int]) -> tuple[float, float, float]:
    """(model pixels per original pixel, left and top edge of the image in the 518 square), from upstream's
    recipe: centred on a black square of the longer side, that square scaled to 518."""
    width, height = size
    side = max(width, height)
    scale = MODEL_SIZE / side
    return scale, (side - width) // 2 * scale, (side - height) // 2 * scale


def content(size: tuple[int, int]) -> np.ndarray:
    """bool [518, 518]: the model pixels wholly inside the original image."""
    scale, left, top = model_pixel_scale(size)
    mask = np.zeros((MODEL_SIZE, MODEL_SIZE), dtype=bool)
    rows = slice(math.ceil(top - 1e-6), math.floor(top + size[1] * scale + 1e-6))
    cols = slice(math.ceil(left - 1e-6), math.floor(left + size[0] * scale + 1e-6))
    mask[rows, cols] = True
    return mask


@dataclass
class Reference:
    """The tiny model run on upstream's preprocessing of the scene, in this process."""

    names: list[str]
    sizes: list[tuple[int, int]]
    predictions: dict[str, np.ndarray]
    candidates: np.ndarray  # bool [S, 518, 518]: content, usable camera, finite point (before any threshold)

    def confidence_between_values(self, fraction: float) -> float:
        """A threshold that keeps about `fraction` of the candidates and lies halfway in a clear gap between two
        confidences, so that float noise between two runs cannot move a pixel across it."""
        values = np.unique(self.predictions["depth_conf"][self.candidates])
        around = int(len(values) * (1 - fraction))
        window = np.arange(around - 200, around + 200)
        best = window[np.argmax(values[window + 1] - values[window])]
        return float(values[best] + values[best + 1]) / 2

    def kept(self, threshold: float) -> np.ndarray:
        return self.candidates & (self.predictions["depth_conf"] >= threshold)


@pytest.fixture(scope="module")
def reference(scene_images: Path, tiny_weights: Path) -> Reference:
    paths = sorted(scene_images.iterdir())[:FRAMES]
    squares, _ = load_and_preprocess_images_square(paths, SQUARE_SIZE)
    images = F.interpolate(squares, size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)
    predictions = run_model(load_model(tiny_weights, None), images, torch.device("cpu"), torch.float32, 8)
    sizes = [Image.open(path).size for path in paths]
    finite = np.isfinite(predictions["world_points_from_depth"]).all(axis=-1)
    usable = np.stack([content(size) for size in sizes]) & predictions["camera_valid"][:, None, None] & finite
    assert usable.sum() > 100_000, "the scene must offer more candidate points than the 100000 cap"
    return Reference([path.name for path in paths], sizes, predictions, usable)


def observed_pixels(reconstruction, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    """(frame, v, u) model pixel [N, 3] of every sighting, and the points' xyz [N, 3], by point id. Each point's
    first sighting; the pixel recomputed from its original-image coordinates by upstream's square geometry."""
    pixels, xyz = [], []
    for point_id in sorted(reconstruction.points3D):
        point = reconstruction.points3D[point_id]
        element = point.track.elements[0]
        frame = element.image_id - 1
        x, y = reconstruction.images[element.image_id].points2D[element.point2D_idx].xy
        scale, left, top = model_pixel_scale(reference.sizes[frame])
        pixels.append([frame, math.floor(y * scale + top), math.floor(x * scale + left)])
        xyz.append(point.xyz)
    return np.array(pixels, dtype=np.int64).reshape(-1, 3), np.array(xyz).reshape(-1, 3)


def read_ply(path: Path) -> np.ndarray:
    """xyz [N, 3] of a binary little-endian PLY of float x, y, z and uchar red, green, blue."""
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    count = int(next(line for line in header.decode().splitlines() if line.startswith("element vertex")).split()[-1])
    vertex = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    vertices = np.frombuffer(body, dtype=vertex, count=count)
    assert len(body) == count * vertex.itemsize
    return np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=-1)


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two [N, K] arrays hold the same rows, in any order."""
    return a.shape == b.shape and np.array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])


# without --use_ba --------------------------------------------------------------------------------
@dataclass
class TwoRuns:
    scene: Path
    reference: Reference
    threshold: float
    capped: pycolmap.Reconstruction  # the first run: --conf_thres_value 1, so more than 100000 candidates
    capped_inode: int
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    images_before: dict[str, str]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, scene_images: Path, tiny_weights: Path, reference: Reference) -> TwoRuns:
    """Two runs on one scene: every candidate above confidence 1 (capped at 100000), then the same scene again
    with a real threshold and upstream's BA-only flags, which must change nothing without --use_ba."""
    scene = make_scene(tmp_path_factory.mktemp("demo_colmap") / "scene", scene_images)
    images_before = tree(scene / "images")
    first = run_script("demo_colmap.py", "--scene_dir", scene, "--conf_thres_value", 1.0, weights=tiny_weights)
    assert first.returncode == 0, first.stderr
    capped = pycolmap.Reconstruction(str(scene / "sparse"))
    inode = (scene / "sparse").stat().st_ino
    threshold = reference.confidence_between_values(0.05)
    second = run_script(
        "demo_colmap.py",
        f"--scene_dir={scene}",
        "--conf_thres_value",
        threshold,
        "--camera_type",
        "SIMPLE_RADIAL",
        "--shared_camera",
        "--fine_tracking",
        weights=tiny_weights,
    )
    assert second.returncode == 0, second.stderr
    return TwoRuns(scene, reference, threshold, capped, inode, first, second, images_before)


def test_without_ba_the_model_holds_exactly_the_pixels_above_the_absolute_confidence(two_runs: TwoRuns) -> None:
    reconstruction = pycolmap.Reconstruction(str(two_runs.scene / "sparse"))
    reference = two_runs.reference
    expected = np.argwhere(reference.kept(two_runs.threshold))
    assert 1000 < len(expected) < 100_000
    pixels, xyz = observed_pixels(reconstruction, reference)
    assert same_rows(pixels, expected)
    frame, v, u = pixels.T
    assert (reference.predictions["depth_conf"][frame, v, u] >= two_runs.threshold).all()
    np.testing.assert_allclose(xyz, reference.predictions["world_points_from_depth"][frame, v, u], atol=1e-4)
    assert all(point.track.length() == 1 for point in reconstruction.points3D.values())


def test_without_ba_each_image_has_its_own_pinhole_camera_at_the_original_size(two_runs: TwoRuns) -> None:
    reconstruction = pycolmap.Reconstruction(str(two_runs.scene / "sparse"))
    images = sorted(reconstruction.images.values(), key=lambda image: image.name)
    assert [image.name for image in images] == two_runs.reference.names
    assert len({image.camera_id for image in images}) == FRAMES == reconstruction.num_cameras()
    for image, size in zip(images, two_runs.reference.sizes):
        camera = reconstruction.cameras[image.camera_id]
        assert camera.model == pycolmap.CameraModelId.PINHOLE  # --camera_type and --shared_camera need --use_ba
        assert (camera.width, camera.height) == size
    assert "--use_ba only" in two_runs.second.stderr


def test_without_ba_at_most_100000_points_are_drawn_from_the_candidates(two_runs: TwoRuns) -> None:
    assert two_runs.capped.num_points3D() == 100_000
    pixels, _ = observed_pixels(two_runs.capped, two_runs.reference)
    assert len(np.unique(pixels, axis=0)) == 100_000
    frame, v, u = pixels.T
    assert two_runs.reference.kept(1.0)[frame, v, u].all()


def test_points_ply_holds_the_points_of_the_model(two_runs: TwoRuns) -> None:
    reconstruction = pycolmap.Reconstruction(str(two_runs.scene / "sparse"))
    written = read_ply(two_runs.scene / "sparse" / "points.ply")
    in_model = np.array([point.xyz for point in reconstruction.points3D.values()], dtype=np.float32)
    assert same_rows(written, in_model)


def test_a_second_run_replaces_its_own_sparse_and_writes_nothing_else(two_runs: TwoRuns) -> None:
    scene = two_runs.scene
    assert (scene / "sparse").stat().st_ino != two_runs.capped_inode
    assert pycolmap.Reconstruction(str(scene / "sparse")).num_points3D() != two_runs.capped.num_points3D()
    assert sorted(os.listdir(scene)) == sorted(["images", "sparse", MANIFEST_NAME])
    assert {"cameras.bin", "images.bin", "points3D.bin", "points.ply"} <= set(os.listdir(scene / "sparse"))
    assert tree(scene / "images") == two_runs.images_before
    assert "sparse/points.ply" in two_runs.second.stdout


# with --use_ba -----------------------------------------------------------------------------------
def sighting_errors_in_square_pixels(reconstruction, reference: Reference) -> list[float]:
    """Every sighting's reprojection error by our own projection (camera model from its parameters), in pixels
    of upstream's 1024 square."""
    errors = []
    for point in reconstruction.points3D.values():
        for element in point.track.elements:
            image = reconstruction.images[element.image_id]
            camera = reconstruction.cameras[image.camera_id]
            params = list(camera.params)
            pose = image.cam_from_world().matrix()
            x, y, z = pose[:, :3] @ point.xyz + pose[:, 3]
            x, y = x / z, y / z
            if camera.model == pycolmap.CameraModelId.SIMPLE_RADIAL:
                f, cx, cy, k = params
                radial = 1 + k * (x * x + y * y)
                projected = np.array([f * x * radial + cx, f * y * radial + cy])
            else:
                f, cx, cy = params
                projected = np.array([f * x + cx, f * y + cy])
            residual = projected - image.points2D[element.point2D_idx].xy
            side = max(reference.sizes[element.image_id - 1])
            errors.append(float(np.linalg.norm(residual)) * SQUARE_SIZE / side)
    return errors


BA_FLAGS = ("--use_ba", "--query_frame_num", 2, "--max_query_pts", 256, "--vis_thresh", 0)
MAX_ERROR = 16.0  # pixels of the 1024 square, about 8 model pixels


def test_with_ba_simple_pinhole_cameras_per_image_and_every_sighting_within_the_limit(
    tmp_path: Path, scene_images: Path, tiny_weights: Path, reference: Reference
) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    result = run_script(
        "demo_colmap.py", "--scene_dir", scene, *BA_FLAGS, "--max_reproj_error", MAX_ERROR, weights=tiny_weights
    )
    assert result.returncode == 0, result.stderr
    reconstruction = pycolmap.Reconstruction(str(scene / "sparse"))
    assert sorted(image.name for image in reconstruction.images.values()) == reference.names
    assert reconstruction.num_cameras() == FRAMES
    for image in reconstruction.images.values():
        camera = reconstruction.cameras[image.camera_id]
        assert camera.model == pycolmap.CameraModelId.SIMPLE_PINHOLE  # upstream's default --camera_type
        assert (camera.width, camera.height) == reference.sizes[image.image_id - 1]
    assert reconstruction.num_points3D() > 0
    assert all(point.track.length() >= 2 for point in reconstruction.points3D.values())
    assert max(sighting_errors_in_square_pixels(reconstruction, reference)) <= MAX_ERROR + 1e-3
    assert len(read_ply(scene / "sparse" / "points.ply")) == reconstruction.num_points3D()
    assert sorted(os.listdir(scene)) == sorted(["images", "sparse", MANIFEST_NAME])


def test_with_ba_a_shared_simple_radial_camera(
    tmp_path: Path, scene_images: Path, tiny_weights: Path, reference: Reference
) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    flags = ("--shared_camera", "--camera_type", "SIMPLE_RADIAL", "--max_reproj_error", 1000)
    result = run_script("demo_colmap.py", "--scene_dir", scene, *BA_FLAGS, *flags, weights=tiny_weights)
    assert result.returncode == 0, result.stderr
    reconstruction = pycolmap.Reconstruction(str(scene / "sparse"))
    assert reconstruction.num_images() == FRAMES and reconstruction.num_cameras() == 1
    assert {image.camera_id for image in reconstruction.images.values()} == set(reconstruction.cameras)
    camera = next(iter(reconstruction.cameras.values()))
    assert camera.model == pycolmap.CameraModelId.SIMPLE_RADIAL
    assert (camera.width, camera.height) == reference.sizes[0]


def test_with_ba_the_error_limit_is_converted_from_the_1024_square_to_model_pixels(
    tmp_path: Path, scene_images: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[BundleAdjustmentOptions] = []

    def spy(*args, **kwargs):
        seen.append(args[6])
        return run_bundle_adjustment(*args, **kwargs)

    monkeypatch.setattr(colmap_scene, "run_bundle_adjustment", spy)
    scene = make_scene(tmp_path / "scene", scene_images)
    options = ColmapSceneOptions(
        scene, str(tiny_weights), device="cpu", dtype="float32", use_ba=True, max_reproj_error=100.0,
        query_frame_num=2, max_query_pts=64, vis_thresh=0.0, camera_type="simple_radial",
    )  # fmt: skip
    colmap_scene.reconstruct_scene(options)
    [ba] = seen
    assert ba.max_error == pytest.approx(100.0 * 518 / 1024)
    assert (ba.query_frames, ba.max_query_points, ba.vis_thresh) == (2, 64, 0.0)
    assert (ba.camera_model, ba.shared_camera) == ("SIMPLE_RADIAL", False)


def test_with_ba_a_limit_no_track_meets_fails_in_the_scripts_terms_and_leaves_the_scene(
    tmp_path: Path, scene_images: Path, tiny_weights: Path
) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    before = tree(scene)
    result = run_script(
        "demo_colmap.py", "--scene_dir", scene, *BA_FLAGS, "--max_reproj_error", 0.01, weights=tiny_weights
    )
    assert result.returncode == 2
    assert "--max_reproj_error (now 0.01 px of the 1024 square" in result.stderr
    assert tree(scene) == before


# refusals ----------------------------------------------------------------------------------------
def test_a_sparse_folder_of_the_users_is_refused_before_the_model_loads_and_left_byte_identical(
    tmp_path: Path, scene_images: Path, tiny_weights: Path
) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    (scene / "sparse" / "0").mkdir(parents=True)
    (scene / "sparse" / "0" / "cameras.txt").write_text("# my own COLMAP model\n")
    before = tree(scene)
    result = run_script("demo_colmap.py", "--scene_dir", scene, weights=tiny_weights)
    assert result.returncode == 2
    assert result.stderr.startswith("demo_colmap.py: error: ") and str(scene / "sparse") in result.stderr
    assert "loading the model" not in result.stdout
    assert tree(scene) == before


def test_the_outputs_of_a_vggt_predict_run_in_the_scene_are_not_deleted(
    tmp_path: Path, scene_images: Path, tiny_weights: Path
) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    assert run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "none")).status == 0
    before = tree(scene)
    result = run_script("demo_colmap.py", "--scene_dir", scene, weights=tiny_weights)
    assert result.returncode == 2 and "predictions.npz" in result.stderr
    assert tree(scene) == before


def test_a_shared_camera_over_images_of_two_sizes_is_refused_naming_two_of_them(
    tmp_path: Path, scene_images: Path
) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    first = sorted((scene / "images").iterdir())[0]
    Image.open(first).resize((120, 160)).save(scene / "images" / "portrait.png")
    before = tree(scene)
    result = run_script("demo_colmap.py", "--scene_dir", scene, "--use_ba", "--shared_camera")
    assert result.returncode == 2
    assert first.name in result.stderr and "portrait.png" in result.stderr and "shared camera" in result.stderr
    assert "loading the model" not in result.stdout  # the default model is never fetched
    assert tree(scene) == before


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--camera_type", "OPENCV"), "PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL"),
        (("--max_reproj_error", "-1"), "--max_reproj_error"),
    ],
)
def test_bad_flags_exit_2_naming_what_is_wrong(tmp_path: Path, scene_images: Path, args, named) -> None:
    scene = make_scene(tmp_path / "scene", scene_images)
    result = run_script("demo_colmap.py", "--scene_dir", scene, *args)
    assert result.returncode == 2 and named in result.stderr
    assert sorted(os.listdir(scene)) == ["images"]


def test_a_scene_without_images_folder_says_where_the_images_go(tmp_path: Path) -> None:
    result = run_script("demo_colmap.py", "--scene_dir", tmp_path)
    assert result.returncode == 2 and str(tmp_path / "images") in result.stderr


# preprocessing -----------------------------------------------------------------------------------
CORNER_COLOURS = {(0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (1, 1): (0, 0, 255), (0, 1): (255, 255, 0)}


def cornered_image(path: Path, size: tuple[int, int]) -> Path:
    """A grey image with a coloured 20 x 20 block in each corner (CORNER_COLOURS, keyed by (right, bottom))."""
    width, height = size
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    for (right, bottom), colour in CORNER_COLOURS.items():
        rows = slice(height - 20, height) if bottom else slice(0, 20)
        cols = slice(width - 20, width) if right else slice(0, 20)
        pixels[rows, cols] = colour
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("size", [(300, 150), (150, 300), (200, 200)])
def test_the_518_square_transform_maps_the_image_corners_back_to_the_original_corners(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    path = cornered_image(tmp_path / "corners.png", size)
    images, [transform] = load_square_images([path])

    squares, _ = load_and_preprocess_images_square([path], SQUARE_SIZE)  # upstream's 1024 square, then 518
    expected = F.interpolate(squares, size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(images, expected, rtol=0, atol=0)
    assert transform.original_size == size
    scale, left, top = model_pixel_scale(size)
    width, height = size
    np.testing.assert_allclose(transform.to_original([left, top]), [0, 0], atol=1e-3)
    np.testing.assert_allclose(transform.to_original([left + width * scale, top + height * scale]), size, atol=1e-3)
    pixels = images[0].permute(1, 2, 0).numpy() * 255
    for (right, bottom), colour in CORNER_COLOURS.items():  # the transform points at the right pixels
        inside = np.array([width - 10 if right else 10, height - 10 if bottom else 10], dtype=np.float32)
        u, v = np.floor(transform.from_original(inside)).astype(int)
        np.testing.assert_allclose(pixels[v, u], colour, atol=40)
    x0, y0, x1, y1 = transform.content
    mask = np.zeros((MODEL_SIZE, MODEL_SIZE), dtype=bool)
    mask[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(mask, content(size))
    near = np.zeros_like(mask)
    near[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = True
    assert pixels[~near].size == 0 or pixels[~near].max() < 1  # beyond the content's edge pixels: black padding
    assert pixels[mask].max(axis=-1).min() > 100  # grey or coloured: no black padding inside the content box

"""Custom scenes: JSON and COLMAP (binary and text) layouts give back the cameras they were written with,
samples' world points lie on the known surface, and bad input fails with errors naming scene, frame and key."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.base import DatasetError, SampleRequest, unproject
from training.data.custom import CustomSceneDataset

WIDTH, HEIGHT = 64, 48
INTRINSIC = np.array([[60.0, 0.0, 32.5], [0.0, 58.0, 22.5], [0.0, 0.0, 1.0]])  # pixel centres at integers
PLANE_NORMAL = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0])
PLANE_OFFSET = 5.0  # the scene is the plane n . X = 5 (metres)
# (rotation axis, angle in radians, camera centre) per frame
POSES = [
    ((0.0, 1.0, 0.0), 0.15, (-0.5, 0.1, 0.0)),
    ((1.0, 0.0, 0.0), -0.1, (0.3, -0.2, 0.4)),
    ((1.0, 1.0, 0.5), 0.2, (0.6, 0.5, -0.3)),
]


def rodrigues(axis: tuple[float, ...], angle: float) -> np.ndarray:
    k = np.asarray(axis) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def quaternion(axis: tuple[float, ...], angle: float) -> np.ndarray:
    """(qw, qx, qy, qz) of the same rotation, from the axis-angle directly (not from the matrix)."""
    k = np.asarray(axis) / np.linalg.norm(axis)
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * k)])


def extrinsic(pose: tuple) -> np.ndarray:
    """Camera-from-world [R | -R C] of a camera rotated by `rodrigues(axis, angle)` at centre C."""
    axis, angle, center = pose
    rotation = rodrigues(axis, angle)
    return np.concatenate([rotation, -rotation @ np.asarray(center)[:, None]], axis=1)


def plane_depth(extri: np.ndarray, intri: np.ndarray = INTRINSIC) -> np.ndarray:
    """Exact z-depth [H, W] of the plane at each integer pixel, by ray-plane intersection."""
    rotation, center = extri[:, :3], -extri[:, :3].T @ extri[:, 3]
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u - intri[0, 2]) / intri[0, 0], (v - intri[1, 2]) / intri[1, 1], np.ones_like(u)], -1)
    world_rays = rays @ rotation  # camera z = 1, so the ray parameter is the z-depth
    return (PLANE_OFFSET - PLANE_NORMAL @ center) / (world_rays @ PLANE_NORMAL)


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_png_millimetres(path: Path, depth_m: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(depth_m * 1000).astype(np.uint16)).save(path)


# JSON layout -------------------------------------------------------------------------------------
def write_json_scene(scene: Path) -> dict:
    """Three frames, depths as .npy in centimetres with depth_scale 0.01; frame 0's extrinsic is 4x4."""
    frames = []
    for i, pose in enumerate(POSES):
        write_image(scene / "images" / f"{i:04d}.png", i)
        (scene / "depths").mkdir(exist_ok=True)
        np.save(scene / "depths" / f"{i:04d}.npy", (plane_depth(extrinsic(pose)) * 100).astype(np.float32))
        extri = extrinsic(pose).tolist() if i else [*extrinsic(pose).tolist(), [0, 0, 0, 1]]
        frames.append(
            {
                "image": f"images/{i:04d}.png",
                "depth": f"depths/{i:04d}.npy",
                "extrinsic": extri,
                "intrinsic": INTRINSIC.tolist(),
            }
        )
    content = {"depth_scale": 0.01, "frames": frames}
    (scene / "cameras.json").write_text(json.dumps(content))
    return content


@pytest.fixture
def json_root(tmp_path: Path) -> Path:
    write_json_scene(tmp_path / "kitchen")
    return tmp_path


def rewrite(scene: Path, edit) -> None:
    content = json.loads((scene / "cameras.json").read_text())
    edit(content)
    (scene / "cameras.json").write_text(json.dumps(content))


# COLMAP layout -----------------------------------------------------------------------------------
# camera id -> (model name, model id, params); COLMAP's pixel centres sit at +0.5, so its principal point
# (33, 23) is our (32.5, 22.5)
COLMAP_CAMERAS = {
    1: ("PINHOLE", 1, [60.0, 58.0, 33.0, 23.0]),
    2: ("SIMPLE_RADIAL", 2, [60.0, 33.0, 23.0, 0.0]),
}
EXPECTED_INTRINSICS = {1: INTRINSIC, 2: np.array([[60.0, 0.0, 32.5], [0.0, 60.0, 22.5], [0.0, 0.0, 1.0]])}
IMAGE_CAMERAS = [1, 1, 2]  # camera of each pose
IMAGE_NAMES = ["a.png", "b.png", "c.png"]


def write_colmap_binary(model: Path, cameras: dict, images: list[tuple]) -> None:
    """cameras.bin / images.bin per COLMAP's format: little-endian, images with their 2-D points."""
    with open(model / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(cameras)))
        for camera_id, (_, model_id, params) in cameras.items():
            f.write(struct.pack("<iiQQ", camera_id, model_id, WIDTH, HEIGHT))
            f.write(struct.pack(f"<{len(params)}d", *params))
    with open(model / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(images)))
        for image_id, q, t, camera_id, name, points in images:
            f.write(struct.pack("<idddddddi", image_id, *q, *t, camera_id))
            f.write(name.encode() + b"\x00")
            f.write(struct.pack("<Q", len(points)))
            for x, y, point_id in points:
                f.write(struct.pack("<ddq", x, y, point_id))


def write_colmap_text(model: Path, cameras: dict, images: list[tuple]) -> None:
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for camera_id, (name, _, params) in cameras.items():
        lines.append(" ".join([str(camera_id), name, str(WIDTH), str(HEIGHT), *map(repr, params)]))
    (model / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
    ]
    for image_id, q, t, camera_id, name, points in images:
        lines.append(" ".join([str(image_id), *(repr(float(x)) for x in [*q, *t]), str(camera_id), name]))
        lines.append(" ".join(f"{x!r} {y!r} {p}" for x, y, p in points))  # empty when the image has no points
    (model / "images.txt").write_text("\n".join(lines) + "\n")


def write_colmap_scene(scene: Path, fmt: str, cameras: dict = COLMAP_CAMERAS, with_depth=(True, True, True)) -> None:
    """Three registered images (written in reverse name order), depths as 16-bit PNGs in millimetres."""
    model = scene / "sparse" / "0"
    model.mkdir(parents=True)
    images = []
    for i, (pose, camera_id, name) in enumerate(zip(POSES, IMAGE_CAMERAS, IMAGE_NAMES)):
        write_image(scene / "images" / name, i)
        if with_depth[i]:
            depth = plane_depth(extrinsic(pose), EXPECTED_INTRINSICS[camera_id])
            write_png_millimetres(scene / "depths" / f"{Path(name).stem}.png", depth)
        points = [(10.5, 20.25, 7), (30.0, 5.0, -1)] if i == 1 else []
        images.append((10 - i, quaternion(*pose[:2]), extrinsic(pose)[:, 3], camera_id, name, points))
    (write_colmap_binary if fmt == "bin" else write_colmap_text)(model, cameras, images[::-1])


# tests --------------------------------------------------------------------------------------------
def assert_on_plane(world_points: np.ndarray, tolerance: float, median_tolerance: float | None = None) -> None:
    distance = np.abs(world_points @ PLANE_NORMAL - PLANE_OFFSET)
    assert distance.max() < tolerance, distance.max()
    assert median_tolerance is None or np.median(distance) < median_tolerance, np.median(distance)


def test_json_scene_cameras_and_depth_are_the_written_ones(json_root):
    dataset = CustomSceneDataset(json_root)
    assert len(dataset) == 1 and dataset.sequence_name(0) == "kitchen"
    frames = dataset.sequence_frames(0)
    assert [f.image_path.name for f in frames] == ["0000.png", "0001.png", "0002.png"]
    for frame, pose in zip(frames, POSES):
        np.testing.assert_allclose(frame.extrinsic, extrinsic(pose), atol=1e-12)
        np.testing.assert_allclose(frame.intrinsic, INTRINSIC)
        depth = dataset.read_depth(frame)  # centimetres x depth_scale 0.01 = metres
        np.testing.assert_allclose(depth, plane_depth(extrinsic(pose)), rtol=1e-5)
        _, world = unproject(depth, frame.extrinsic, frame.intrinsic)
        assert_on_plane(world.reshape(-1, 3), 1e-3)


def test_json_scene_sample_world_points_lie_on_the_plane(json_root):
    dataset = CustomSceneDataset(json_root, img_size=84)
    sample = dataset[SampleRequest(index=0, num_frames=3, aspect_ratio=0.75, seed=0)]
    assert sample["images"].shape == (3, 3, 56, 84)
    masks = sample["point_masks"].numpy()
    assert masks.mean() > 0.9
    # nearest-neighbour depth resizing moves a depth by up to half a source pixel along the slanted plane
    assert_on_plane(sample["world_points"].numpy()[masks].astype(np.float64), 0.05, median_tolerance=0.01)
    for i, frame_id in enumerate(sample["ids"].tolist()):
        np.testing.assert_allclose(sample["extrinsics"][i].numpy(), extrinsic(POSES[frame_id]), atol=1e-6)


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_colmap_scene_cameras_and_depth_are_the_written_ones(tmp_path, fmt):
    write_colmap_scene(tmp_path / "courtyard", fmt)
    dataset = CustomSceneDataset(tmp_path)
    frames = dataset.sequence_frames(0)
    assert [f.image_path.name for f in frames] == IMAGE_NAMES  # sorted by name, not by id or file order
    for frame, pose, camera_id in zip(frames, POSES, IMAGE_CAMERAS):
        np.testing.assert_allclose(frame.extrinsic, extrinsic(pose), atol=1e-12)
        np.testing.assert_allclose(frame.intrinsic, EXPECTED_INTRINSICS[camera_id], atol=1e-12)
        depth = dataset.read_depth(frame)  # millimetre PNG -> metres
        np.testing.assert_allclose(depth, plane_depth(extrinsic(pose), EXPECTED_INTRINSICS[camera_id]), atol=6e-4)
        _, world = unproject(depth, frame.extrinsic, frame.intrinsic)
        assert_on_plane(world.reshape(-1, 3), 2e-3)


def test_colmap_sample_world_points_lie_on_the_plane(tmp_path):
    write_colmap_scene(tmp_path / "courtyard", "bin")
    sample = CustomSceneDataset(tmp_path, img_size=84)[SampleRequest(0, 3, 0.75, seed=1)]
    masks = sample["point_masks"].numpy()
    assert masks.mean() > 0.9
    assert_on_plane(sample["world_points"].numpy()[masks].astype(np.float64), 0.05, median_tolerance=0.01)


def test_root_that_is_itself_a_scene_is_one_sequence(json_root):
    dataset = CustomSceneDataset(json_root / "kitchen")
    assert len(dataset) == 1 and dataset.sequence_name(0) == "kitchen"


def test_mixed_layouts_and_a_non_scene_directory(json_root):
    write_colmap_scene(json_root / "courtyard", "txt")
    (json_root / "notes").mkdir()
    with pytest.warns(UserWarning, match="skipping .*notes"):
        dataset = CustomSceneDataset(json_root)
    assert [dataset.sequence_name(i) for i in range(len(dataset))] == ["courtyard", "kitchen"]


def test_distorted_colmap_camera_warns_and_keeps_the_pinhole_part(tmp_path):
    cameras = {1: ("OPENCV", 4, [60.0, 58.0, 33.0, 23.0, 0.1, -0.02, 0.001, 0.0]), 2: COLMAP_CAMERAS[2]}
    write_colmap_scene(tmp_path / "s", "bin", cameras=cameras)
    with pytest.warns(UserWarning, match="OPENCV camera has distortion .* ignored"):
        dataset = CustomSceneDataset(tmp_path)
    np.testing.assert_allclose(dataset.sequence_frames(0)[0].intrinsic, EXPECTED_INTRINSICS[1])


def test_fisheye_colmap_camera_is_rejected(tmp_path):
    cameras = {1: ("OPENCV_FISHEYE", 5, [60.0, 58.0, 33.0, 23.0, 0.1, 0.0, 0.0, 0.0]), 2: COLMAP_CAMERAS[2]}
    write_colmap_scene(tmp_path / "s", "bin", cameras=cameras)
    with pytest.raises(DatasetError, match="OPENCV_FISHEYE is not supported.*image_undistorter"):
        CustomSceneDataset(tmp_path)


def test_colmap_images_without_depth_are_skipped_with_a_warning(tmp_path):
    write_colmap_scene(tmp_path / "s", "txt", with_depth=(True, False, True))
    with pytest.warns(UserWarning, match="skipping 1 of 3 images without a depth map"):
        dataset = CustomSceneDataset(tmp_path)
    assert [f.image_path.name for f in dataset.sequence_frames(0)] == ["a.png", "c.png"]


def test_scene_with_too_few_frames_is_dropped_and_then_no_scene_is_left(tmp_path):
    write_colmap_scene(tmp_path / "s", "bin", with_depth=(True, False, False))
    with pytest.warns(UserWarning) as caught, pytest.raises(DatasetError, match="no usable scene under"):
        CustomSceneDataset(tmp_path, min_num_images=2)
    messages = [str(w.message) for w in caught]
    assert any("skipping 2 of 3 images without a depth map" in m for m in messages)
    assert any(m.startswith(f"dropping scene {tmp_path / 's'}: 1 usable frames") for m in messages)


def test_colmap_image_file_missing_is_an_error(tmp_path):
    write_colmap_scene(tmp_path / "s", "bin")
    (tmp_path / "s" / "images" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"images/b\.png does not exist but .*images\.bin registers it"):
        CustomSceneDataset(tmp_path)


def test_truncated_colmap_binary_is_an_error(tmp_path):
    write_colmap_scene(tmp_path / "s", "bin")
    images_bin = tmp_path / "s" / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:50])
    with pytest.raises(DatasetError, match="images.bin is truncated"):
        CustomSceneDataset(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["frames"][1].pop("intrinsic"), r"kitchen/cameras\.json frames\[1\]: missing key intrinsic"),
        (
            lambda c: c["frames"][0].update(extrinsic=[[1, 0, 0, 0], [0, 1, 0, 0]]),
            r'frames\[0\] "extrinsic": must be a 3x4 or 4x4 matrix, got shape \[2, 4\]',
        ),
        (
            lambda c: c["frames"][2].update(intrinsic=[[60, 0, 32], [0, 60, 24]]),
            r'frames\[2\] "intrinsic": must be a 3x3 matrix, got shape \[2, 3\]',
        ),
        (
            lambda c: c["frames"][1].update(extrinsic=(2 * np.eye(3, 4)).tolist()),
            r'frames\[1\] "extrinsic": the left 3x3 block is not a rotation',
        ),
        (lambda c: c["frames"][1].update(image="images/missing.png"), r'frames\[1\] "image": .*missing\.png does not'),
        (lambda c: c["frames"][0].update(depth="depths/missing.npy"), r'frames\[0\] "depth": .*missing\.npy does not'),
        (lambda c: c.update(depth_scale=-1), r'cameras\.json "depth_scale": must be a positive number'),
        (lambda c: c.pop("frames"), r'cameras\.json: expected an object with a "frames" list'),
    ],
    ids=["missing-key", "extrinsic-shape", "intrinsic-shape", "not-a-rotation", "image", "depth", "scale", "frames"],
)
def test_bad_cameras_json_names_scene_frame_and_key(json_root, edit, message):
    rewrite(json_root / "kitchen", edit)
    with pytest.raises(DatasetError, match=message):
        CustomSceneDataset(json_root)


def test_depth_of_the_wrong_kind_is_an_error_when_read(json_root):
    scene = json_root / "kitchen"
    Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(scene / "depths" / "8bit.png")
    rewrite(scene, lambda c: c["frames"][0].update(depth="depths/8bit.png"))
    dataset = CustomSceneDataset(json_root)
    with pytest.raises(DatasetError, match="8bit.png is a L PNG; it must be a 16-bit PNG in millimetres"):
        dataset.read_depth(dataset.sequence_frames(0)[0])


def test_empty_or_missing_root_names_the_root_and_the_layouts(tmp_path):
    with pytest.raises(DatasetError, match=rf"no usable scene under {tmp_path}; expected .*cameras\.json.*sparse/0"):
        CustomSceneDataset(tmp_path)
    with pytest.raises(DatasetError, match="is not a directory"):
        CustomSceneDataset(tmp_path / "absent")

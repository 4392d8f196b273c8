"""Synthetic scenes: exact z-depth across views, determinism, caching, and the exact Co3D layout and schema."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.base import SampleRequest, unproject
from training.data.synthetic import SyntheticScenes, generate_scenes, main

WIDTH, HEIGHT = 96, 72
PARAMS = dict(num_sequences=3, frames_per_sequence=8, image_size=(WIDTH, HEIGHT), seed=3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> SyntheticScenes:
    return generate_scenes(tmp_path_factory.mktemp("synthetic"), **PARAMS)


def read_split(scenes: SyntheticScenes, split: str) -> dict:
    with gzip.open(scenes["annotation_dir"] / f"synthetic_{split}.jgz", "rt") as file:
        return json.load(file)


def all_sequences(scenes: SyntheticScenes) -> dict:
    return {**read_split(scenes, "train"), **read_split(scenes, "test")}


def depth_path(scenes: SyntheticScenes, filepath: str) -> Path:
    """Co3D's rule: images/ -> depths/ and `.geometric.png` appended."""
    return scenes["co3d_dir"] / (filepath.replace("/images/", "/depths/") + ".geometric.png")


def mask_path(scenes: SyntheticScenes, filepath: str) -> Path:
    return scenes["co3d_dir"] / filepath.replace("/images/", "/depth_masks/").replace(".jpg", ".png")


def read_depth(path: Path) -> np.ndarray:
    """Float16 bit patterns in a 16-bit PNG -> float32 (decoded here, independently of the writer)."""
    return np.asarray(Image.open(path)).astype(np.uint16).view(np.float16).astype(np.float32)


def project(points: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray) -> tuple[np.ndarray, ...]:
    """World points [N, 3] -> pixel u, v and camera z-depth, each [N]."""
    cam = points @ extrinsic[:, :3].T + extrinsic[:, 3]
    z = cam[:, 2]
    return intrinsic[0, 0] * cam[:, 0] / z + intrinsic[0, 2], intrinsic[1, 1] * cam[:, 1] / z + intrinsic[1, 2], z


def test_depth_is_exact_z_depth_consistent_between_views(scenes):
    """Points unprojected from frame k land on frame k+1's depth wherever frame k+1 sees them."""
    agree, visible, see_through, compared = 0, 0, 0, 0
    for frames in all_sequences(scenes).values():
        for a, b in zip(frames[:-1], frames[1:]):
            depth_a, depth_b = (
                read_depth(depth_path(scenes, a["filepath"])),
                read_depth(depth_path(scenes, b["filepath"])),
            )
            _, world = unproject(depth_a, np.array(a["extri"]), np.array(a["intri"]))
            u, v, z = project(world[depth_a > 0].astype(np.float64), np.array(b["extri"]), np.array(b["intri"]))
            inside = (z > 0) & (u >= 0) & (v >= 0) & (u < WIDTH - 1) & (v < HEIGHT - 1)
            u, v, z = u[inside], v[inside], z[inside]
            u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
            corners = np.stack([depth_b[v0, u0], depth_b[v0, u0 + 1], depth_b[v0 + 1, u0], depth_b[v0 + 1, u0 + 1]])
            # bilinear depth only inside one surface: the four neighbours valid and within 2 % of each other
            smooth = (corners.min(0) > 0) & (corners.max(0) < 1.02 * corners.min(0))
            fu, fv = u - u0, v - v0
            top = (1 - fu) * corners[0] + fu * corners[1]
            bottom = (1 - fu) * corners[2] + fu * corners[3]
            relative = (((1 - fv) * top + fv * bottom) - z) / z
            relative = relative[smooth]
            seen = relative > -0.05  # otherwise something at least 5 % closer occludes the point in frame b
            compared += len(relative)
            visible += seen.sum()
            agree += (np.abs(relative[seen]) < 3e-3).sum()  # float16 storage: 5e-4 relative per map
            see_through += (relative > 0.01).sum()  # frame b would see past a surface frame a saw
    assert compared > 10_000 and visible / compared > 0.8
    assert agree / visible > 0.95
    assert see_through / compared < 0.005


def test_ground_pixels_unproject_onto_the_z0_plane_and_nothing_lies_below(scenes):
    frames = all_sequences(scenes)["seq0000"]
    on_ground, valid, lowest = 0, 0, np.inf
    for frame in frames:
        depth = read_depth(depth_path(scenes, frame["filepath"]))
        _, world = unproject(depth, np.array(frame["extri"]), np.array(frame["intri"]))
        height = world[..., 2][depth > 0] / depth[depth > 0]  # world z per unit of depth
        on_ground += (np.abs(height) < 1e-3).sum()
        valid += height.size
        lowest = min(lowest, height.min())
    assert on_ground / valid > 0.3
    assert lowest > -1e-3


def test_layout_and_annotation_schema_are_exactly_co3d(scenes):
    train, test = read_split(scenes, "train"), read_split(scenes, "test")
    assert (len(train), len(test)) == (2, 1)  # 75 % / 25 % of 3 sequences
    sequence_dirs = sorted(p.name for p in (scenes["co3d_dir"] / "synthetic").iterdir())
    assert sorted([*train, *test]) == sequence_dirs
    sky_pixels = object_pixels = 0
    for name, frames in {**train, **test}.items():
        assert len(frames) == PARAMS["frames_per_sequence"]
        for k, frame in enumerate(frames, start=1):
            assert set(frame) == {"filepath", "extri", "intri"}
            assert frame["filepath"] == f"synthetic/{name}/images/frame{k:06d}.jpg"
            assert re.fullmatch(r"synthetic/seq\d{4}/images/frame\d{6}\.jpg", frame["filepath"])
            with Image.open(scenes["co3d_dir"] / frame["filepath"]) as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (WIDTH, HEIGHT))
            with Image.open(depth_path(scenes, frame["filepath"])) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "I;16", (WIDTH, HEIGHT))
            with Image.open(mask_path(scenes, frame["filepath"])) as image:
                assert (image.format, image.mode) == ("PNG", "L")
                mask = np.asarray(image)
            depth = read_depth(depth_path(scenes, frame["filepath"]))
            assert set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask == 255, depth > 0)  # sky: depth 0 and mask 0
            sky_pixels += (depth == 0).sum()
            object_pixels += (depth > 0).sum()

            extrinsic, intrinsic = np.array(frame["extri"]), np.array(frame["intri"])
            assert extrinsic.shape == (3, 4) and intrinsic.shape == (3, 3)
            np.testing.assert_allclose(extrinsic[:, :3] @ extrinsic[:, :3].T, np.eye(3), atol=1e-9)
            assert np.linalg.det(extrinsic[:, :3]) > 0
            np.testing.assert_array_equal(intrinsic[2], [0, 0, 1])
            assert intrinsic[0, 0] == intrinsic[1, 1] and intrinsic[0, 1] == intrinsic[1, 0] == 0
            fov = np.degrees(2 * np.arctan(WIDTH / 2 / intrinsic[0, 0]))
            assert 45 <= fov <= 70
            assert abs(intrinsic[0, 2] - (WIDTH - 1) / 2) <= 0.03 * WIDTH
            assert abs(intrinsic[1, 2] - (HEIGHT - 1) / 2) <= 0.03 * HEIGHT
            center = -extrinsic[:, :3].T @ extrinsic[:, 3]
            assert center[2] > 0  # cameras stay above the ground
    assert sky_pixels > 0 and object_pixels > sky_pixels
    assert not list(scenes["co3d_dir"].parent.rglob(".partial-*"))  # every file was renamed into place


def test_images_are_textured_not_blank(scenes):
    for frames in all_sequences(scenes).values():
        frame = frames[0]
        gray = np.asarray(Image.open(scenes["co3d_dir"] / frame["filepath"]).convert("L"), dtype=np.float64)
        valid = read_depth(depth_path(scenes, frame["filepath"])) > 0
        assert gray[valid].std() > 15
        gradient = np.abs(np.diff(gray, axis=1))[valid[:, 1:] & valid[:, :-1]]
        assert gradient.mean() > 3  # texture everywhere, not flat-shaded surfaces


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_files_and_another_seed_differs(tmp_path):
    small = dict(num_sequences=2, frames_per_sequence=2, image_size=(32, 24))
    generate_scenes(tmp_path / "a", seed=7, **small)
    generate_scenes(tmp_path / "b", seed=7, **small)
    generate_scenes(tmp_path / "c", seed=8, **small)
    first, again, other = (_file_bytes(tmp_path / d) for d in "abc")
    assert first == again
    image = "co3d/synthetic/seq0000/images/frame000001.jpg"
    assert first[image] != other[image]


def test_a_sequence_does_not_depend_on_the_number_of_sequences(tmp_path):
    generate_scenes(tmp_path / "one", num_sequences=1, frames_per_sequence=2, image_size=(32, 24))
    generate_scenes(tmp_path / "two", num_sequences=2, frames_per_sequence=2, image_size=(32, 24))
    sequence = Path("co3d/synthetic/seq0000")
    assert _file_bytes(tmp_path / "one" / sequence) == _file_bytes(tmp_path / "two" / sequence)


def test_second_call_with_same_parameters_reuses_the_directory(scenes):
    out = scenes["co3d_dir"].parent
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = generate_scenes(out, **PARAMS)
    assert again["generated"] is False
    assert again["co3d_dir"] == scenes["co3d_dir"] and again["annotation_dir"] == scenes["annotation_dir"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_other_parameters_or_a_foreign_directory_are_refused(tmp_path):
    generate_scenes(tmp_path / "cache", num_sequences=1, frames_per_sequence=1, image_size=(16, 16))
    with pytest.raises(FileExistsError, match="other parameters"):
        generate_scenes(tmp_path / "cache", num_sequences=2, frames_per_sequence=1, image_size=(16, 16))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no manifest.json"):
        generate_scenes(tmp_path / "foreign", num_sequences=1, frames_per_sequence=1, image_size=(16, 16))


def test_an_interrupted_run_is_completed_on_the_next_call(tmp_path):
    params = dict(num_sequences=1, frames_per_sequence=2, image_size=(16, 16))
    result = generate_scenes(tmp_path, **params)
    manifest = json.loads(result["manifest"].read_text())
    result["manifest"].write_text(json.dumps({**manifest, "complete": False}))  # as if killed mid-way
    (result["annotation_dir"] / "synthetic_train.jgz").unlink()
    assert generate_scenes(tmp_path, **params)["generated"] is True
    assert (result["annotation_dir"] / "synthetic_train.jgz").is_file()


@pytest.mark.parametrize(
    "bad",
    [dict(num_sequences=0), dict(image_size=(4, 4)), dict(category="a/b"), dict(splits={"train": 0.5, "test": 0.2})],
)
def test_invalid_parameters_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError):
        generate_scenes(tmp_path, **{**dict(num_sequences=1, frames_per_sequence=1, image_size=(16, 16)), **bad})


def test_cli_generates_then_reports_the_cache(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "syn"), "--sequences", "2", "--frames", "2", "--size", "24", "16", "--seed", "1"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "rendered 2 x 2 frames at 24x16" in first and f"CO3D_DIR            = {tmp_path / 'syn' / 'co3d'}" in first
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*argv[:3], "3", *argv[4:]]) == 2  # other parameters into the same directory
    assert "other parameters" in capsys.readouterr().err


def test_co3d_dataset_reads_the_synthetic_scenes_unchanged(scenes):
    from training.data.co3d import Co3dDataset

    dataset = Co3dDataset(
        scenes["co3d_dir"],
        scenes["annotation_dir"],
        split="train",
        categories=["synthetic"],
        min_num_images=8,
        img_size=84,
    )
    assert len(dataset) == 2
    sample = dataset[SampleRequest(index=0, num_frames=3, aspect_ratio=0.75, seed=0)]
    assert sample["images"].shape == (3, 3, 56, 84)
    assert sample["point_masks"].float().mean() > 0.5
    assert not sample["point_masks"].all()  # sky stays invalid

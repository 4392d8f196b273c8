"""`vggt predict` on awkward inputs: clear errors that name the problem, and nothing half-written."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vggt.predict.pipeline as pipeline
from tests.helpers import write_png_claiming_size
from tests.predict.conftest import predict_args, run_cli, write_scene_video


def copy_images(scene_images: Path, folder: Path, count: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(path, folder)) for path in sorted(scene_images.iterdir())[:count]]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "a staging directory was left behind"


# errors before the model runs ---------------------------------------------------------------------
def test_an_empty_folder_is_refused_naming_it(tmp_path: Path, tiny_weights: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(*predict_args(tmp_path / "empty", tmp_path / "out", tiny_weights))
    assert result.status == 2
    assert f"{tmp_path / 'empty'} holds no image files" in result.stderr and "Traceback" not in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_an_unknown_export_format_is_refused_listing_the_known_ones(tmp_path, tiny_weights, scene_images) -> None:
    result = run_cli(*predict_args(scene_images, tmp_path / "out", tiny_weights, "--export", "ply,obj"))
    assert result.status == 2
    assert "unknown --export format 'obj'" in result.stderr and "depth, ply, glb, colmap, preview" in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_files_of_other_names_in_the_output_are_left_alone_without_overwrite(tmp_path, tiny_weights, scene_images):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli(*predict_args(scene_images, out, tiny_weights, "--export", "none"))
    assert result.status == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "predictions.npz", "vggt_predict_manifest.json"]
    assert (out / "keep.txt").read_text() == "mine"


def test_ba_without_the_colmap_export_is_refused(tmp_path, tiny_weights, scene_images) -> None:
    result = run_cli(*predict_args(scene_images, tmp_path / "out", tiny_weights, "--ba", "--export", "ply"))
    assert result.status == 2 and "add colmap to --export" in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_an_image_claiming_too_many_pixels_is_refused_naming_it_before_the_model_loads(
    tmp_path, tiny_weights, scene_images
) -> None:
    folder = tmp_path / "images"
    copy_images(scene_images, folder)
    write_png_claiming_size(folder / "huge.png", 20000, 20000)
    result = run_cli(*predict_args(folder, tmp_path / "out", tiny_weights))
    assert result.status == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{folder / 'huge.png'}' claims too many pixels" in result.stderr
    assert "loading the model" not in result.stdout
    assert_nothing_written(tmp_path / "out")


# errors while loading ------------------------------------------------------------------------------
def test_an_unreadable_image_is_refused_naming_it_and_nothing_is_written(tmp_path, tiny_weights, scene_images) -> None:
    folder = tmp_path / "images"
    copy_images(scene_images, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = run_cli(*predict_args(folder, tmp_path / "out", tiny_weights))
    assert result.status == 2
    assert "broken.jpg" in result.stderr and "Cannot read" in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_a_video_that_cannot_be_decoded_is_refused_naming_it(tmp_path, tiny_weights) -> None:
    pytest.importorskip("av")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after")
    result = run_cli(*predict_args(video, tmp_path / "out", tiny_weights))
    assert result.status == 2
    assert f"video {video}" in result.stderr and "Traceback" not in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_a_video_without_pyav_asks_for_it(tmp_path, tiny_weights, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # import av now raises ImportError
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"anything")
    result = run_cli(*predict_args(video, tmp_path / "out", tiny_weights))
    assert result.status == 2 and "pip install av" in result.stderr
    assert_nothing_written(tmp_path / "out")


def test_a_failing_export_leaves_the_previous_output_untouched(
    tmp_path, tiny_weights, scene_images, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("previous run")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline, "write_glb", disk_full)
    result = run_cli(*predict_args(scene_images, out, tiny_weights, "--overwrite", "--export", "ply,glb"))
    assert result.status == 2 and "No space left on device" in result.stderr
    assert [p.name for p in out.iterdir()] == ["previous.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# inputs that are accepted ------------------------------------------------------------------------
def test_non_images_are_skipped_and_mixed_sizes_padded_with_warnings(tmp_path, tiny_weights, scene_images) -> None:
    folder = tmp_path / "images"
    copy_images(scene_images, folder, count=1)
    portrait = np.asarray(Image.open(next(iter(sorted(scene_images.iterdir()))))).transpose(1, 0, 2)  # 120x160
    Image.fromarray(np.ascontiguousarray(portrait)).save(folder / "z_portrait.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    result = run_cli(*predict_args(folder, out, tiny_weights, "--export", "ply,depth"))

    assert result.status == 0, result.stderr
    assert "skipping 1 non-image entries" in result.stderr and "notes.txt" in result.stderr
    assert "different (H, W)" in result.stderr
    with np.load(out / "predictions.npz") as data:
        # landscape 160x120 -> 112x84, centred in the 112x112 batch; portrait 120x160 -> 112x154, cropped to 112
        np.testing.assert_array_equal(data["content_box"], [[0, 14, 112, 98], [0, 0, 112, 112]])
        np.testing.assert_array_equal(data["original_size"], [[160, 120], [120, 160]])
        k, k0 = data["intrinsic"][0], data["intrinsic_original"][0]
        assert k0[1, 2] == pytest.approx((k[1, 2] + 0.5 - 14) / 0.7)  # the padding rows do not count
        content = np.concatenate([data["depth_conf"][0, 14:98].ravel(), data["depth_conf"][1].ravel()])
    ply_header = (out / "points.ply").read_bytes().split(b"end_header")[0].decode()
    assert f"element vertex {np.count_nonzero(content >= np.percentile(content, 50))}\n" in ply_header
    depth = np.asarray(Image.open(out / "depth" / "0000_frame000001.png"))
    assert not depth[:14].any() and not depth[98:].any() and depth[14:98].all(axis=-1).mean() > 0.9  # padding black


def test_a_video_is_sampled_at_the_requested_rate(tmp_path, tiny_weights, scene_images) -> None:
    pytest.importorskip("av")
    video = write_scene_video(tmp_path / "clip.mp4", scene_images)  # 3 seconds at 4 frames per second
    out = tmp_path / "out"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_cli(*predict_args(video, out, tiny_weights, "--fps", "2", "--export", "none"))

    assert result.status == 0, result.stderr
    extracted = sorted(p.name for p in (out / "video_frames").iterdir())
    assert extracted == [f"frame_{i:06d}.png" for i in range(1, 7)]  # 2 per second over 3 seconds
    with np.load(out / "predictions.npz") as data:
        assert list(data["image_names"]) == extracted
        assert data["images"].shape[:2] == (6, 3)

"""What a `vggt app` request does, without Gradio: predict into a request folder, re-render from its predictions,
refuse too many frames before inference, and keep files only as long as their session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import APP_RESOLUTION
from tests.predict.conftest import write_scene_video
from vggt.app.reconstruction import ALL_FRAMES, AppSettings, Reconstructor, selected_frame
from vggt.app.ui import import_gradio
from vggt.app.workspace import Workspace
from vggt.predict.points import MIN_CONFIDENCE, saved_cloud


def glb_geometry_names(path: Path) -> list[str]:
    trimesh = pytest.importorskip("trimesh")
    return sorted(trimesh.load(path, force="scene").geometry)


def expected_count(arrays: dict[str, np.ndarray], points: str, confidence: str, percentile: float, frames) -> int:
    """Pixels of `frames` inside the content box with finite points and confidence above MIN_CONFIDENCE that reach
    the percentile of those pixels' confidence: counted here pixel by pixel, apart from the code under test."""
    values = []
    for frame in frames:
        if points == "world_points_from_depth" and not arrays["camera_valid"][frame]:
            continue  # depth points need the frame's camera
        x0, y0, x1, y1 = arrays["content_box"][frame]
        conf = arrays[confidence][frame, y0:y1, x0:x1]
        finite = np.isfinite(arrays[points][frame, y0:y1, x0:x1]).all(-1)
        values.append(conf[finite & (conf > MIN_CONFIDENCE)])
    values = np.concatenate(values)
    return int((values >= np.percentile(values, percentile)).sum()) if percentile > 0 else len(values)


@pytest.fixture(scope="module")
def reconstructor(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Reconstructor:
    settings = AppSettings(model=str(tiny_weights), device="cpu", dtype="float32", resolution=APP_RESOLUTION)
    return Reconstructor(settings, Workspace(tmp_path_factory.mktemp("app_root")))


@pytest.fixture(scope="module")
def result(reconstructor: Reconstructor, scene_images: Path):
    return reconstructor.reconstruct("session-a", sorted(map(str, scene_images.iterdir())), percentile=50)


def test_reconstruction_writes_predict_outputs_into_its_request_folder(reconstructor, result, scene_images) -> None:
    assert result.folder.parent == reconstructor.workspace.root
    assert (result.outputs / "predictions.npz").is_file() and (result.outputs / "points.ply").is_file()
    assert result.names == sorted(path.name for path in scene_images.iterdir())
    captions = [f"{i}: {name}" for i, name in enumerate(result.names)]
    assert result.frame_choices() == [ALL_FRAMES, *captions]
    depth = result.gallery("depth")
    assert [caption for _, caption in depth] == captions
    assert [Path(path).name for path, _ in depth] == [f"{i:04d}_{Path(n).stem}.png" for i, n in enumerate(result.names)]


def test_render_follows_the_point_source_percentile_frame_and_camera_choices(reconstructor, result) -> None:
    arrays = reconstructor.predictions(result.folder)
    frames = range(len(result.names))
    path, points = reconstructor.render(result.folder, "depth", 30, True, None)
    assert points == expected_count(arrays, "world_points_from_depth", "depth_conf", 30, frames)
    cameras = [f"camera_{frame:04d}" for frame in np.flatnonzero(arrays["camera_valid"])]
    assert glb_geometry_names(path) == sorted(["points", *cameras])

    path, points = reconstructor.render(result.folder, "point_map", 70, False, 1)
    assert points == expected_count(arrays, "world_points", "world_points_conf", 70, [1])
    assert glb_geometry_names(path) == ["points"]
    assert [p.name for p in (result.folder / "renders").iterdir()] == [path.name]  # the earlier render is gone
    assert selected_frame("2: b.png") == 2 and selected_frame(ALL_FRAMES) is None


def test_saved_cloud_keeps_one_frame_and_refuses_a_missing_point_head() -> None:
    arrays = {
        "world_points_from_depth": np.ones((3, 4, 4, 3), dtype=np.float32),
        "depth_conf": np.full((3, 4, 4), 2.0, dtype=np.float32),
        "images": np.zeros((3, 3, 4, 4), dtype=np.float32),
        "content_box": np.array([[0, 0, 4, 4], [1, 0, 3, 4], [0, 0, 4, 4]]),
        "camera_valid": np.array([True, True, False]),
    }
    cloud = saved_cloud(arrays, 0, "depth", frame=1)
    assert set(cloud.frame) == {1} and len(cloud) == 2 * 4  # the content box's 2 columns of 4 rows
    everything = saved_cloud(arrays, 0, "depth")
    assert set(everything.frame) == {0, 1} and len(everything) == 16 + 8  # frame 2 has no usable camera
    with pytest.raises(ValueError, match="no point head"):
        saved_cloud(arrays, 0, "point_map")
    arrays.update(world_points=arrays["world_points_from_depth"], world_points_conf=arrays["depth_conf"])
    assert set(saved_cloud(arrays, 0, "point_map").frame) == {0, 1, 2}  # the point map needs no camera


def test_too_many_frames_are_refused_before_inference(tiny_weights, scene_images, tmp_path) -> None:
    settings = AppSettings(model=str(tiny_weights), device="cpu", resolution=APP_RESOLUTION, max_frames=2)
    small = Reconstructor(settings, Workspace(tmp_path))
    assert small.max_frames == 2  # the option lowers the memory plan's limit
    images = sorted(map(str, scene_images.iterdir()))
    kept = small.reconstruct("s", images[:2]).folder
    with pytest.raises(ValueError, match="at most 2"):
        small.reconstruct("s", images)
    assert list(tmp_path.glob("*/request_*")) == [kept]  # refused before a new folder: the last scene stays
    with pytest.raises(ValueError, match="not both"):
        small.reconstruct("s", [str(next(scene_images.iterdir()))], video="walk.mp4")
    with pytest.raises(ValueError, match="upload images or a video"):
        small.reconstruct("s", [])


def test_a_video_is_sampled_into_the_request_folder_and_counted_against_the_limit(
    tiny_weights, scene_images, tmp_path
) -> None:
    pytest.importorskip("av")
    video = str(write_scene_video(tmp_path / "clip.mp4", scene_images))  # 3 seconds
    settings = AppSettings(model=str(tiny_weights), device="cpu", resolution=APP_RESOLUTION, max_frames=4)
    app = Reconstructor(settings, Workspace(tmp_path))
    result = app.reconstruct("s", None, video=video, fps=1)
    assert result.names == [f"frame_{i:06d}.png" for i in range(1, 4)]
    assert sorted(p.name for p in (result.folder / "video_frames").iterdir()) == result.names
    with pytest.raises(ValueError, match="at most 4 .* fewer frames per second"):
        app.reconstruct("s", None, video=video, fps=2)  # 6 frames


def test_workspace_keeps_one_folder_per_session_and_removes_everything_at_close(tmp_path) -> None:
    workspace = Workspace(tmp_path)
    first = workspace.new_request("a")
    (first / "file").write_text("x")
    other = workspace.new_request("b")
    second = workspace.new_request("a")
    assert not first.exists() and second.is_dir() and other.is_dir()
    assert workspace.owns(second / "outputs") and not workspace.owns(first) and not workspace.owns(tmp_path)
    workspace.end_session("b")
    assert not other.exists() and second.is_dir()
    workspace.close()
    assert not workspace.root.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_gradio_says_what_to_install(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    for variable in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.setenv(variable, "unchanged")  # restored after the test
    with pytest.raises(ValueError, match=r"pip install 'vggt-npu\[app\]'"):
        import_gradio(tmp_path)

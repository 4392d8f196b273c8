"""A frame whose predicted camera is unusable (zero field of view, the camera head's ReLU floor) is left out of the
camera-dependent outputs with one warning, like an image COLMAP cannot register; the rest is still written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vggt.predict.pipeline as pipeline
from tests.helpers import free_port
from tests.predict.conftest import predict_args, run_cli, tiny_model_with_plausible_cameras
from vggt.predict.cameras import camera_validity, describe_invalid_cameras
from vggt.predict.inference import load_model
from vggt.predict.ownership import MANIFEST_NAME
from vggt.predict.viewer import build_viewer, load_scene

pycolmap = pytest.importorskip("pycolmap")
trimesh = pytest.importorskip("trimesh")

WARNING = "vggt predict: warning: "


@pytest.fixture
def frame_1_without_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaded model's camera head predicts a field of view of 0 for frame 1 (its last iteration's output)."""

    def zero_fov(module: torch.nn.Module, inputs: object, output: list[torch.Tensor]) -> list[torch.Tensor]:
        last = output[-1].clone()
        last[:, 1, 7:9] = 0
        return [*output[:-1], last]

    def load_degenerate(*args: object, **kwargs: object):
        model = load_model(*args, **kwargs)
        model.camera_head.register_forward_hook(zero_fov)
        return model

    monkeypatch.setattr(pipeline, "load_model", load_degenerate)


@pytest.fixture(scope="module")
def zero_fov_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights whose camera head outputs a field of view of 0 for every frame: its last layer drives the encoding's
    field-of-view entries below 0 whatever the input, and the head's ReLU floors them."""
    model = tiny_model_with_plausible_cameras()
    last = model.camera_head.pose_branch.fc2
    with torch.no_grad():
        last.weight[7:9] = 0
        last.bias[7:9] = -1
    directory = tmp_path_factory.mktemp("zero_fov_weights")
    model.save_pretrained(directory)
    return directory


def camera_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(WARNING) and "usable camera" in line]


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_a_frame_with_zero_field_of_view_is_left_out_of_every_camera_output(
    tmp_path, tiny_weights, scene_images, frame_1_without_camera
) -> None:
    out = tmp_path / "out"
    result = run_cli(*predict_args(scene_images, out, tiny_weights))

    assert result.status == 0, result.stderr
    (warning,) = camera_warnings(result.stderr)
    assert "1 of 3 frames have no usable camera: frame 1 (frame000002.jpg: field of view (h, w) = (0, 0) degrees)" in (
        warning
    )
    arrays = read_npz(out / "predictions.npz")
    np.testing.assert_array_equal(arrays["camera_valid"], [True, False, True])
    assert np.isnan(arrays["world_points_from_depth"][1]).all()
    assert np.isfinite(arrays["world_points_from_depth"][[0, 2]]).all()
    assert np.isfinite(arrays["depth"]).all() and np.isfinite(arrays["world_points"]).all()  # no camera needed

    confidence = arrays["depth_conf"][[0, 2]]  # the cloud: frames 0 and 2 only, their own percentile
    expected_points = np.count_nonzero(confidence >= np.percentile(confidence, 50))
    assert len(trimesh.load(out / "points.ply").vertices) == expected_points
    scene = trimesh.load(out / "scene.glb")
    assert sorted(name for name in scene.geometry if name.startswith("camera_")) == ["camera_0000", "camera_0002"]
    reconstruction = pycolmap.Reconstruction(str(out / "sparse"))
    assert sorted(image.name for image in reconstruction.images.values()) == ["frame000001.jpg", "frame000003.jpg"]
    assert reconstruction.num_points3D() == expected_points
    for kind in ("depth", "confidence"):
        assert len(list((out / kind).iterdir())) == 3  # every frame: no camera needed
    assert {p.name for p in (out / "preview").iterdir()} == {"points.png", "frames.png"}

    viewer_scene = load_scene(out)
    assert viewer_scene.points(50, 10**7).frame.tolist().count(1) == 0
    assert len(viewer_scene.points(50, 10**7)) == expected_points
    viser = pytest.importorskip("viser")
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        frustums = build_viewer(server, viewer_scene, percentile=50, max_points=10**7)["frustums"]
    finally:
        server.stop()
    centres = [-arrays["extrinsic"][f, :, :3].T @ arrays["extrinsic"][f, :, 3] for f in (0, 2)]
    np.testing.assert_allclose([frustum.position for frustum in frustums], centres, atol=1e-5)


def test_ba_tracks_only_through_frames_with_a_camera(tmp_path, tiny_weights, scene_images, frame_1_without_camera):
    out = tmp_path / "out"
    result = run_cli(
        *predict_args(scene_images, out, tiny_weights, "--ba", "--export", "colmap"),
        *("--resolution", "182", "--max-query-points", "64", "--vis-thresh", "0", "--max-reproj-error", "1000"),
    )
    assert result.status == 0, result.stderr
    assert len(camera_warnings(result.stderr)) == 1
    reconstruction = pycolmap.Reconstruction(str(out / "sparse"))
    assert sorted(reconstruction.images) == [1, 3] and reconstruction.num_points3D() > 0
    for point in reconstruction.points3D.values():
        assert {element.image_id for element in point.track.elements} <= {1, 3}


def test_no_frame_with_a_camera_skips_the_camera_outputs_and_writes_the_rest(
    tmp_path, zero_fov_weights, scene_images
) -> None:
    out = tmp_path / "out"
    result = run_cli(*predict_args(scene_images, out, zero_fov_weights, "--ba"))

    assert result.status == 0, result.stderr
    (warning,) = camera_warnings(result.stderr)
    assert "3 of 3 frames have no usable camera" in warning and "no frame has one" in warning
    written = {"predictions.npz", "depth", "confidence", "preview", MANIFEST_NAME}
    assert {p.name for p in out.iterdir()} == written
    assert [p.name for p in (out / "preview").iterdir()] == ["frames.png"]
    assert "points.ply" not in result.stdout and "sparse/" not in result.stdout
    arrays = read_npz(out / "predictions.npz")
    assert not arrays["camera_valid"].any() and (arrays["pose_enc"][:, 7:9] == 0).all()

    view = run_cli("view", out)
    assert view.status == 2 and "no frame has a usable camera" in view.stderr


def test_strict_makes_an_unusable_camera_an_error_and_writes_nothing(
    tmp_path, tiny_weights, scene_images, frame_1_without_camera
) -> None:
    out = tmp_path / "out"
    result = run_cli(*predict_args(scene_images, out, tiny_weights, "--strict"))
    assert result.status == 2
    assert "error: 1 of 3 frames have no usable camera: frame 1 (frame000002.jpg" in result.stderr
    assert not out.exists()


def test_a_camera_is_unusable_for_a_non_positive_field_of_view_or_any_non_finite_matrix_entry() -> None:
    frames = 6
    pose_enc = np.tile(np.array([0, 0, 0, 1, 0, 0, 0, 0.8, 0.9], dtype=np.float32), (frames, 1))
    extrinsic = np.tile(np.hstack((np.eye(3), np.zeros((3, 1)))).astype(np.float32), (frames, 1, 1))
    intrinsic = np.tile(np.diag([100.0, 100.0, 1.0]).astype(np.float32), (frames, 1, 1))
    pose_enc[1, 7] = 0.0  # the ReLU floor
    pose_enc[2, 8] = -0.1
    pose_enc[3, 7] = np.nan
    extrinsic[4, 2, 3] = np.inf
    intrinsic[5, 0, 2] = np.nan
    valid = camera_validity(pose_enc, extrinsic, intrinsic)
    np.testing.assert_array_equal(valid, [True, False, False, False, False, False])
    message = describe_invalid_cameras(valid, pose_enc, extrinsic, intrinsic, [f"f{i}.jpg" for i in range(frames)])
    assert "5 of 6 frames have no usable camera" in message
    assert "4 (f4.jpg: non-finite extrinsic)" in message and "5 (f5.jpg: non-finite intrinsic)" in message


@pytest.mark.slow
def test_strict_stops_a_two_process_run_naming_the_frames_and_writes_nothing(
    tmp_path, zero_fov_weights, scene_images
) -> None:
    """camera_valid comes from the gathered cameras of every rank, and rank 0's --strict error reaches the user."""
    out = tmp_path / "out"
    args = ("--export", "none", "--strict", "--nproc", 2)
    result = run_cli(*predict_args(scene_images, out, zero_fov_weights, *args))
    assert result.status == 2
    assert "error: process 0 of 2: 3 of 3 frames have no usable camera: frames 0 (frame000001.jpg" in result.stderr
    assert not out.exists()

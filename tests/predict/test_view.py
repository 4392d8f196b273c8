"""`vggt view`: the viser scene it builds, its controls, and its errors when something is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_port
from tests.predict.conftest import run_cli
from vggt.predict.viewer import build_viewer, load_scene


def test_view_without_viser_says_how_to_install_it(predicted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "viser", None)  # import viser now raises ImportError
    result = run_cli("view", predicted[0])
    assert result.status == 2 and "pip install 'vggt-npu[demo]'" in result.stderr


def test_view_of_a_directory_without_predictions_says_what_to_run(tmp_path: Path) -> None:
    pytest.importorskip("viser")
    result = run_cli("view", tmp_path)
    assert result.status == 2
    assert str(tmp_path / "predictions.npz") in result.stderr and "vggt predict" in result.stderr


def test_viewer_shows_the_confident_points_and_the_cameras_and_follows_its_controls(predicted) -> None:
    viser = pytest.importorskip("viser")
    with np.load(predicted[0] / "predictions.npz") as data:
        confidence, extrinsic = data["depth_conf"], data["extrinsic"]
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    shown: list[int] = []
    add_point_cloud = server.scene.add_point_cloud

    def spy(name: str, points: np.ndarray, colors: np.ndarray, **kwargs: object):
        shown.append(len(points))
        return add_point_cloud(name, points, colors, **kwargs)

    server.scene.add_point_cloud = spy
    try:
        controls = build_viewer(server, load_scene(predicted[0]), percentile=50, max_points=10**7)
        controls["confidence"].value = 90
        controls["show_cameras"].value = False
    finally:
        server.stop()

    assert shown == [np.count_nonzero(confidence >= np.percentile(confidence, p)) for p in (50, 90)]
    for frame, frustum in enumerate(controls["frustums"]):
        rotation, translation = extrinsic[frame, :, :3], extrinsic[frame, :, 3]
        np.testing.assert_allclose(frustum.position, -rotation.T @ translation, atol=1e-5)
        assert frustum.visible is False


def recording_viser_server(viser, hosts: list[str]) -> type:
    """A ViserServer that records the host asked for, listens on a free loopback port instead, and returns at once
    from sleep_forever as Ctrl-C would."""

    class Recording(viser.ViserServer):
        def __init__(self, host: str, port: int, **_: object) -> None:
            hosts.append(host)
            super().__init__(host="127.0.0.1", port=free_port(), verbose=False)

        def sleep_forever(self) -> None:
            raise KeyboardInterrupt

    return Recording


def test_view_listens_on_loopback_only_unless_told_and_warns_for_other_hosts(
    predicted, monkeypatch: pytest.MonkeyPatch
) -> None:
    viser = pytest.importorskip("viser")
    hosts: list[str] = []
    monkeypatch.setattr(viser, "ViserServer", recording_viser_server(viser, hosts))
    default = run_cli("view", predicted[0])
    everywhere = run_cli("view", predicted[0], "--host", "0.0.0.0")
    assert default.status == 0 and everywhere.status == 0
    assert hosts == ["127.0.0.1", "0.0.0.0"]
    assert "warning" not in default.stderr and "http://127.0.0.1:8080" in default.stdout
    warning = everywhere.stderr.strip()
    assert warning.startswith("vggt view: warning: --host 0.0.0.0") and "network" in warning
    assert len(warning.splitlines()) == 1


def test_view_help_and_readme_give_the_loopback_url() -> None:
    help_text = run_cli("view", "--help").stdout
    assert "default 127.0.0.1" in help_text and "http://127.0.0.1:8080" in help_text
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "vggt view out" in readme and "http://localhost" not in readme
    assert "# browse it at http://127.0.0.1:8080" in readme


def test_view_of_a_foreign_npz_names_the_file_and_the_missing_keys(tmp_path: Path) -> None:
    pytest.importorskip("viser")
    np.savez(tmp_path / "predictions.npz", depth=np.zeros((2, 4, 4)), images=np.zeros((2, 3, 4, 4)))
    result = run_cli("view", tmp_path)
    assert result.status == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "predictions.npz") in message
    for key in ("world_points_from_depth", "depth_conf", "extrinsic", "intrinsic", "content_box", "camera_valid"):
        assert repr(key) in message
    assert "'images'" not in message and "vggt predict --images" in message

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

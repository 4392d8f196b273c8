"""demo_viser.py: the viewer's point-map option, the script's run into a temporary folder (with a viser server that
stops at once) and its refusal of upstream flags it does not support. No test leaves a server running."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_port
from tests.predict.demo_helpers import run_script
from vggt.demos import viser_folder
from vggt.demos.viser_folder import ViserFolderOptions, view_folder
from vggt.predict import viewer
from vggt.predict.viewer import build_viewer, load_scene


def read_predictions(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "predictions.npz") as data:
        return {key: data[key] for key in data.files}


def content_of(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """bool [S, H, W]: every frame's content box, cameras or not."""
    mask = np.zeros(arrays["depth_conf"].shape, dtype=bool)
    for frame, (x0, y0, x1, y1) in enumerate(arrays["content_box"]):
        mask[frame, y0:y1, x0:x1] = True
    return mask


def test_load_scene_with_the_point_map_reads_the_point_heads_points_and_confidence(predicted) -> None:
    arrays = read_predictions(predicted[0])
    scene = load_scene(predicted[0], use_point_map=True)
    np.testing.assert_array_equal(scene.world_points, arrays["world_points"])
    np.testing.assert_array_equal(scene.confidence, arrays["world_points_conf"])
    np.testing.assert_array_equal(scene.valid, content_of(arrays))
    default = load_scene(predicted[0])  # `vggt view` is unchanged: the depth points
    np.testing.assert_array_equal(default.world_points, arrays["world_points_from_depth"])
    np.testing.assert_array_equal(default.confidence, arrays["depth_conf"])


def spied_server(viser, shown: list[np.ndarray], hosts: list[str]) -> type:
    """A ViserServer on a free loopback port that records the host asked for and every point cloud drawn, and whose
    sleep_forever returns at once, as Ctrl-C would."""

    class Spied(viser.ViserServer):
        def __init__(self, host: str = "127.0.0.1", port: int = 0, **_: object) -> None:
            hosts.append(host)
            super().__init__(host="127.0.0.1", port=free_port(), verbose=False)
            add_point_cloud = self.scene.add_point_cloud

            def spy(name: str, points: np.ndarray, colors: np.ndarray, **kwargs: object):
                shown.append(np.array(points))
                return add_point_cloud(name, points, colors, **kwargs)

            self.scene.add_point_cloud = spy

        def sleep_forever(self) -> None:
            raise KeyboardInterrupt

    return Spied


def test_the_viewer_shows_the_point_map_above_the_percentile(predicted) -> None:
    viser = pytest.importorskip("viser")
    arrays = read_predictions(predicted[0])
    shown: list[np.ndarray] = []
    server = spied_server(viser, shown, [])()
    try:
        build_viewer(server, load_scene(predicted[0], use_point_map=True), percentile=25, max_points=10**7)
    finally:
        server.stop()
    confidence = arrays["world_points_conf"][content_of(arrays)]
    [points] = shown
    assert len(points) == np.count_nonzero(confidence >= np.percentile(confidence, 25))
    head_points = arrays["world_points"].reshape(-1, 3)
    assert np.isin(points[:, 0], head_points[:, 0]).all()  # the point head's points, not the depth's


def test_the_point_map_is_refused_clearly_without_the_point_head(predicted, tmp_path: Path) -> None:
    arrays = read_predictions(predicted[0])
    del arrays["world_points"], arrays["world_points_conf"]
    np.savez(tmp_path / "predictions.npz", **arrays)
    with pytest.raises(ValueError, match="no world_points or world_points_conf.*no point head"):
        load_scene(tmp_path, use_point_map=True)
    assert load_scene(tmp_path).world_points.shape == arrays["world_points_from_depth"].shape


def test_the_script_predicts_into_a_temporary_folder_serves_it_and_deletes_it(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    viser = pytest.importorskip("viser")
    shown: list[np.ndarray] = []
    hosts: list[str] = []
    served: list[tuple[Path, dict[str, np.ndarray]]] = []
    monkeypatch.setattr(viser, "ViserServer", spied_server(viser, shown, hosts))
    real_serve = viewer.serve

    def serve(out_dir: Path, *args: object) -> None:
        served.append((out_dir, read_predictions(out_dir)))
        real_serve(out_dir, *args)

    monkeypatch.setattr(viser_folder, "serve", serve)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    options = ViserFolderOptions(scene_images, str(tiny_weights), device="cpu", dtype="float32", use_point_map=True)

    view_folder(options)

    [(out_dir, arrays)] = served
    assert (tmp_path / "temporary") in out_dir.parents
    assert list((tmp_path / "temporary").iterdir()) == []  # deleted once the viewer stopped
    assert hosts == ["127.0.0.1"]  # loopback unless --host says otherwise
    height = round(120 * 518 / 160 / 14) * 14  # crop mode: width 518, height scaled to a multiple of 14
    assert arrays["images"].shape == (3, 3, height, 518)
    confidence = arrays["world_points_conf"]
    [points] = shown
    assert len(points) == np.count_nonzero(confidence >= np.percentile(confidence, 25))  # upstream's default 25 %


def test_the_temporary_folder_is_deleted_when_the_viewer_fails(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("viser")

    def serve(out_dir: Path, *args: object) -> None:
        assert (out_dir / "predictions.npz").is_file()
        raise KeyboardInterrupt  # Ctrl-C before the server started

    monkeypatch.setattr(viser_folder, "serve", serve)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    with pytest.raises(KeyboardInterrupt):
        view_folder(ViserFolderOptions(scene_images, str(tiny_weights), device="cpu", dtype="float32"))
    assert list((tmp_path / "temporary").iterdir()) == []


@pytest.mark.parametrize("flag", ["--mask_sky", "--background_mode"])
def test_unsupported_upstream_flags_exit_2_naming_the_flag_before_any_work(flag: str, scene_images: Path) -> None:
    result = run_script("demo_viser.py", "--image_folder", scene_images, flag)
    assert result.returncode == 2
    assert result.stderr.startswith(f"demo_viser.py: {flag} is not supported here (")
    assert result.stdout == ""


def test_without_viser_the_script_says_how_to_install_it(scene_images: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "viser", None)  # import viser now raises ImportError
    with pytest.raises(ValueError, match="pip install"):
        view_folder(ViserFolderOptions(scene_images))

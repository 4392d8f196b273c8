"""`vggt app` as its users meet it: a real server process, driven by `gradio_client` through `/reconstruct` and by
headless Chromium through the page (upload, Reconstruct, the scene drawn in the 3D canvas, errors shown), offline,
and leaving no file behind when it is stopped."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import APP_RESOLUTION
from tests.browser import (
    BROWSERS,
    LOOPBACK,
    AppPage,
    DevToolsTab,
    PageNotReady,
    chromium_command,
    find_browser,
    listening,
    magenta_pixels,
    off_machine,
    page_websocket,
    started,
    wait_for,
)
from tests.helpers import free_port

pytest.importorskip("gradio", reason="vggt app needs gradio: pip install 'vggt-npu[app]' (Python >= 3.10)")

START_TIMEOUT = 120.0  # seconds for the server to import gradio, load the tiny model and listen
READY_TIMEOUT = 240.0  # seconds for the page to load, reconstruct and draw; SwiftShader on a busy CPU is slow
MIN_SCENE_PIXELS = 300  # magenta pixels inside the 3D canvas that show the points are drawn
WINDOW = (1280, 1000)


@dataclass
class AppServer:
    url: str
    root: Path  # its temporary folder
    process: subprocess.Popen
    log: Path


@contextlib.contextmanager
def app_server(tiny_weights: Path, folder: Path) -> Iterator[AppServer]:
    port, log = free_port(), folder / "app.log"
    command = [sys.executable, "-m", "vggt", "app", "--model", str(tiny_weights), "--device", "cpu"]
    command += ["--resolution", str(APP_RESOLUTION), "--host", LOOPBACK, "--port", str(port)]
    with started(command, log, env={**os.environ, "TMPDIR": str(folder)}) as process:
        deadline = time.monotonic() + START_TIMEOUT
        wait_for(lambda: listening(process, port, log), "vggt app to listen", deadline)
        root = re.search(r"files in (\S+), removed at exit", log.read_text())
        assert root, log.read_text()
        yield AppServer(f"http://{LOOPBACK}:{port}/", Path(root.group(1)), process, log)


@pytest.fixture(scope="module")
def server(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with app_server(tiny_weights, tmp_path_factory.mktemp("app_server")) as running:
        yield running


def confident_pixel_count(predictions: dict[str, np.ndarray], percentile: float) -> int:
    """Depth points the scene should hold, counted pixel by pixel from the returned predictions."""
    kept = []
    for frame, (x0, y0, x1, y1) in enumerate(predictions["content_box"]):
        if not predictions["camera_valid"][frame]:
            continue
        conf = predictions["depth_conf"][frame, y0:y1, x0:x1]
        finite = np.isfinite(predictions["world_points_from_depth"][frame, y0:y1, x0:x1]).all(-1)
        kept.append(conf[finite & (conf > 1e-5)])
    values = np.concatenate(kept)
    return int((values >= np.percentile(values, percentile)).sum())


def test_gradio_client_reconstructs_through_the_api_endpoint(server: AppServer, scene_images: Path, tmp_path) -> None:
    client_module = pytest.importorskip("gradio_client")
    trimesh = pytest.importorskip("trimesh")
    client = client_module.Client(server.url, verbose=False, download_files=str(tmp_path))
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/reconstruct"]
    images = sorted(scene_images.iterdir())
    scene, archive, status = client.predict(
        [client_module.handle_file(str(path)) for path in images], 40, api_name="/reconstruct"
    )
    assert status.startswith(f"Reconstructed {len(images)} frames"), status
    with zipfile.ZipFile(archive) as outputs:
        names = outputs.namelist()
        with outputs.open("predictions.npz") as file, np.load(file) as data:
            predictions = {key: data[key] for key in data.files}
    assert {"points.ply", "sparse/cameras.bin", "sparse/images.bin"} <= set(names)
    assert list(predictions["image_names"]) == [path.name for path in images]
    loaded = trimesh.load(scene, force="scene")
    cloud = loaded.geometry["points"]
    assert len(cloud.vertices) == confident_pixel_count(predictions, 40)
    assert f"Scene: {len(cloud.vertices)} points." in status
    cameras = [name for name in loaded.geometry if name.startswith("camera_")]
    assert len(cameras) == int(predictions["camera_valid"].sum())


def test_gradio_client_gets_the_error_of_a_file_that_is_no_image(server: AppServer, tmp_path) -> None:
    client_module = pytest.importorskip("gradio_client")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    client = client_module.Client(server.url, verbose=False, download_files=str(tmp_path))
    scene, archive, status = client.predict([client_module.handle_file(str(notes))], 50, api_name="/reconstruct")
    assert scene is None and archive is None
    assert status.startswith("error:") and "notes.txt" in status and "image" in status


def test_the_page_reconstructs_and_draws_the_scene_in_headless_chromium(
    server: AppServer, magenta_images: list[Path], tmp_path: Path
) -> None:
    browser = find_browser()
    if browser is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(BROWSERS)}); install it with apt-get install chromium")
    pytest.importorskip("websockets.sync.client", reason="the DevTools client needs websockets >= 11")
    deadline = time.monotonic() + READY_TIMEOUT
    profile = tmp_path / "profile"
    with started([*chromium_command(browser, profile, WINDOW), "about:blank"], tmp_path / "chromium.log"):
        tab = DevToolsTab(wait_for(lambda: page_websocket(profile), "Chromium's DevTools port", deadline))
        page = AppPage(tab, deadline)
        try:
            tab.call("Network.enable")
            page.open(server.url)
            page.upload_and_reconstruct(magenta_images)
            drawn: list[np.ndarray] = []

            def scene_drawn() -> bool | None:
                try:
                    part = page.canvas()
                except PageNotReady:
                    return None
                if part is not None:
                    drawn[:] = [part]
                return True if part is not None and magenta_pixels(part) >= MIN_SCENE_PIXELS else None

            try:
                wait_for(scene_drawn, "the scene to be drawn in the 3D canvas", deadline)
            finally:
                Image.fromarray(tab.screenshot()).save(tmp_path / "app.png")  # the whole page, to look at
            status = page.text("#vggt-status")
            assert f"Reconstructed {len(magenta_images)} frames" in status, status

            page.open(server.url)  # a new session
            notes = tmp_path / "notes.txt"
            notes.write_text("not an image")
            page.upload_and_reconstruct([notes])
            error = wait_for(lambda: page.text("#vggt-status") if "Error" in page.text("#vggt-status") else None,
                             "the error to be shown", deadline)  # fmt: skip
            assert "notes.txt" in error and "image" in error
            tab.call("Runtime.evaluate", expression="1")  # collects the last network events
            assert off_machine(tab.requested) == [], "the page fetched from outside this machine"
        finally:
            tab.close()


def test_stopping_the_server_removes_its_files(tiny_weights: Path, scene_images: Path, tmp_path: Path) -> None:
    client_module = pytest.importorskip("gradio_client")
    with app_server(tiny_weights, tmp_path) as running:
        client = client_module.Client(running.url, verbose=False, download_files=str(tmp_path / "downloads"))
        images = [client_module.handle_file(str(path)) for path in sorted(scene_images.iterdir())]
        assert client.predict(images, 50, api_name="/reconstruct")[0] is not None
        assert any(running.root.rglob("predictions.npz"))
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=60) == 128 + signal.SIGTERM, running.log.read_text()
    assert not running.root.exists(), running.log.read_text()

"""`vggt view` seen in a real browser: headless Chromium, with SwiftShader's software WebGL, loads the page that
`vggt view` serves on the loopback address, and a screenshot shows the point cloud drawn.

The page is ready only once viser's websocket has delivered the scene and WebGL has drawn it, so the test drives one
browser tab over the DevTools protocol and takes screenshots until the cloud's colour shows (or a deadline passes),
instead of sleeping for a fixed time. Skipped, saying why, where no Chromium is installed (`.ci/run` installs the
Debian package and carries on without it when that fails).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image

from tests.helpers import free_port
from vggt.predict.viewer import THUMBNAIL_WIDTH

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
READY_TIMEOUT = 180.0  # seconds for the browser to start and draw the scene; SwiftShader on a busy CPU is slow
POLL_INTERVAL = 0.5  # seconds between two screenshots
MIN_CLOUD_PIXELS = 1000  # magenta pixels that show the cloud is drawn
WINDOW = (1024, 768)
LOOPBACK = "127.0.0.1"
Result = TypeVar("Result")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def magenta_pixels(picture: np.ndarray) -> int:
    """Pixels [H, W, 3] uint8 well above green in red and blue: the test cloud's colour, which neither viser's own
    interface (white, greys, blue controls, the red-green-blue axes) nor the test's frustum thumbnails use."""
    red, green, blue = (picture[..., channel].astype(np.int64) for channel in range(3))
    return int(np.count_nonzero((red - green > 80) & (blue - green > 80)))


@pytest.fixture
def magenta_cloud_prediction(tmp_path: Path) -> Path:
    """A predict output with just what `vggt view` reads: two cameras facing two planes of points.

    The images are green, with magenta at odd rows and columns; only those magenta pixels are confident, so the
    cloud is all magenta. The frustums' thumbnails of these 2 * THUMBNAIL_WIDTH-wide images keep every 2nd pixel
    from the first (vggt.predict.viewer), so they show green only: magenta on screen can only be the cloud.
    """
    frames, width = 2, 2 * THUMBNAIL_WIDTH
    height = width * 3 // 4
    v, u = np.mgrid[0:height, 0:width]
    cloud = (v % 2 == 1) & (u % 2 == 1)
    plane = np.stack([(u / (width - 1) - 0.5) * 2, (v / (height - 1) - 0.5) * 1.5, np.full(u.shape, 2.0)], -1)
    images = np.zeros((frames, 3, height, width), dtype=np.float32)
    images[:, 1] = ~cloud  # green
    images[:, 0] = images[:, 2] = cloud  # magenta
    extrinsic = np.tile(np.eye(3, 4, dtype=np.float32), (frames, 1, 1))
    extrinsic[1, 0, 3] = -0.3  # the second camera 0.3 to the right
    intrinsic = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float32)
    out = tmp_path / "prediction"
    out.mkdir()
    np.savez(
        out / "predictions.npz",
        world_points_from_depth=np.stack([plane, plane + [0, 0, 0.5]]).astype(np.float32),
        depth_conf=np.stack([cloud * 2.0] * frames).astype(np.float32),
        images=images,
        content_box=np.array([[0, 0, width, height]] * frames),
        extrinsic=extrinsic,
        intrinsic=np.stack([intrinsic] * frames),
        camera_valid=np.ones(frames, dtype=bool),
    )
    return out


def wait_for(condition: Callable[[], Result | None], what: str, deadline: float) -> Result:
    """Call `condition` until it returns something other than None; fail naming `what` at the deadline."""
    while True:
        result = condition()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_INTERVAL)


def listening(server: subprocess.Popen, port: int, log: Path) -> bool | None:
    """True once `vggt view` accepts connections on `port`; a failure if it exited."""
    if server.poll() is not None:
        pytest.fail(f"vggt view exited with status {server.returncode}:\n{log.read_text()}")
    with socket.socket() as probe:
        return True if probe.connect_ex((LOOPBACK, port)) == 0 else None


class PageNotReady(RuntimeError):
    """A DevTools call the tab refused, e.g. a screenshot while the page is still being attached."""


class DevToolsTab:
    """One browser tab driven over the Chrome DevTools protocol (JSON messages on a websocket)."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect  # viser's own dependency

        self.socket = connect(url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise PageNotReady(f"{method}: {message['error']}")
                return message["result"]

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        self.socket.close()


def page_websocket(profile: Path) -> str | None:
    """The DevTools websocket of the browser's first tab, once the browser has written its port."""
    port_file = profile / "DevToolsActivePort"
    if not port_file.exists() or not port_file.read_text().strip():
        return None
    port = int(port_file.read_text().split()[0])
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the env says
    with no_proxy.open(f"http://{LOOPBACK}:{port}/json/list", timeout=10) as answer:
        pages = [target for target in json.load(answer) if target.get("type") == "page"]
    return pages[0]["webSocketDebuggerUrl"] if pages else None


@contextlib.contextmanager
def started(command: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """A process with its output in `log`, ended when the block leaves."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_view_draws_the_point_cloud_in_headless_chromium(tmp_path: Path, magenta_cloud_prediction: Path) -> None:
    browser = find_browser()
    if browser is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(BROWSERS)}); install it with apt-get install chromium")
    pytest.importorskip("viser")
    pytest.importorskip("websockets.sync.client", reason="the DevTools client needs websockets >= 11")
    deadline = time.monotonic() + READY_TIMEOUT
    port, profile = free_port(), tmp_path / "profile"
    view = [sys.executable, "-m", "vggt", "view", str(magenta_cloud_prediction), "--host", LOOPBACK]
    view += ["--port", str(port), "--conf-threshold", "0"]
    chromium = [browser, "--headless=new", "--no-sandbox", "--no-first-run", f"--user-data-dir={profile}"]
    chromium += [f"--remote-debugging-address={LOOPBACK}", "--remote-debugging-port=0"]
    chromium += ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", f"--window-size={WINDOW[0]},{WINDOW[1]}"]

    shots: list[np.ndarray] = []

    def cloud_drawn() -> np.ndarray | None:
        try:
            shots[:] = [tab.screenshot()]
        except PageNotReady:
            return None
        return shots[0] if magenta_pixels(shots[0]) >= MIN_CLOUD_PIXELS else None

    view_log = tmp_path / "view.log"
    with started(view, view_log) as server:
        wait_for(lambda: listening(server, port, view_log), "vggt view to listen", deadline)
        with started([*chromium, f"http://{LOOPBACK}:{port}"], tmp_path / "chromium.log"):
            tab = DevToolsTab(wait_for(lambda: page_websocket(profile), "Chromium's DevTools port", deadline))
            try:
                wait_for(cloud_drawn, "the point cloud to be drawn", deadline)
            finally:
                tab.close()
                if shots:
                    Image.fromarray(shots[0]).save(tmp_path / "view.png")  # the last screenshot, to look at
    assert shots[0].std() > 10  # not a blank page

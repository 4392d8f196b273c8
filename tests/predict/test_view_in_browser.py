"""`vggt view` seen in a real browser: headless Chromium, with SwiftShader's software WebGL, loads the page that
`vggt view` serves on the loopback address, and a screenshot shows the point cloud drawn.

The page is ready only once viser's websocket has delivered the scene and WebGL has drawn it, so the test drives one
browser tab over the DevTools protocol and takes screenshots until the cloud's colour shows (or a deadline passes),
instead of sleeping for a fixed time. Skipped, saying why, where no Chromium is installed (`.ci/run` installs the
Debian package and carries on without it when that fails).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import (
    BROWSERS,
    LOOPBACK,
    DevToolsTab,
    PageNotReady,
    chromium_command,
    find_browser,
    listening,
    magenta_pixels,
    page_websocket,
    started,
    wait_for,
)
from tests.helpers import free_port
from vggt.predict.viewer import THUMBNAIL_WIDTH

READY_TIMEOUT = 180.0  # seconds for the browser to start and draw the scene; SwiftShader on a busy CPU is slow
MIN_CLOUD_PIXELS = 1000  # magenta pixels that show the cloud is drawn
WINDOW = (1024, 768)


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
    chromium = chromium_command(browser, profile, WINDOW)

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

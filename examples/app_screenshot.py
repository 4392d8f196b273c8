"""The README's `vggt app` picture: the page in headless Chromium after a reconstruction, scene drawn.

    python examples/app_screenshot.py --out docs/images/vggt_app.png
    python examples/app_screenshot.py --model runs/synthetic/ckpts/checkpoint.pt --config tiny --out app.png

Starts `vggt app` on a free loopback port (default model: the tiny synthetic-weights model the tests use; default
images: three rendered views of a generated scene), uploads the images through the page's file input over the
DevTools protocol, presses Reconstruct and saves the page once the 3D canvas has drawn something. Needs gradio and
Chromium (the same as tests/app/test_app_server.py, which this shares its browser driver with).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.browser, tests.predict

from tests.browser import (  # noqa: E402
    LOOPBACK,
    AppPage,
    DevToolsTab,
    PageNotReady,
    chromium_command,
    find_browser,
    listening,
    page_websocket,
    started,
    wait_for,
)
from tests.helpers import free_port  # noqa: E402
from tests.predict.conftest import SCENE_SIZE, tiny_model_with_plausible_cameras  # noqa: E402
from training.data.synthetic import generate_scenes  # noqa: E402

WINDOW = (1280, 1400)  # tall enough for the status line and the galleries
TIMEOUT = 300.0
DRAWN_PIXELS = 2000  # canvas pixels away from its flat background: the scene is there


def drawn_page(page: AppPage) -> np.ndarray | None:
    """The page's screenshot once the scene's canvas holds enough non-background pixels."""
    try:
        canvas = page.canvas()
    except PageNotReady:
        return None
    if canvas is None:
        return None
    background = np.median(canvas.reshape(-1, 3), axis=0)
    if int((np.abs(canvas.astype(np.int64) - background).sum(-1) > 60).sum()) < DRAWN_PIXELS:
        return None
    return page.tab.screenshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="weights for vggt app (default: tiny synthetic weights, written here)")
    parser.add_argument("--config", help="--config for vggt app")
    parser.add_argument("--images", nargs="+", type=Path, help="images to upload (default: a generated scene)")
    parser.add_argument("--resolution", type=int, default=224, help="vggt app --resolution (default 224)")
    parser.add_argument("--out", type=Path, default=Path("docs/images/vggt_app.png"), help="PNG to write")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="vggt-app-screenshot-") as scratch_name:
        scratch = Path(scratch_name)
        model = args.model
        if model is None:
            model = str(scratch / "weights")
            tiny_model_with_plausible_cameras().save_pretrained(model)
        images = args.images
        if not images:
            scenes = generate_scenes(scratch / "scene", 1, 4, SCENE_SIZE, seed=3, splits={"train": 1})
            images = sorted((scenes["co3d_dir"] / scenes["category"] / "seq0000" / "images").iterdir())
        port, deadline = free_port(), time.monotonic() + TIMEOUT
        app = [sys.executable, "-m", "vggt", "app", "--model", model, "--resolution", str(args.resolution)]
        app += ["--host", LOOPBACK, "--port", str(port)] + (["--config", args.config] if args.config else [])
        log = scratch / "app.log"
        with started(app, log) as server:
            wait_for(lambda: listening(server, port, log), "vggt app to listen", deadline)
            profile = scratch / "profile"
            with started([*chromium_command(browser, profile, WINDOW), f"http://{LOOPBACK}:{port}/"], scratch / "c"):
                tab = DevToolsTab(wait_for(lambda: page_websocket(profile), "Chromium's DevTools port", deadline))
                try:
                    page = AppPage(tab, deadline)
                    page.upload_and_reconstruct([path.resolve() for path in images])
                    shot = wait_for(lambda: drawn_page(page), "the scene to be drawn", deadline)
                finally:
                    tab.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

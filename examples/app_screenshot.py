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
FILE_INPUT = "#vggt-images input[type=file]"
CANVAS_BOX = (
    "(() => { const c = document.querySelector('#vggt-scene canvas'); if (!c) return null;"
    " const r = c.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()"
)
DRAWN_PIXELS = 2000  # canvas pixels away from its flat background: the scene is there


def drawn_canvas(tab: DevToolsTab) -> np.ndarray | None:
    """The page's screenshot once the scene's canvas holds enough non-background pixels."""
    try:
        box = tab.evaluate(CANVAS_BOX)
        if not box or box[2] - box[0] < 10:
            return None
        shot = tab.screenshot()
    except PageNotReady:
        return None
    x0, y0, x1, y1 = (max(int(round(v)), 0) for v in box)
    canvas = shot[y0:y1, x0:x1].astype(np.int64)
    background = np.median(canvas.reshape(-1, 3), axis=0)
    return shot if int((np.abs(canvas - background).sum(-1) > 60).sum()) >= DRAWN_PIXELS else None


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
                    ready = f"!!document.querySelector({FILE_INPUT!r})"
                    wait_for(lambda: tab.evaluate(ready) or None, "the file input", deadline)
                    tab.set_files(FILE_INPUT, [path.resolve() for path in images])
                    listed = f"document.querySelector('#vggt-images').innerText.includes({images[-1].stem!r})"
                    wait_for(lambda: tab.evaluate(listed) or None, "the upload", deadline)
                    tab.evaluate("document.querySelector('#vggt-reconstruct').click()")
                    shot = wait_for(lambda: drawn_canvas(tab), "the scene to be drawn", deadline)
                finally:
                    tab.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

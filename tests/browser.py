"""Headless Chromium driven over the DevTools protocol, for the tests that look at a page and for
examples/app_screenshot.py (the README's picture of `vggt app`).

A page that draws with WebGL is ready only once its data has arrived and the canvas is drawn, so callers poll
screenshots with `wait_for` until what they look for shows (or a deadline passes), instead of sleeping.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
POLL_INTERVAL = 0.5  # seconds between two looks
LOOPBACK = "127.0.0.1"
APP_FILE_INPUT = "#vggt-images input[type=file]"
Result = TypeVar("Result")


class TimedOut(AssertionError):
    """A wait_for deadline passed."""


class PageNotReady(RuntimeError):
    """A DevTools call the tab refused, e.g. a screenshot while the page is still being attached."""


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def chromium_command(browser: str, profile: Path, window: tuple[int, int]) -> list[str]:
    """Headless Chromium with software WebGL (SwiftShader), DevTools on a free loopback port written to `profile`."""
    command = [browser, "--headless=new", "--no-sandbox", "--no-first-run", f"--user-data-dir={profile}"]
    command += [f"--remote-debugging-address={LOOPBACK}", "--remote-debugging-port=0"]
    return command + [
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        f"--window-size={window[0]},{window[1]}",
    ]


def wait_for(condition: Callable[[], Result | None], what: str, deadline: float) -> Result:
    """Call `condition` until it returns something other than None; raise TimedOut naming `what` at the deadline."""
    while True:
        result = condition()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out waiting for {what}")
        time.sleep(POLL_INTERVAL)


def listening(server: subprocess.Popen, port: int, log: Path) -> bool | None:
    """True once `server` accepts connections on `port`; an error with its log if it exited."""
    if server.poll() is not None:
        raise AssertionError(f"{server.args} exited with status {server.returncode}:\n{log.read_text()}")
    with socket.socket() as probe:
        return True if probe.connect_ex((LOOPBACK, port)) == 0 else None


class DevToolsTab:
    """One browser tab driven over the Chrome DevTools protocol (JSON messages on a websocket). The URLs of the
    requests the page makes are collected in `requested` once `Network.enable` has been called."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect  # viser's and gradio's own dependency

        self.socket = connect(url, max_size=None, open_timeout=30)
        self.next_id = 0
        self.requested: list[str] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("method") == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise PageNotReady(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise PageNotReady(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Put `paths` into the file input matching the CSS `selector`, as a user choosing them would."""
        root = self.call("DOM.getDocument", depth=-1)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise PageNotReady(f"no element matches {selector}")
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(path) for path in paths])

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        self.socket.close()


def magenta_pixels(picture: np.ndarray) -> int:
    """Pixels [H, W, 3] uint8 well above green in red and blue: the colour tests give their points, which neither
    viser's nor Gradio's interface uses (white, greys, blue or orange controls, the red-green-blue axes)."""
    red, green, blue = (picture[..., channel].astype(np.int64) for channel in range(3))
    return int(np.count_nonzero((red - green > 80) & (blue - green > 80)))


class AppPage:
    """The `vggt app` page in one Chromium tab (its elem_ids: vggt-images, vggt-reconstruct, vggt-scene,
    vggt-status), with the steps a user takes."""

    def __init__(self, tab: DevToolsTab, deadline: float) -> None:
        self.tab, self.deadline = tab, deadline

    def text(self, selector: str) -> str:
        return self.tab.evaluate(f"(document.querySelector({selector!r}) || {{innerText: ''}}).innerText") or ""

    def holds(self, expression: str) -> bool | None:
        """True once the JavaScript `expression` is truthy in the page; None before, or while a document loads."""
        try:
            return bool(self.tab.evaluate(expression)) or None
        except PageNotReady:
            return None

    def open(self, url: str) -> None:
        """Navigate to `url` and wait for the new document's file input: the document being left, which may still
        answer for a moment, is marked first so that it is never taken for the new one."""
        self.tab.evaluate("document.vggtLeftBehind = true")
        self.tab.call("Page.navigate", url=url)
        fresh = "!document.vggtLeftBehind && !!document.querySelector(" + repr(APP_FILE_INPUT) + ")"
        wait_for(lambda: self.holds(fresh), "the app page to load", self.deadline)

    def upload_and_reconstruct(self, paths: list[Path]) -> None:
        ready = "!!document.querySelector(" + repr(APP_FILE_INPUT) + ")"
        wait_for(lambda: self.holds(ready), "the file input", self.deadline)
        self.tab.set_files(APP_FILE_INPUT, paths)
        shown = lambda: all(path.stem in self.text("#vggt-images") for path in paths) or None  # noqa: E731
        wait_for(shown, "the uploaded files to be listed", self.deadline)
        click = "(() => { const b = document.querySelector('#vggt-reconstruct'); if (b) b.click(); return !!b; })()"
        wait_for(lambda: self.holds(click), "the reconstruct button", self.deadline)

    def canvas(self) -> np.ndarray | None:
        """The screenshot's part inside the scene's canvas, None before there is one."""
        box = self.tab.evaluate(
            "(() => { const c = document.querySelector('#vggt-scene canvas'); if (!c) return null;"
            " const r = c.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()"
        )
        if not box or box[2] - box[0] < 10:
            return None
        shot = self.tab.screenshot()
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return shot[max(y0, 0) : y1, max(x0, 0) : x1]


def off_machine(urls: list[str]) -> list[str]:
    """The URLs among `urls` that leave this machine (not loopback, data: or blob:). DevToolsTab records the
    page's own requests, not those of any workers it starts."""
    local = {LOOPBACK, "localhost", "[::1]"}
    return [url for url in urls if urllib.parse.urlsplit(url).scheme not in ("data", "blob") and
            urllib.parse.urlsplit(url).hostname not in local]  # fmt: skip


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
def started(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A process with its output in `log`, ended (SIGTERM, then SIGKILL after 20 s) when the block leaves."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

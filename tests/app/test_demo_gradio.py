"""Upstream's `python demo_gradio.py` starts `vggt app`: its options are the app's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_demo_gradio_is_vggt_app() -> None:
    run = subprocess.run([sys.executable, "demo_gradio.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: vggt app") and "--max-frames" in run.stdout


@pytest.mark.parametrize(
    "option, message",
    [
        (["--max-frames", "0"], "--max-frames must be at least 1"),
        (["--resolution", "500"], "--resolution must be a positive multiple of 14"),
        (["--frames-chunk-size", "0"], "--frames-chunk-size must be at least 1"),
        (["--port", "0"], "--port must be 1-65535"),
    ],
)
def test_demo_gradio_refuses_a_bad_option_before_loading_anything(option: list[str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "demo_gradio.py", *option, "--model", "nowhere/none"], cwd=ROOT, capture_output=True, text=True
    )  # a model that does not exist: the option is refused before anything loads
    assert run.returncode == 2 and message in run.stderr, run.stderr

"""Upstream's `python demo_gradio.py` starts `vggt app`: its options are the app's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_gradio_is_vggt_app() -> None:
    run = subprocess.run([sys.executable, "demo_gradio.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: vggt app") and "--max-frames" in run.stdout


def test_demo_gradio_refuses_a_bad_option_before_loading_anything() -> None:
    run = subprocess.run(
        [sys.executable, "demo_gradio.py", "--max-frames", "0", "--model", "nowhere/none"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "--max-frames must be at least 1" in run.stderr

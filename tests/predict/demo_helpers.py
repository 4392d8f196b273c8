"""Running the repository-root demo scripts (demo_colmap.py, demo_viser.py) the way their users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: object, weights: Path | None = None) -> subprocess.CompletedProcess:
    """`python SCRIPT args...` from the repository root, offline; with `weights`, the tiny model on the CPU in
    float32."""
    model = ["--model", weights, "--device", "cpu", "--dtype", "float32"] if weights is not None else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, script, *map(str, args), *map(str, model)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

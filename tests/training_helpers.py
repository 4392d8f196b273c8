"""Shared pieces of the trainer tests: a small synthetic-data config and log-line parsing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from training.cpu_preset import SMALL_CPU_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "training" / "config"
LINE = re.compile(
    r"^Train Epoch: \[(\d+)\]\[(\d+)/(\d+)\] \| Batch Time: [\d.]+ \([\d.]+\) \| Data Time: [\d.]+ \([\d.]+\) \| "
    r"Mem \(GB\): [\d.]+ \| (.*)$"
)
SCENES = {"num_sequences": 6, "frames_per_sequence": 6, "scene_size": [112, 84], "scene_seed": 0}


def small_overrides(scenes_dir: Path, run_dir: Path | None = None) -> list[str]:
    """The synthetic preset shrunk for tests: 112 px images, 2 frames, 2 sequences per step, no workers."""
    overrides = [
        f"data.train.cache_dir={scenes_dir}",
        *(f"data.train.{k}={v}".replace(" ", "") for k, v in SCENES.items()),
        *SMALL_CPU_OVERRIDES,
        "data.val.min_num_images=2",
        "log_freq=1",
    ]
    if run_dir is not None:
        overrides.append(f"hydra.run.dir={run_dir}")
    return overrides


def compose_config(overrides: list[str]) -> DictConfig:
    """The synthetic preset with `overrides`, composed as the launcher would (no hydra.* keys)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="synthetic", overrides=[o for o in overrides if not o.startswith("hydra.")])


def launch(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m training.launch --config-name synthetic ARGS` in a subprocess, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "training.launch", "--config-name", "synthetic", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parse_log(log_file: Path) -> list[dict[str, float]]:
    """Per-line {loss name: window value} of the Train lines of a log.txt, in order."""
    rows = []
    for line in log_file.read_text().splitlines():
        match = LINE.match(line)
        if match:
            values = {}
            for part in match.group(4).split(" | "):
                name, _, value = part.partition(": ")
                values[name] = float(value.split(" ")[0])
            rows.append(values)
    return rows


def python_recording_torchrun(tmp_path: Path) -> tuple[Path, Path]:
    """A PYTHON for the launchers that writes torchrun's arguments (one a line) to a file instead of training and
    runs everything else with this interpreter: (the script, the file it writes)."""
    recorded = tmp_path / "torchrun_args.txt"
    script = tmp_path / "python_recording_torchrun"
    script.write_text(
        f'#!/bin/bash\nif [[ "$2" == torch.distributed.run ]]; then printf "%s\\n" "$@" > {recorded}; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    script.chmod(0o755)
    return script, recorded

"""The launchers in upstream's layout (test/ copied into a patched upstream training/): what runs without upstream."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.training_helpers import python_recording_torchrun

TOOLS = Path(__file__).resolve().parents[1] / "test"
# a progress line as upstream's trainer prints it: the step right-aligned in 7 characters
UPSTREAM_LINE = (
    "INFO 2026-12-01 15:42:32,674 general.py: 118: Train Epoch: [0][{step:>7}/1000000] | Batch Time: {t:.4f} "
    "(1.4827) | Data Time: 0.0967 (0.0967) | Mem (GB): 0.0000 (0.0000) | Time Elapsed: 00d 00h 00m | "
    "Loss/train_loss_objective: 2.6232 (2.6064) | Loss/train_loss_reg_depth: 0.5000 ({reg:.4f})"
)


@pytest.fixture
def summarize_run(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(TOOLS))
    return importlib.import_module("summarize_run")


def test_summary_reads_upstreams_padded_progress_lines(summarize_run) -> None:
    log = [UPSTREAM_LINE.format(step=i, t=float(i), reg=0.1 * i) for i in range(21)]
    rows = summarize_run.parse_train_lines(log)
    assert [row.step for row in rows] == list(range(21))
    assert summarize_run.average_step_time(rows) == pytest.approx(sum(range(10, 21)) / 11)
    assert rows[-1].averages["Loss/train_loss_reg_depth"] == pytest.approx(2.0)


def test_launcher_in_upstream_layout_refuses_missing_co3d_with_upstreams_default_paths(tmp_path: Path) -> None:
    """Copied next to upstream's launch.py and the patch's config, the defaults become co3D/co3D (published README)."""
    training = tmp_path / "training"
    (training / "config").mkdir(parents=True)
    (training / "launch.py").write_text("")
    (training / "config" / "npu_perf.yaml").write_text("")
    shutil.copytree(TOOLS, training / "test")
    run = subprocess.run(["bash", "test/train_8p_vggt_perf.sh", "--device", "cpu"], cwd=training,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2
    assert f"--co3d-dir {training}/co3D/co3D: no such directory" in run.stderr


@pytest.mark.parametrize("random_weights", [False, True])
def test_launcher_in_upstream_layout_starts_from_model_pt_unless_random_weights(tmp_path: Path, random_weights) -> None:
    """The published runs resume from ../model.pt next to training/; --random-weights asks for no weights at all."""
    upstream = tmp_path / "vggt"
    training = upstream / "training"
    (training / "config").mkdir(parents=True)
    (training / "launch.py").write_text("")
    (training / "config" / "npu_perf.yaml").write_text("")
    (training / "co3D" / "co3D" / "tv").mkdir(parents=True)
    (training / "co3D" / "co3D_annotations").mkdir()
    (training / "co3D" / "co3D_annotations" / "tv_train.jgz").write_text("")
    (upstream / "model.pt").write_text("")
    shutil.copytree(TOOLS, training / "test")
    fake_python, recorded = python_recording_torchrun(tmp_path)
    env = {**os.environ, "PYTHON": str(fake_python), "PYTHONPATH": str(TOOLS.parent)}
    flags = ["--random-weights"] if random_weights else []
    subprocess.run(["bash", "test/train_8p_vggt_perf.sh", "--device", "cpu", "--nproc", "1", *flags], cwd=training,
                   capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    args = recorded.read_text().splitlines()
    expected = (
        "checkpoint.resume_checkpoint_path=null"
        if random_weights
        else (f"checkpoint.resume_checkpoint_path='{upstream / 'model.pt'}'")
    )
    assert expected in args

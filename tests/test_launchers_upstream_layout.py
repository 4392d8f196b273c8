"""The launchers in upstream's layout (test/ copied into a patched upstream training/): what runs without upstream."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

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

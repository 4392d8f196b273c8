"""The published-style launchers (test/*.sh), their summary (test/summarize_run.py) and test/compare_runs.py."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.training_helpers import ROOT, python_recording_torchrun

TOOLS = ROOT / "test"
PERF, FULL = TOOLS / "train_8p_vggt_perf.sh", TOOLS / "train_8p_vggt_full.sh"
SMALL_RUN = ["--device", "cpu", "--nproc", "2", "--data", "synthetic", "--max-epochs", "1", "--max-steps", "12"]
SUMMARY_KEYS = [
    "Network",
    "CaseName",
    "DeviceType",
    "DeviceName",
    "RankSize",
    "BatchSize",
    "ImagesPerSample",
    "E2ETrainingTime",
    "TimedLogLines",
    "AvgStepTime",
    "ActualFPS",
    "ImagesPerSec",
]


@pytest.fixture
def summarize_run(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(TOOLS))
    return importlib.import_module("summarize_run")


@pytest.fixture
def compare_runs(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(TOOLS))
    return importlib.import_module("compare_runs")


def train_line(step: int, num_steps: int, batch_time: float, reg: tuple[float, float], obj: tuple[float, float]) -> str:
    """A progress line as the trainer prints it (epoch 0; window value and running mean for each loss)."""
    return (
        f"Train Epoch: [0][{step}/{num_steps}] | Batch Time: {batch_time:.4f} (9.9999) | Data Time: 0.0100 (0.0100) | "
        f"Mem (GB): 1.20 | Loss/train_loss_camera: 0.5000 (0.5000) | Loss/train_loss_reg_depth: {reg[0]:.4f} "
        f"({reg[1]:.4f}) | Loss/train_loss_objective: {obj[0]:.4f} ({obj[1]:.4f}) | Grad/camera: 1.0000"
    )


def run_tool(name: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A launcher (.sh) or a Python tool of test/, from the repository root, with PYTHON set to this interpreter."""
    command = [*([] if name.endswith(".sh") else [sys.executable]), str(TOOLS / name), *map(str, args)]
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )


# the summary ----------------------------------------------------------------------------------------
HAND_WRITTEN_LOG = "\n".join(
    [
        "*****************************************",
        "run dir test/output/VGGT_8p_full/run | device npu:0 (Ascend910B2) | world size 8",
        *(train_line(step, 12, 9.0, (0.5, 0.5), (4.0, 4.0)) for step in range(1, 11)),  # warm-up: dropped
        "[W rank3] a warning from another rank",
        train_line(11, 12, 1.2, (0.0172, 0.0201), (1.9, 2.3)),
        "Val Epoch: [0][4/4] | Batch Time: 7.0000 (7.0000) | Loss/val_loss_reg_depth: 0.9000 (0.9000)",
        train_line(12, 12, 1.8, (0.0150, 0.0165), (1.7, 2.1)),
        "",
    ]
)


def test_summary_of_a_hand_written_log_drops_warm_up_lines_and_reads_the_last_running_means(summarize_run):
    rows = summarize_run.parse_train_lines(HAND_WRITTEN_LOG.splitlines())
    summary = summarize_run.summarize(
        rows,
        case_name="VGGT_8p_full",
        device_type="npu",
        device_name="Ascend910B2",
        rank_size=8,
        batch_size=15,
        e2e_seconds=1234.4,
        losses=True,
    )
    assert summary == {
        "Network": "VGGT",
        "CaseName": "VGGT_8p_full",
        "DeviceType": "npu",
        "DeviceName": "Ascend910B2",
        "RankSize": "8",
        "BatchSize": "15",
        "ImagesPerSample": "2",
        "E2ETrainingTime": "1234",
        "TimedLogLines": "2",
        "AvgStepTime": "1.5000",  # (1.2 + 1.8) / 2; the ten 9.0 s warm-up lines and the Val line do not count
        "ActualFPS": "80.00",  # 15 x 8 / 1.5
        "ImagesPerSec": "160.00",  # 2 images per sequence
        "Loss": "0.0165",  # loss_reg_depth's running mean on the last Train line, not its window value 0.0150
        "LossObjective": "2.1000",
    }


def test_step_time_averages_the_last_100_train_lines_minus_their_first_10(summarize_run):
    times = [100.0] * 20 + [50.0] * 10 + [1.0, 2.0] * 45  # outside the window, warm-up, timed
    log = [train_line(i + 1, 120, t, (0.1, 0.1), (1.0, 1.0)) for i, t in enumerate(times)]
    rows = summarize_run.parse_train_lines(log)
    assert len(summarize_run.timed_lines(rows)) == 90
    assert summarize_run.average_step_time(rows) == pytest.approx(1.5)


def test_a_short_log_averages_every_line(summarize_run):
    rows = summarize_run.parse_train_lines(
        [train_line(1, 2, 3.0, (0.1, 0.1), (1, 1)), train_line(2, 2, 1.0, (0.1, 0.1), (1, 1))]
    )
    assert summarize_run.average_step_time(rows) == pytest.approx(2.0)


def test_summary_cli_writes_key_value_lines(tmp_path):
    log, out = tmp_path / "train.log", tmp_path / "VGGT_8p_perf.log"
    log.write_text(HAND_WRITTEN_LOG)
    args = ["--case-name", "VGGT_8p_perf", "--device-type", "npu", "--device-name", "Ascend910B2"]
    result = run_tool("summarize_run.py", log, "--out", out, *args, "--rank-size", "8", "--batch-size", "15")
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert [line.split(" = ")[0] for line in lines] == SUMMARY_KEYS
    assert "ActualFPS = 80.00" in lines and "E2ETrainingTime = n/a" in lines


def test_summary_cli_names_a_log_without_train_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("Traceback (most recent call last):\nRuntimeError: out of memory\n")
    args = ["--out", tmp_path / "s.log", "--case-name", "c", "--device-type", "cpu", "--device-name", "x"]
    result = run_tool("summarize_run.py", log, *args, "--rank-size", "1", "--batch-size", "1")
    assert result.returncode == 2
    assert f"{log}: no 'Train Epoch:' line" in result.stderr
    assert not (tmp_path / "s.log").exists()


# launcher arguments (no training) --------------------------------------------------------------------
@pytest.mark.parametrize("script", [PERF, FULL], ids=["perf", "full"])
def test_unknown_option_prints_the_usage_and_exits_2(script):
    result = run_tool(script.name, "--max-epoch", "3")
    assert result.returncode == 2
    assert "unknown option '--max-epoch'" in result.stderr
    assert f"Usage: test/{script.name}" in result.stderr and "--max-epochs N" in result.stderr


def test_help_explains_the_options_and_the_summary():
    result = run_tool(FULL.name, "--help")
    assert result.returncode == 0
    for text in (
        "--nproc N",
        "--data D",
        "--co3d-dir DIR",
        "--weights PATH",
        "LossObjective",
        "last 100 Train lines",
        "--nnodes N",
        "--node-rank R",
        "--master-addr HOST",
        "--master-port PORT",
        "--random-weights",
        "--dtype D",
        "--img-size N",
    ):
        assert text in result.stdout, text


def test_bad_option_values_name_the_option():
    for args, message in [
        (["--max-epochs", "0"], "--max-epochs wants an integer >= 1, got '0'"),
        (["--MAX-EPOCHS=x"], "--max-epochs wants an integer >= 1, got 'x'"),
        (["--device", "gpu"], "--device is auto, npu, cuda or cpu, got 'gpu'"),
        (["--data", "imagenet"], "--data is co3d or synthetic, got 'imagenet'"),
        (["--nnodes", "0"], "--nnodes wants an integer >= 1, got '0'"),
        (["--nnodes", "2", "--node-rank", "2"], "--node-rank is 0..1 for --nnodes 2, got '2'"),
        (["--master-port", "70000"], "--master-port wants a TCP port 1..65535, got '70000'"),
        (["--dtype", "float16"], "--dtype is bfloat16 or float32, got 'float16'"),
        (["--img-size", "100"], "--img-size wants a positive multiple of the patch size 14 (e.g. 224, 518), got '100'"),
    ]:
        result = run_tool(PERF.name, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_weights_must_exist_and_fit_the_data(tmp_path):
    result = run_tool(PERF.name, "--weights", tmp_path / "model.pt")
    assert result.returncode == 2 and f"--weights {tmp_path / 'model.pt'}: no such file" in result.stderr
    (tmp_path / "model.pt").write_bytes(b"")
    result = run_tool(PERF.name, "--weights", tmp_path / "model.pt", "--data", "synthetic")
    assert result.returncode == 2 and "--data synthetic trains the tiny model from scratch" in result.stderr
    result = run_tool(PERF.name, "--weights", tmp_path / "model.pt", "--random-weights")
    assert result.returncode == 2 and "--weights and --random-weights exclude each other" in result.stderr


def test_a_missing_co3d_dir_is_named_with_where_to_get_the_data(tmp_path):
    missing = tmp_path / "co3d"
    result = run_tool(PERF.name, "--co3d-dir", missing, "--anno-dir", tmp_path)
    assert result.returncode == 2
    assert f"--co3d-dir {missing}: no such directory" in result.stderr
    assert "facebookresearch/co3d" in result.stderr


def test_a_missing_annotation_dir_is_named_with_how_to_get_the_annotations(tmp_path):
    (tmp_path / "co3d" / "tv").mkdir(parents=True)
    missing = tmp_path / "anno"
    result = run_tool(FULL.name, "--co3d-dir", tmp_path / "co3d", "--anno-dir", missing)
    assert result.returncode == 2
    assert f"--anno-dir {missing}: no such directory" in result.stderr
    assert "JianyuanWang/co3d_anno" in result.stderr and "training.data.co3d_convert" in result.stderr


@pytest.mark.slow
def test_a_training_failure_exits_nonzero_and_points_at_train_log(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "unrelated.txt").write_text("not a scene cache")  # the trainer refuses to generate scenes here
    args = ["--device", "cpu", "--nproc", "1", "--data", "synthetic", "--max-steps", "2"]
    result = run_tool(PERF.name, *args, "--scenes-dir", scenes, "--output-root", tmp_path)
    assert result.returncode != 0
    log = tmp_path / "VGGT_8p_perf" / "train.log"
    assert f"the whole output is in {log}" in result.stderr
    assert "is not empty and has no manifest.json" in log.read_text()
    assert not (tmp_path / "VGGT_8p_perf" / "VGGT_8p_perf.log").exists()


# env_npu.sh ------------------------------------------------------------------------------------------
def bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_env_npu_sets_the_ascend_runtime_and_leaves_the_shell_and_torch_working():
    result = bash(
        'set -euo pipefail; before=$(set +o); source test/env_npu.sh; [[ $(set +o) == "$before" ]] || exit 3; '
        'echo "$TASK_QUEUE_ENABLE $CPU_AFFINITY_CONF $COMBINED_ENABLE $PYTORCH_NPU_ALLOC_CONF $HCCL_CONNECT_TIMEOUT '
        '$ASCEND_GLOBAL_LOG_LEVEL ${TORCH_DEVICE_BACKEND_AUTOLOAD:-unset}"; '
        f'{sys.executable} -c "import torch; print(torch.ones(2).sum().item())"',
        env={"ASCEND_TOOLKIT_HOME": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["2 1 1 expandable_segments:True 1200 3 unset", "2.0"]


def test_env_npu_keeps_values_already_set():
    result = bash(
        "source test/env_npu.sh; echo $TASK_QUEUE_ENABLE ${PYTORCH_NPU_ALLOC_CONF:-unset}",
        env={"TASK_QUEUE_ENABLE": "1", "PYTORCH_ALLOC_CONF": "expandable_segments:False"},
    )
    assert result.stdout.strip() == "1 unset"  # torch_npu refuses both allocator variables at once


def test_env_npu_sources_cann_and_calls_msnpureport_when_present(tmp_path):
    toolkit = tmp_path / "toolkit"
    toolkit.mkdir()
    # a set_env.sh that trips -u and -e, as CANN's may
    (toolkit / "set_env.sh").write_text('export CANN_SOURCED="$UNSET_BY_ANYONE yes"\nfalse\n')
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "msnpureport").write_text(f'#!/usr/bin/env bash\necho "$*" >> {tmp_path / "calls"}\n')
    (tools / "msnpureport").chmod(0o755)
    result = bash(
        'set -euo pipefail; before=$(set +o); source test/env_npu.sh; [[ $(set +o) == "$before" ]] || exit 3; '
        "echo $CANN_SOURCED",
        env={"ASCEND_TOOLKIT_HOME": str(toolkit), "PATH": f"{tools}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "yes"
    assert "-e disable" in (tmp_path / "calls").read_text().splitlines()


# whole launcher runs on the CPU ------------------------------------------------------------------------
def read_key_values(path: Path) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in path.read_text().splitlines())


@pytest.fixture(scope="module")
def launcher_runs(tmp_path_factory) -> Path:
    """Both launchers, 2 CPU processes x 2 sequences, 12 steps, into one output root (scenes generated once)."""
    root = tmp_path_factory.mktemp("launchers")
    (root / "VGGT_8p_perf").mkdir()
    (root / "VGGT_8p_perf" / "stale.txt").write_text("from an earlier run")
    (root / "VGGT_8p_perf" / ".vggt_launcher_output").write_text("")  # which a launcher created
    common = [*SMALL_RUN, "--batch-size", "2", "--output-root", root, "--scenes-dir", root / "scenes"]
    for script in (PERF, FULL):
        result = run_tool(script.name, *common)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("case", ["perf", "full"])
def test_launcher_runs_on_the_cpu_and_writes_the_log_and_the_summary(launcher_runs, case):
    out = launcher_runs / f"VGGT_8p_{case}"
    assert not (out / "stale.txt").exists()  # the case folder is recreated
    train_lines = [line for line in (out / "train.log").read_text().splitlines() if "Train Epoch: " in line]
    assert len(train_lines) == 12 and train_lines[-1].startswith("Train Epoch: [0][12/12]")
    summary = read_key_values(out / f"VGGT_8p_{case}.log")
    accuracy = ["AUC30", "AUC15", "AUC5", "AUC3", "DepthAbsRel"]  # the full launcher evaluates its checkpoint
    assert list(summary) == SUMMARY_KEYS + (["Loss", "LossObjective", *accuracy] if case == "full" else [])
    assert summary["CaseName"] == f"VGGT_8p_{case}" and summary["DeviceType"] == "cpu"
    assert (summary["RankSize"], summary["BatchSize"], summary["TimedLogLines"]) == ("2", "2", "2")
    fps = float(summary["ActualFPS"])
    assert fps == pytest.approx(2 * 2 / float(summary["AvgStepTime"]), rel=1e-3, abs=0.005)  # printed to 0.01
    assert float(summary["ImagesPerSec"]) == pytest.approx(2 * fps, abs=0.011)
    if case == "full":
        last = train_lines[-1]
        assert "Loss/train_loss_reg_depth: " in last and f"({summary['Loss']})" in last
        assert f"({summary['LossObjective']})" in last
    assert (out / "run" / "ckpts" / "checkpoint.pt").is_file()
    assert "autocast dtype float32 (optim.amp_dtype float32)" in (out / "train.log").read_text()  # the CPU's default


@pytest.mark.slow
def test_dtype_bfloat16_trains_under_bf16_autocast_on_the_cpu(tmp_path):
    result = run_tool(PERF.name, *SMALL_RUN, "--batch-size", "2", "--output-root", tmp_path,
                      "--scenes-dir", tmp_path / "scenes", "--dtype", "bfloat16")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "VGGT_8p_perf" / "train.log").read_text()
    assert "autocast dtype bfloat16 (optim.amp_dtype bfloat16)" in log and "Train Epoch: [0][12/12]" in log


# compare_runs ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_runs_reports_two_launcher_runs_with_a_plot(launcher_runs, tmp_path):
    pytest.importorskip("matplotlib")
    result = run_tool(
        "compare_runs.py",
        launcher_runs / "VGGT_8p_perf",
        launcher_runs / "VGGT_8p_full",
        "--labels", "perf", "full", "--out", tmp_path, "--max-loss-rel-diff", "1e-3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "report.md").read_text()
    assert (
        "| sequences/s (ActualFPS) |" in report and "**PASS**" in report and "![loss curves](loss_curves.png)" in report
    )
    assert (tmp_path / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "# perf vs full" in result.stdout


def write_run(folder: Path, reg: list[float], obj: list[float], step_time: float, ranks: int = 8) -> Path:
    """A launcher-style output folder: train.log with one Train line per step, and its summary."""
    folder.mkdir(parents=True)
    n = len(reg)
    lines = [train_line(i + 1, n, step_time, (reg[i], reg[i]), (obj[i], obj[i])) for i in range(n)]
    (folder / "train.log").write_text("\n".join(lines) + "\n")
    (folder / f"{folder.name}.log").write_text(
        f"Network = VGGT\nDeviceType = npu\nDeviceName = x\nRankSize = {ranks}\nBatchSize = 15\nImagesPerSample = 2\n"
    )
    return folder


def test_compare_runs_threshold_applies_to_the_last_tenth_of_the_steps(tmp_path):
    reference = [1.0] * 20
    early_off = [1.5, 1.5] + [1.01] * 18  # 50 % apart at first, 1 % apart at the end
    a = write_run(tmp_path / "npu" / "VGGT_8p_full", early_off, early_off, step_time=1.0)
    b = write_run(tmp_path / "gpu" / "VGGT_8p_full", reference, reference, step_time=2.0)
    passing = run_tool(
        "compare_runs.py", a, b, "--labels", "NPU", "GPU", "--out", tmp_path / "r1", "--max-loss-rel-diff", "0.02"
    )
    assert passing.returncode == 0, passing.stdout + passing.stderr
    report = (tmp_path / "r1" / "report.md").read_text()
    assert "| sequences/s (ActualFPS) | 120.00 | 60.00 | 2.000 |" in report  # 8 x 15 / step time
    assert "| images/s | 240.00 | 120.00 | 2.000 |" in report
    assert "Speedup of NPU over GPU (throughput ratio): 2.000x" in report
    assert "| loss_reg_depth | 20 | 5.900e-02 | 5.000e-01 ([0][1]) | 1.000e-02 |" in report
    failing = run_tool("compare_runs.py", a, b, "--out", tmp_path / "r2", "--max-loss-rel-diff", "0.005")
    assert failing.returncode == 1
    assert "**FAIL (loss_objective, loss_reg_depth)**" in failing.stdout


def test_compare_runs_rejects_unusable_input_naming_the_path(tmp_path):
    good = write_run(tmp_path / "good", [1.0] * 3, [1.0] * 3, step_time=1.0)
    result = run_tool("compare_runs.py", good, tmp_path / "missing", "--out", tmp_path / "r")
    assert result.returncode == 2 and f"{tmp_path / 'missing'}: no such folder" in result.stderr
    empty = tmp_path / "crashed"
    empty.mkdir()
    (empty / "train.log").write_text("RuntimeError: HCCL timeout\n")
    result = run_tool("compare_runs.py", good, empty, "--out", tmp_path / "r")
    assert result.returncode == 2 and f"{empty / 'train.log'}: no 'Train Epoch:' line" in result.stderr
    result = run_tool("compare_runs.py", good, tmp_path, "--out", tmp_path / "r")
    assert result.returncode == 2 and "neither train.log" in result.stderr


def test_compare_runs_reads_a_bare_trainer_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("data:\n  train:\n    batch_size: 5\n    img_nums: [2, 2]\n")
    lines = ["run dir runs/x | device cuda:0 (NVIDIA H100) | world size 4"]
    lines += [train_line(i, 3, 2.0, (0.2, 0.2), (1.0, 1.0)) for i in (1, 2, 3)]
    (run / "log.txt").write_text("\n".join(lines) + "\n")
    other = write_run(tmp_path / "other", [0.2] * 3, [1.0] * 3, step_time=1.0)
    result = run_tool("compare_runs.py", run, other, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| device | cuda (NVIDIA H100) | npu (x) |  |" in report
    assert "| sequences/s (ActualFPS) | 10.00 | 120.00 | 0.083 |" in report  # 4 x 5 / 2.0 s


def test_compare_runs_without_matplotlib_writes_the_report_and_says_so(compare_runs, tmp_path, monkeypatch, capsys):
    a = write_run(tmp_path / "a", [1.0] * 3, [2.0] * 3, step_time=1.0)
    b = write_run(tmp_path / "b", [1.0] * 3, [2.0] * 3, step_time=1.0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert compare_runs.main([str(a), str(b), "--out", str(tmp_path / "r")]) == 0
    assert "No plot: matplotlib is not installed" in (tmp_path / "r" / "report.md").read_text()
    assert not (tmp_path / "r" / "loss_curves.png").exists()
    assert "No plot" in capsys.readouterr().out


# the first failure of a job ------------------------------------------------------------------------------
def write_error_file(log_dir: Path, local_rank: int, message: str, timestamp: int) -> None:
    """An error file as torchrun's `record` writes it, in torchrun's per-rank layout."""
    path = log_dir / "run_abc" / "attempt_0" / str(local_rank) / "error.json"
    path.parent.mkdir(parents=True)
    body = {"message": message, "extraInfo": {"py_callstack": f"Traceback\n  line\n{message}", "timestamp": timestamp}}
    path.write_text(json.dumps({"message": body}))


def test_first_failure_prefers_a_ranks_own_error_over_peers_stopped_by_it_then_the_earliest(tmp_path):
    write_error_file(tmp_path, 0, "RuntimeError: rank 0 (node 1) stops because rank 3 failed: OSError", 100)
    write_error_file(tmp_path, 1, "DatasetError: image a.jpg cannot be read", 105)
    write_error_file(tmp_path, 2, "ValueError: later", 107)
    result = run_tool("first_failure.py", tmp_path, "--node-rank", "1")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "first failure (node 1, local rank 1): DatasetError: image a.jpg cannot be read"
    assert lines[1] == "  traceback (end):" and lines[-1] == "    DatasetError: image a.jpg cannot be read"
    assert run_tool("first_failure.py", tmp_path / "nothing").stdout == ""  # no error file: nothing to say


def test_only_node_0_needs_the_test_annotations_of_the_full_run(tmp_path: Path) -> None:
    """Node 0 evaluates the trained checkpoint; another node without tv_test.jgz still trains."""
    (tmp_path / "co3d" / "tv").mkdir(parents=True)
    (tmp_path / "anno").mkdir()
    (tmp_path / "anno" / "tv_train.jgz").write_text("")
    python, recorded = python_recording_torchrun(tmp_path)
    common = ["--device", "cpu", "--nproc", "1", "--co3d-dir", tmp_path / "co3d", "--anno-dir", tmp_path / "anno",
              "--random-weights", "--nnodes", "2", "--output-root", tmp_path / "out"]  # fmt: skip
    node1 = run_tool(FULL.name, *common, "--node-rank", "1", env={"PYTHON": str(python)})
    assert node1.returncode == 0, node1.stderr
    assert "--node-rank\n1\n" in recorded.read_text()
    node0 = run_tool(FULL.name, *common, "--node-rank", "0", env={"PYTHON": str(python)})
    assert node0.returncode == 2 and "no tv_test.jgz" in node0.stderr


@pytest.mark.parametrize("repeat", [False, True])
def test_repeat_batch_reaches_our_trainer_as_its_config_switch(tmp_path: Path, repeat: bool) -> None:
    (tmp_path / "co3d" / "tv").mkdir(parents=True)
    (tmp_path / "anno").mkdir()
    (tmp_path / "anno" / "tv_train.jgz").write_text("")
    python, recorded = python_recording_torchrun(tmp_path)
    args = ["--device", "cpu", "--nproc", "1", "--co3d-dir", tmp_path / "co3d", "--anno-dir", tmp_path / "anno",
            "--random-weights", "--nnodes", "2", "--node-rank", "1",  # node 1 writes no summary of the recorded run
            "--output-root", tmp_path / "out", *(["--repeat-batch"] if repeat else [])]  # fmt: skip
    result = run_tool(PERF.name, *args, env={"PYTHON": str(python)})
    assert result.returncode == 0, result.stderr
    assert ("data.train.repeat_batch=true" in recorded.read_text().splitlines()) == repeat


# the output folder ------------------------------------------------------------------------------------
def node1_run(tmp_path: Path, output_root: Path) -> subprocess.CompletedProcess:
    """A perf launch as node 1 of 2 (its output folder: OUTPUT_ROOT/VGGT_8p_perf_node1), torchrun only recorded."""
    (tmp_path / "co3d" / "tv").mkdir(parents=True, exist_ok=True)
    (tmp_path / "anno").mkdir(exist_ok=True)
    (tmp_path / "anno" / "tv_train.jgz").write_text("")
    python, _ = python_recording_torchrun(tmp_path)
    args = ["--device", "cpu", "--nproc", "1", "--co3d-dir", tmp_path / "co3d", "--anno-dir", tmp_path / "anno",
            "--random-weights", "--nnodes", "2", "--node-rank", "1", "--output-root", output_root]  # fmt: skip
    return run_tool(PERF.name, *args, env={"PYTHON": str(python)})


def test_a_user_folder_of_the_output_name_is_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / "root" / "VGGT_8p_perf_node1"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("mine")
    result = node1_run(tmp_path, tmp_path / "root")
    assert result.returncode == 2 and f"{mine} exists but this launcher did not create it" in result.stderr
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"] and (mine / "thesis.txt").read_text() == "mine"


def test_an_output_link_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".vggt_launcher_output").write_text("forged")
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "VGGT_8p_perf_node1")
    result = node1_run(tmp_path, tmp_path / "root")
    assert result.returncode == 2 and "is a symbolic link" in result.stderr
    assert (tmp_path / "root" / "VGGT_8p_perf_node1").is_symlink()
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == [".vggt_launcher_output"]


def test_the_launchers_own_output_is_recreated_without_following_links_in_it(tmp_path: Path) -> None:
    first = node1_run(tmp_path, tmp_path / "root")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "root" / "VGGT_8p_perf_node1"
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.bin").write_bytes(b"keep")
    (out / "stale.txt").write_text("from the first run")
    os.symlink(tmp_path / "victim", out / "link")
    again = node1_run(tmp_path, tmp_path / "root")
    assert again.returncode == 0, again.stderr
    assert not (out / "stale.txt").exists() and not os.path.lexists(out / "link")
    assert (out / ".vggt_launcher_output").is_file()
    assert (tmp_path / "victim" / "data.bin").read_bytes() == b"keep"

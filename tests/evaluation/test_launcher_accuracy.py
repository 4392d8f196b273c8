"""The launchers' accuracy: summary keys from a `vggt eval` report, and compare_runs' accuracy section."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_launchers import FULL, HAND_WRITTEN_LOG, SUMMARY_KEYS, run_tool, write_run

ACCURACY_KEYS = ["AUC30", "AUC15", "AUC5", "AUC3", "DepthAbsRel"]
PROTOCOL = {"num_frames": 10, "min_frames": 50, "seed": 0, "categories": ["tv"], "annotations_sha256": {"tv": "ab"}}


def write_eval(folder: Path, mean: dict, protocol: dict | None = None) -> Path:
    path = folder / "eval" / "co3d_eval.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    runtime = {"device_name": "x", "dtype": "bfloat16"}
    path.write_text(json.dumps({"protocol": protocol or PROTOCOL, "mean": mean, "runtime": runtime}))
    return path


MEAN_A = {"AUC30": 88.25, "AUC15": 80.0, "AUC5": 60.5, "AUC3": 50.0, "DepthAbsRel": 0.05123, "DepthDelta1.25": 0.9}
MEAN_B = {"AUC30": 88.75, "AUC15": 81.0, "AUC5": 60.0, "AUC3": 49.0, "DepthAbsRel": None, "DepthDelta1.25": None}


def test_summary_takes_the_accuracy_from_the_evaluation_report(tmp_path):
    log, out = tmp_path / "train.log", tmp_path / "VGGT_8p_full.log"
    log.write_text(HAND_WRITTEN_LOG)
    report = write_eval(tmp_path, {**MEAN_A, "DepthAbsRel": None})
    args = ["--case-name", "VGGT_8p_full", "--device-type", "npu", "--device-name", "y", "--rank-size", "8"]
    result = run_tool("summarize_run.py", log, "--out", out, *args, "--batch-size", "15", "--eval-json", report)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert [line.split(" = ")[0] for line in lines] == SUMMARY_KEYS + ACCURACY_KEYS
    assert lines[-5:] == ["AUC30 = 88.25", "AUC15 = 80.00", "AUC5 = 60.50", "AUC3 = 50.00", "DepthAbsRel = n/a"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    result = run_tool(
        "summarize_run.py", log, "--out", out, *args, "--batch-size", "15", "--eval-json", tmp_path / "bad.json"
    )
    assert result.returncode == 2 and "bad.json is not a vggt eval report" in result.stderr


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    losses = [1.0] * 12
    a = write_run(tmp_path / "npu" / "VGGT_8p_full", losses, losses, step_time=1.0)
    b = write_run(tmp_path / "gpu" / "VGGT_8p_full", losses, losses, step_time=1.0)
    return a, b


def test_compare_runs_reports_both_accuracies_and_their_difference(tmp_path):
    a, b = two_runs(tmp_path)
    write_eval(a, MEAN_A)
    write_eval(b, MEAN_B)
    out = tmp_path / "cmp"
    result = run_tool("compare_runs.py", a, b, "--labels", "NPU", "GPU", "--out", out, "--max-auc-diff", "1.0")
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "| AUC30 | 88.25 | 88.75 | -0.50 |" in report
    assert "| AUC3 | 50.00 | 49.00 | 1.00 |" in report
    assert "| DepthAbsRel | 0.0512 | n/a | n/a |" in report
    assert "**PASS**" in report.split("## Accuracy")[1]
    result = run_tool("compare_runs.py", a, b, "--out", out, "--max-auc-diff", "0.75")
    assert result.returncode == 1 and "FAIL (AUC15, AUC3)" in (out / "report.md").read_text()


def test_compare_runs_refuses_evaluations_with_different_protocols(tmp_path):
    a, b = two_runs(tmp_path)
    write_eval(a, MEAN_A)
    write_eval(b, MEAN_B, {**PROTOCOL, "num_frames": 8})
    result = run_tool("compare_runs.py", a, b, "--out", tmp_path / "cmp")
    assert result.returncode == 2
    assert "different protocol settings" in result.stderr and "num_frames: 10 vs 8" in result.stderr


def test_compare_runs_says_when_a_run_has_no_evaluation_and_the_auc_threshold_then_fails(tmp_path):
    a, b = two_runs(tmp_path)
    write_eval(a, MEAN_A)
    out = tmp_path / "cmp"
    result = run_tool("compare_runs.py", a, b, "--labels", "NPU", "GPU", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "No evaluation report in GPU" in (out / "report.md").read_text()
    assert run_tool("compare_runs.py", a, b, "--out", out, "--max-auc-diff", "5").returncode == 1


def test_full_launcher_checks_the_evaluation_annotations_before_training(tmp_path):
    (tmp_path / "co3d" / "tv").mkdir(parents=True)
    (tmp_path / "anno").mkdir()
    (tmp_path / "anno" / "tv_train.jgz").write_bytes(b"")
    common = ["--co3d-dir", tmp_path / "co3d", "--anno-dir", tmp_path / "anno", "--output-root", tmp_path / "out"]
    result = run_tool(FULL.name, *common)
    assert result.returncode == 2
    assert f"--eval-anno-dir {tmp_path / 'anno'}: no tv_test.jgz" in result.stderr and "--skip-eval" in result.stderr
    result = run_tool(FULL.name, *common, "--eval-anno-dir", tmp_path / "elsewhere")
    assert result.returncode == 2 and f"--eval-anno-dir {tmp_path / 'elsewhere'}: no tv_test.jgz" in result.stderr


def test_full_launcher_help_lists_the_evaluation_options_and_keys():
    result = run_tool(FULL.name, "--help")
    assert result.returncode == 0
    for text in ("--skip-eval", "--eval-anno-dir DIR", "AUC30, AUC15, AUC5, AUC3, DepthAbsRel"):
        assert text in result.stdout, text

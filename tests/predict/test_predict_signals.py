"""A stop signal (SIGINT, SIGTERM, SIGHUP) during `vggt predict` rolls back like Ctrl-C: no staging directory left,
the user's files untouched, one line on stderr and the exit status 128 + the signal's number."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vggt.predict.pipeline as pipeline
from tests.predict.conftest import predict_args, run_cli
from vggt.interrupts import Interrupted, stop_signals_raise
from vggt.predict.staging import WORK_PREFIX

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
STAGING_TIMEOUT = 300.0  # seconds for a subprocess to import torch, load the tiny model and start writing
EXIT_TIMEOUT = 120.0  # seconds for it to roll back and end once signalled


@pytest.mark.parametrize("number", STOP_SIGNALS, ids=lambda number: signal.Signals(number).name)
def test_a_stop_signal_raises_interrupted_with_the_shell_exit_status_and_the_handlers_come_back(number: int) -> None:
    before = signal.getsignal(number)
    with pytest.raises(Interrupted) as caught, stop_signals_raise():
        os.kill(os.getpid(), number)
        time.sleep(5)  # the handler raises as soon as the main thread runs Python again
    assert caught.value.exit_status == 128 + number
    assert signal.getsignal(number) == before


def test_a_second_signal_while_stopping_does_not_break_off_the_clean_up() -> None:
    cleaned = []
    with pytest.raises(Interrupted) as caught, stop_signals_raise():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # ignored: the block is already stopping
            cleaned.append(True)
    assert cleaned == [True] and caught.value.signal_name == "SIGTERM"


def user_files(out: Path) -> dict[str, bytes]:
    """A scene folder the user owns, to be predicted into: what it holds before the run."""
    (out / "images").mkdir(parents=True)
    (out / "images" / "mine.txt").write_bytes(b"the user's")
    (out / "notes.txt").write_bytes(b"keep me")
    return snapshot(out)


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_signal_that_a_library_turned_into_its_own_error_is_still_reported_as_the_signal() -> None:
    """safetensors' loader, interrupted inside a callback into Python, raises a ValueError of its own (seen in CI)."""

    def library_call() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Interrupted as err:
            raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'") from err

    with pytest.raises(Interrupted) as stopped:
        with stop_signals_raise():
            library_call()
    assert stopped.value.exit_status == 143 and isinstance(stopped.value.__cause__, ValueError)


def test_sigterm_inside_predict_rolls_back_and_reports_one_line(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scene"
    before = user_files(out)
    real_run_model = pipeline.run_model

    def run_model_then_sigterm(*args: object, **kwargs: object):
        arrays = real_run_model(*args, **kwargs)
        assert list(out.glob(f"{WORK_PREFIX}*"))  # the staging directory exists at this point
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return arrays

    monkeypatch.setattr(pipeline, "run_model", run_model_then_sigterm)
    result = run_cli(*predict_args(scene_images, out, tiny_weights, "--export", "none"))
    assert result.status == 143
    assert result.stderr.splitlines()[-1] == "vggt predict: interrupted by SIGTERM; what it was writing is rolled back"
    assert "Traceback" not in result.stderr
    assert not list(out.glob(f"{WORK_PREFIX}*")) and snapshot(out) == before


def signal_once_staging(command: list[str], out: Path, number: int) -> subprocess.CompletedProcess:
    """Run `command`, send it `number` as soon as its staging directory under `out` exists, and wait for its end."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        deadline = time.monotonic() + STAGING_TIMEOUT
        while not list(out.glob(f"{WORK_PREFIX}*/new")):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"vggt predict ended or stalled before staging: {process.communicate()[1]}")
            time.sleep(0.01)
        process.send_signal(number)
        stdout, stderr = process.communicate(timeout=EXIT_TIMEOUT)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def assert_rolled_back(result: subprocess.CompletedProcess, out: Path, before: dict[str, bytes], name: str) -> None:
    assert result.returncode == 128 + signal.Signals[name].value, result.stderr
    assert "Traceback" not in result.stderr
    reports = [line for line in result.stderr.splitlines() if "interrupted" in line]
    assert reports == [f"vggt predict: interrupted by {name}; what it was writing is rolled back"]
    assert result.stderr.splitlines()[-1] == reports[0]
    assert not list(out.glob(f"{WORK_PREFIX}*")), "the staging directory was left behind"
    assert snapshot(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("number", STOP_SIGNALS, ids=lambda number: signal.Signals(number).name)
def test_a_signalled_predict_process_leaves_its_output_folder_as_it_was(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, number: int
) -> None:
    out = tmp_path / "scene"
    before = user_files(out)
    command = [sys.executable, "-m", "vggt", *map(str, predict_args(scene_images, out, tiny_weights))]
    result = signal_once_staging(command, out, number)
    assert_rolled_back(result, out, before, signal.Signals(number).name)


@pytest.mark.slow
def test_a_sigterm_to_predict_nproc_stops_its_ranks_and_rolls_back(
    tiny_weights: Path, scene_images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scene"
    before = user_files(out)
    args = predict_args(scene_images, out, tiny_weights, "--nproc", 2)
    result = signal_once_staging([sys.executable, "-m", "vggt", *map(str, args)], out, signal.SIGTERM)
    assert_rolled_back(result, out, before, "SIGTERM")


def test_sigterm_still_raises_after_pycolmap_is_imported() -> None:
    """pycolmap's glog replaces the SIGTERM handler at the C level when it is first imported (in a fresh process)."""
    pytest.importorskip("pycolmap")
    script = (
        "import os, signal, time\n"
        "from vggt.interrupts import Interrupted, stop_signals_raise\n"
        "from vggt.predict.colmap import import_pycolmap\n"
        "try:\n"
        "    with stop_signals_raise():\n"
        "        import_pycolmap()\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "except Interrupted as stop:\n"
        "    print(stop.signal_name)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "SIGTERM\n", result.stderr

"""benchmarks/bench_vs_upstream.py without an upstream checkout: reading the runs, refusing a wrong tree.

The comparison itself needs upstream (tests/test_npu_patch_upstream.py covers the runs it makes).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import benchmark_script


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_script("bench_vs_upstream") as module:
        yield module


def test_logged_memory_is_the_last_train_lines_in_either_trainers_format(bench: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "Train Epoch: [0][0/9] | Batch Time: 1.0 (1.0) | Mem (GB): 0.50 | Loss/x: 1.0 (1.0)\n"
        "Val Epoch: [0][0/9] | Mem (GB): 9.00\n"
        "INFO ... Train Epoch: [0][      1/9] | Batch Time: 1.0 (1.0) | Mem (GB): 2.0000 (1.2500) | Loss/x: 1 (1)\n"
    )
    assert bench.last_logged_memory_gb(log) == 2.0
    log.write_text("Train Epoch: [0][      1/9] | Mem (GB): 0.0000 (0.0000)\n")
    assert bench.last_logged_memory_gb(log) is None  # upstream's trainer on a CPU logs no memory


def test_a_tree_the_patch_does_not_fit_is_refused_with_the_reason(bench: ModuleType, tmp_path: Path) -> None:
    not_upstream = tmp_path / "not_upstream"
    (not_upstream / "training").mkdir(parents=True)
    with pytest.raises(SystemExit, match="does not apply"):
        bench.prepare_upstream(not_upstream, tmp_path / "copy")


def load_phase_times() -> ModuleType:
    """benchmarks/phase_times/sitecustomize.py under another name (importing it changes nothing without its env)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "phase_times" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("phase_times_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_phase_clock_splits_steps_into_phases_and_the_gaps_between_them() -> None:
    times = iter([0.0, 1.0, 1.5, 3.5, 4.0, 4.25, 5.0, 6.0, 6.25, 8.25, 8.5, 9.0])
    synced = []
    recorded = []
    clock = load_phase_times().PhaseClock(synced.append, now=lambda: next(times), on_step=recorded.append)
    for device in ("cpu", "cpu"):  # two steps: forward, loss, backward, clip, optimizer, then the next batch
        clock.begin("forward", device)
        clock.end("forward", device)
        clock.begin("backward", device)
        clock.end("backward", device)
        clock.begin("optimizer", device)
        clock.end("optimizer", device)
    first = {"forward": 1.0, "loss": 0.5, "backward": 2.0, "clip": 0.5, "optimizer": 0.25}
    second = {"data": 0.75, "forward": 1.0, "loss": 0.25, "backward": 2.0, "clip": 0.25, "optimizer": 0.5}
    assert clock.steps == recorded == [first, second]  # the first step has no data gap: nothing ran before it
    assert len(synced) == 12  # every boundary synchronises the device first


def test_phase_split_averages_steps_after_the_warm_up_over_processes(bench: ModuleType, tmp_path: Path) -> None:
    warm = [{"forward": 100.0}] * bench.WARMUP_STEPS
    for pid, last in ((1, {"forward": 1.0, "data": 0.5}), (2, {"forward": 3.0, "optimizer": 1.0})):
        (tmp_path / f"phases-{pid}.jsonl").write_text("".join(json.dumps(step) + "\n" for step in [*warm, last]))
    split = bench.phase_split(tmp_path)
    assert split == {"data": 0.25, "forward": 2.0, "loss": 0.0, "backward": 0.0, "clip": 0.0, "optimizer": 0.5}
    assert bench.phase_split(tmp_path / "missing") == {}

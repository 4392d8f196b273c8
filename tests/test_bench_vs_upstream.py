"""benchmarks/bench_vs_upstream.py without an upstream checkout: reading the runs, refusing a wrong tree.

The comparison itself needs upstream (tests/test_npu_patch_upstream.py covers the runs it makes).
"""

from __future__ import annotations

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

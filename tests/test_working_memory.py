"""benchmarks/working_memory.py's side-by-side parts: options, run commands, slope, what upstream's process loads.

The upstream runs themselves need an upstream checkout and its Python (not in CI) and run VGGT-1B:
they are benchmarks (benchmarks/README.md), not tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from tests.helpers import BENCHMARKS, benchmark_script
from vggt.synthetic_weights import synthetic_tensor

REPO = BENCHMARKS.parent


@pytest.fixture(scope="module")
def probe() -> Iterator[ModuleType]:
    with benchmark_script("working_memory") as module:
        yield module


@pytest.fixture()
def upstream_tree(tmp_path: Path) -> Path:
    """A folder shaped like upstream's checkout (only the file the option check looks for)."""
    (tmp_path / "vggt" / "models").mkdir(parents=True)
    (tmp_path / "vggt" / "models" / "vggt.py").write_text("")
    return tmp_path


def test_slope_is_added_working_memory_over_added_frames(probe: ModuleType) -> None:
    rows = [{"frames": 64, "working_bytes": 400_000_000}, {"frames": 32, "working_bytes": 300_000_000}]
    assert probe.slope_mb_per_frame(rows) == pytest.approx(100 / 32)  # 100 MB over 32 added frames
    with pytest.raises(ValueError, match="two frame counts"):
        probe.slope_mb_per_frame(rows[:1])


def test_upstream_options_refuse_what_upstream_cannot_run(probe: ModuleType, upstream_tree: Path, tmp_path) -> None:
    with pytest.raises(SystemExit):
        probe.parse_args(["--frames", "32", "--upstream-python", sys.executable])  # no checkout named
    with pytest.raises(SystemExit):
        probe.parse_args(["--frames", "32", "--upstream-dir", str(tmp_path / "empty")])
    for refused in (["--config", "tiny"], ["--nproc", "2"], ["--frames-chunk-size", "4"]):
        with pytest.raises(SystemExit):
            probe.parse_args(["--frames", "32", "--upstream-dir", str(upstream_tree), *refused])
    with pytest.raises(SystemExit):
        probe.parse_args(["--frames", "32", "0"])
    args = probe.parse_args(["--frames", "32", "64", "--upstream-dir", str(upstream_tree), "--upstream-python", "py"])
    assert args.frames == [32, 64] and args.upstream_dir == upstream_tree


def test_each_run_is_one_count_in_its_own_interpreter(probe: ModuleType, upstream_tree: Path) -> None:
    argv = ["--frames", "32", "64", "--threads", "1", "--upstream-dir", str(upstream_tree), "--upstream-python", "py"]
    args = probe.parse_args(argv)
    ours, upstream = probe.one_run_command(args, 64, False), probe.one_run_command(args, 64, True)
    assert ours[0] == sys.executable and upstream[0] == "py"
    for command in (ours, upstream):
        assert command[1] == str(BENCHMARKS / "working_memory.py")
        assert command[command.index("--frames") + 1 :][:2] == ["64", "--height"]  # one count per process
        assert command[command.index("--threads") + 1] == "1"
    assert "--upstream-dir" not in ours and "--upstream-python" not in ours + upstream
    assert upstream[upstream.index("--upstream-dir") + 1] == str(upstream_tree.resolve())


def test_part_timing_options_are_checked_and_passed_to_every_run(probe: ModuleType, upstream_tree: Path) -> None:
    for refused in (
        ["--heads-autocast"],
        ["--profile-ops", "5"],
        ["--time-parts", "1", "--profile-ops", "-1"],
        ["--time-parts", "2", "--nproc", "2"],
        ["--time-parts", "-1"],
        ["--rounds", "0"],
    ):
        with pytest.raises(SystemExit):
            probe.parse_args(["--frames", "8", *refused])
    argv = [
        "--frames",
        "8",
        "--time-parts",
        "3",
        "--heads-autocast",
        "--profile-ops",
        "4",
        "--rounds",
        "2",
        "--upstream-dir",
        str(upstream_tree),
    ]
    command = probe.one_run_command(probe.parse_args([*argv, "--upstream-python", "py"]), 8, True)
    assert command[command.index("--time-parts") + 1] == "3" and "--heads-autocast" in command
    assert command[command.index("--profile-ops") + 1] == "4"
    assert "--rounds" not in command  # rounds are the parent's: each process is one run


def test_part_statistics_are_median_and_minimum_over_every_timed_run(probe: ModuleType) -> None:
    rows = [{"aggregator_s": [3.0, 1.0], "heads_s": [1.0, 1.0]}, {"aggregator_s": [2.0], "heads_s": [0.5]}]
    stats = probe.part_statistics(rows)
    assert stats["aggregator_s"] == {"median": 2.0, "min": 1.0, "runs": 3}
    assert stats["heads_s"] == {"median": 1.0, "min": 0.5, "runs": 3}
    assert stats["total_s"] == {"median": 2.5, "min": 2.0, "runs": 3}  # per run: 4.0, 2.0, 2.5


def test_timed_parts_run_writes_each_part_per_run_and_its_profile(tmp_path: Path) -> None:
    argv = ["--config", "tiny", "--frames", "2", "--height", "28", "--width", "28", "--dtype", "bfloat16"]
    argv += ["--time-parts", "2", "--rounds", "2", "--profile-ops", "3"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "working_memory.py"), *argv],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows, summary = lines[:-1], lines[-1]
    assert len(rows) == 2 and all(len(row["aggregator_s"]) == len(row["heads_s"]) == 2 for row in rows)
    assert summary["seconds"]["ours"]["total_s"]["runs"] == 4  # the profiled run is not timed
    for part in ("aggregator_ops", "heads_ops"):
        ops = summary["ops"]["ours"][part]
        assert len(ops) == 3 and all(name.startswith("aten::") and calls >= 1 for name, calls, _ in ops)
        assert [op[2] for op in ops] == sorted((op[2] for op in ops), reverse=True)  # most self time first


def test_recipe_and_procfs_load_by_path_without_this_package() -> None:
    """What upstream's process loads: with `vggt` unimportable, both files load and give our tensors."""
    script = f"""
import json, sys
sys.modules["vggt"] = None  # any import of this package (or upstream's) now fails
sys.path.insert(0, {str(BENCHMARKS)!r})
from working_memory import REPO, load_by_path
recipe = load_by_path("synthetic_recipe", REPO / "vggt" / "synthetic_recipe.py")
procfs = load_by_path("procfs", REPO / "vggt" / "runtime" / "procfs.py")
tensor = recipe.synthetic_tensor("aggregator.frame_blocks.0.mlp.fc1.weight", (64, 32))
print(json.dumps({{"values": tensor.flatten().tolist(), "rss": procfs.resident_memory_bytes()}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/")
    loaded = json.loads(done.stdout)
    ours = synthetic_tensor("aggregator.frame_blocks.0.mlp.fc1.weight", (64, 32))
    assert torch.equal(torch.tensor(loaded["values"]).view(64, 32), ours)  # exact: same recipe, same machine
    assert loaded["rss"] > 2**20  # a Python process with torch holds more than a MiB


def test_parameters_on_meta_covers_constructors_that_read_values(probe: ModuleType) -> None:
    class ReadsAValue(nn.Module):  # as upstream's DINOv2 does (drop-path rates via .item())
        def __init__(self) -> None:
            super().__init__()
            self.rate = float(torch.linspace(0, 1, 3)[1].item())
            self.linear = nn.Linear(8, 4)
            self.register_buffer("mean", torch.ones(3), persistent=False)

    with probe.parameters_on_meta():
        module = ReadsAValue()
    assert module.rate == 0.5
    assert all(param.is_meta for param in module.parameters())
    assert not module.mean.is_meta  # buffers are made where they are made
    assert not nn.Linear(2, 2).weight.is_meta  # registration is restored after the block

"""The device check: reports written after each section, skips and time-outs recorded, reruns resumed.

On this CPU-only machine the driver runs at reduced sizes; the figures themselves are never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.helpers import BENCHMARKS, CPU_ADAMW, benchmark_script
from vggt.runtime import kernels, reference

ROOT = BENCHMARKS.parent


@pytest.fixture(scope="module")
def driver() -> Iterator[ModuleType]:
    with benchmark_script("device_check") as module:
        yield module


@pytest.fixture(scope="module")
def attention_check() -> Iterator[ModuleType]:
    with benchmark_script("device_check_attention") as module:
        yield module


def device_check(out: Path, *args: str) -> dict:
    """`bash benchmarks/device_check.sh --out OUT ARGS` on the CPU; the JSON report it leaves."""
    env = {**os.environ, "PYTHON": sys.executable, "VGGT_DEVICE": "cpu"}
    command = ["bash", str(BENCHMARKS / "device_check.sh"), "--out", str(out), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "device_check.json").read_text())


def timed_out_attention_then_skipped_multi_card(out: Path) -> dict:
    return device_check(out, "--only", "attention", "multi_card", "--timeout", "attention=0.3")


def test_a_section_over_its_limit_is_timed_out_and_the_run_goes_on(tmp_path: Path) -> None:
    report = timed_out_attention_then_skipped_multi_card(tmp_path)
    attention, multi = report["sections"]["attention"], report["sections"]["multi_card"]
    assert attention["status"] == "timed_out" and attention["commands"][0]["timed_out"]
    assert attention["seconds"] < 30  # killed at its limit (plus the grace), not run to the end
    assert multi["status"] == "skipped" and multi["reason"] == "needs 2 cards, this machine has no accelerator"
    assert set(report["sections"]) == {"attention", "multi_card"}  # --only ran nothing else
    assert report["environment"]["reduced"] and report["environment"]["device_type"] == "cpu"
    markdown = (tmp_path / "device_check.md").read_text()
    assert "| attention | timed_out |" in markdown and "| infer | not run |" in markdown
    assert (tmp_path / "logs" / "attention.log").read_text().startswith("$ ")


@pytest.mark.slow
def test_a_rerun_runs_what_was_not_recorded_and_keeps_the_rest(tmp_path: Path) -> None:
    multi = timed_out_attention_then_skipped_multi_card(tmp_path)["sections"]["multi_card"]
    report = device_check(tmp_path, "--only", "attention")  # the default limit now
    attention = report["sections"]["attention"]
    assert attention["status"] == "ok", attention
    cases = {case["name"]: case for case in attention["data"]["cases"]}
    assert cases["global"]["passed"] and cases["global"]["backend"] == "torch"
    assert cases["beyond_limit"]["skipped"].startswith("no accelerator")
    assert attention["reason"].startswith("beyond_limit: no accelerator")
    assert report["sections"]["multi_card"] == multi  # not asked for: kept as recorded

    report = device_check(tmp_path, "--budget", "0.1")  # no --only: recorded sections are kept, the rest wait
    assert report["sections"]["attention"] == attention and report["sections"]["multi_card"] == multi
    for name in ("accelerator_tests", "infer", "train"):
        entry = report["sections"][name]
        assert entry["status"] == "left" and entry["reason"].endswith(f"rerun with --only {name}"), entry


def test_the_written_out_reference_equals_the_runtimes_reference(attention_check: ModuleType) -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 96, 16, generator=g) for _ in range(3))
    expected = reference.attention(q, k, v)[:, :, 10:20]
    torch.testing.assert_close(attention_check.reference_rows(q[:, :, 10:20], k, v), expected, rtol=1e-5, atol=1e-6)


def test_needles_catch_a_kernel_that_ignores_the_keys_beyond_the_boundary(
    attention_check: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = attention_check.Case("split", 1, 2, 640, 16, "float32", 1e-4, limit=512)
    assert attention_check.run_case(case, torch.device("cpu"))["passed"]

    def truncated(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return reference.attention(q, k[:, :, : case.limit], v[:, :, : case.limit])

    monkeypatch.setattr(kernels, "attention", truncated)
    result = attention_check.run_case(case, torch.device("cpu"))
    assert not result["passed"] and result["max_abs_error"] > 100 * case.tolerance * result["reference_scale"]


def test_only_the_missing_modules_of_a_carried_wheel_are_unpacked(driver: ModuleType, tmp_path: Path) -> None:
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    members = ("dc_absent_pkg/__init__.py", "json/__init__.py", "dc_absent_pkg-1.0.dist-info/METADATA")
    with zipfile.ZipFile(wheels / "dc_absent_pkg-1.0-py3-none-any.whl", "w") as archive:
        for name in members:
            archive.writestr(name, "")
    with zipfile.ZipFile(wheels / "installed-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("json/__init__.py", "raise ImportError('shadowed the installed json')")

    assert driver.unpack_missing(wheels, site) == ["dc_absent_pkg-1.0-py3-none-any.whl"]
    written = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert written == ["dc_absent_pkg-1.0.dist-info/METADATA", "dc_absent_pkg/__init__.py"]


@pytest.mark.parametrize(
    "name, dtype, tflops",
    [
        ("NVIDIA H200", "bf16", 989.0),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.0),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("Ascend910B3", "bf16", 313.0),
        ("AMD EPYC", "bf16", None),
    ],
)
def test_the_peak_for_mfu_follows_the_device_name(driver: ModuleType, name: str, dtype: str, tflops: float) -> None:
    found = driver.published_peak(name, dtype)
    assert (None if found is None else found[0]) == tflops


def test_inference_rows_stand_beside_upstreams_h100_table(driver: ModuleType) -> None:
    common = {"config": "vggt_1b", "height": 518, "width": 518, "dtype": "bfloat16", "repeats": 2}
    common |= {"memory_kind": "allocator peak", "over_baseline_bytes": 1_000_000_000}
    rows = [
        {**common, "part": part, "frames": frames, "min_s": seconds, "peak_bytes": 6_000_000_000}
        for frames, part, seconds in ((1, "aggregator", 0.05), (1, "model", 0.08), (32, "aggregator", 0.9))
    ]
    lines = driver.infer_markdown({"rows": rows})
    assert "| 1 | 0.050 | 6.00 | 1.00 | 0.04 | 1.88 | 0.080 | 6.00 |" in lines  # upstream: 0.04 s, 1.88 GB
    assert "| 32 | 0.900 | 6.00 | 1.00 | not published |  |  |  |" in lines


@pytest.mark.slow
def test_a_cpu_run_covers_every_section_at_reduced_size(tmp_path: Path) -> None:
    limits = [f"--timeout={name}=600" for name in ("accelerator_tests", "attention", "infer", "train")]
    sections = device_check(tmp_path, *limits, "--budget", "3000")["sections"]  # a loaded CPU: coverage, not time
    assert sections["accelerator_tests"]["status"] == "skipped"
    assert "no NPU or GPU" in sections["accelerator_tests"]["reason"]
    assert sections["attention"]["status"] == "ok"
    infer = sections["infer"]
    assert infer["status"] == "ok" and infer["reason"].startswith("no accelerator")
    assert [(r["part"], r["frames"]) for r in infer["data"]["rows"]] == [
        ("aggregator", 1),
        ("model", 1),
        ("aggregator", 2),
        ("model", 2),
    ]
    train = sections["train"]
    assert train["status"] == "ok" and train["data"]["peak"]["tflops"] is None
    assert train["data"]["bench"]["rows"][0]["mfu"] is None
    assert sections["multi_card"]["status"] == "skipped"
    markdown = (tmp_path / "device_check.md").read_text()
    assert "upstream H100 s" in markdown and f"| optimizer | {CPU_ADAMW} |" in markdown


@pytest.mark.slow
def test_two_rank_sequence_parallel_check_passes_over_gloo(tmp_path: Path) -> None:
    with benchmark_script("device_check_parallel") as module:
        summary = module.main(["--result", str(tmp_path / "parallel.json")])
    assert summary["world_size"] == 2 and summary["passed"]
    assert set(summary["relative_errors"]) == set(module.DENSE)

"""The kernel benchmark runs in-process, returns well-formed rows and checks every backend (timings never asserted)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.helpers import benchmark_script
from vggt.runtime import kernels

TINY_ARGS = ["--device", "cpu", "--frames", "1", "--height", "28", "--width", "28", "--warmup", "0", "--repeats", "1"]
KERNELS = ["attention_frame", "attention_global", "rope", "gelu"]
TINY_SHAPES = {  # P = 5 + 2 * 2 = 9 tokens, 16 heads of 64, MLP hidden 4096
    "attention_frame": "1x16x9x64",
    "attention_global": "1x16x9x64",
    "rope": "1x16x9x64",
    "gelu": "1x9x4096",
}
FLOAT32_BOUND = 1e-4
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_script("bench_kernels") as module:
        yield module


@pytest.mark.parametrize("env_before", [None, "torch"])
def test_tiny_rows(
    bench: ModuleType,
    env_before: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env_before is None:
        monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    else:
        monkeypatch.setenv(kernels.KERNELS_ENV, env_before)
    json_path = tmp_path / "rows.json"
    rows = bench.main([*TINY_ARGS, "--json", str(json_path)])

    assert os.environ.get(kernels.KERNELS_ENV) == env_before  # the forced backends left no trace
    assert [(r.kernel, r.backend) for r in rows] == [(k, b) for k in KERNELS for b in ("torch", "cuda")]
    for row in rows:
        assert row.shape == TINY_SHAPES[row.kernel]
        assert (row.dtype, row.device, row.warmup, row.repeats) == ("float32", "cpu", 0, 1)
        assert 0 < row.fwd_min_ms <= row.fwd_mean_ms and 0 < row.fwd_bwd_min_ms <= row.fwd_bwd_mean_ms
        assert row.max_abs_diff < FLOAT32_BOUND and row.grad_max_abs_diff < FLOAT32_BOUND, row
        assert row.peak_bytes is None  # no allocator statistics on the CPU
    assert all(r.max_abs_diff == 0.0 and r.grad_max_abs_diff == 0.0 for r in rows if r.backend == "torch")

    out = capsys.readouterr().out
    assert out.startswith("# torch ")
    assert "CPU flash-attention kernel" in out  # the output says what the cuda backend runs on CPU tensors
    assert "fwd+bwd min ms" in out and out.count("\nattention_frame ") == 2

    payload = json.loads(json_path.read_text())
    assert payload["environment"]["device"] == "cpu"
    assert [r["kernel"] for r in payload["rows"]] == [r.kernel for r in rows]
    assert set(payload["rows"][0]) == set(bench.Row.__dataclass_fields__)


def test_forward_only(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench.main([*TINY_ARGS, "--backends", "cuda", "--no-backward", "--dtype", "bfloat16"])

    assert [(r.kernel, r.backend, r.dtype) for r in rows] == [(k, "cuda", "bfloat16") for k in KERNELS]
    assert all(r.fwd_bwd_mean_ms is None and r.grad_max_abs_diff is None for r in rows)
    table = capsys.readouterr().out.splitlines()[-len(rows) :]
    assert all(line.split(" | ")[6].strip() == "n/a" for line in table)  # the fwd+bwd mean column


def test_npu_backend_rows_match_the_reference(bench: ModuleType, torch_npu_emulation: ModuleType) -> None:
    """The NPU path of the benchmark (reachable on a CPU only through the torch_npu emulation) checks out too."""
    shapes = bench.Shapes.vggt_1b(frames=1, height=28, width=28)
    for case in bench.build_cases(shapes, CPU, torch.float32, backward=True):
        with bench.forced_backend("torch"):
            reference = bench.evaluate(case)
        row = bench.measure(case, "npu", reference, CPU, warmup=0, repeats=1)
        assert row.max_abs_diff < FLOAT32_BOUND and row.grad_max_abs_diff < FLOAT32_BOUND, row


@pytest.mark.parametrize("flag, value", [("--height", "30"), ("--width", "29")])
def test_bad_resolution_names_the_value(
    bench: ModuleType, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = list(TINY_ARGS)
    args[args.index(flag) + 1] = value
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2
    assert f"{flag} {value} is not a multiple of the patch size 14" in capsys.readouterr().err


def test_backend_the_device_cannot_run_exits_2(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*TINY_ARGS, "--backends", "torch", "npu"])
    assert exit_info.value.code == 2
    assert "--backends npu does not run on cpu; there use torch or cuda" in capsys.readouterr().err

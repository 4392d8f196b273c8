"""The inference benchmark runs in-process and returns well-formed rows (timings are never asserted)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import benchmark_script

TINY_ARGS = ["--config", "tiny", "--frames", "1", "--height", "140", "--width", "140", "--device", "cpu"]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_script("bench_infer") as module:
        yield module


def test_tiny_rows(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    json_path = tmp_path / "rows.json"
    rows = bench.main([*TINY_ARGS, "--warmup", "0", "--repeats", "1", "--json", str(json_path)])

    assert [row.part for row in rows] == ["aggregator", "model"]  # --part both: aggregator first
    for row in rows:
        assert (row.config, row.frames, row.batch, row.height, row.width) == ("tiny", 1, 1, 140, 140)
        assert (row.dtype, row.device, row.query_points, row.repeats) == ("float32", "cpu", 0, 1)
        assert row.min_s <= row.mean_s and row.std_s == 0.0  # one repeat: no spread
        assert row.memory_kind.startswith("RSS peak") or row.memory_kind == "unavailable"
        assert row.peak_bytes is None or row.peak_bytes > 0

    out = capsys.readouterr().out
    assert out.startswith("# torch ")
    assert "memory kind" in out and out.count("\ntiny ") == 2

    payload = json.loads(json_path.read_text())
    assert payload["environment"]["device"] == "cpu"
    assert [r["part"] for r in payload["rows"]] == ["aggregator", "model"]
    assert set(payload["rows"][0]) == {f.name for f in bench.Row.__dataclass_fields__.values()}


@pytest.mark.parametrize("flag, value", [("--height", "500"), ("--width", "141")])
def test_bad_resolution_names_the_value(
    bench: ModuleType, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY_ARGS, "--warmup", "0", "--repeats", "1"]
    args[args.index(flag) + 1] = value
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} {value} is not a multiple of the patch size 14" in err


@pytest.mark.slow
def test_sweep_runs_each_count_in_its_own_process_and_writes_csv_and_png(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, png_path = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    args = ["--config", "tiny", "--frames", "2", "4", "--height", "56", "--width", "56", "--device", "cpu"]
    rows = bench.main([*args, "--sweep", "--nproc", "2", "--csv", str(csv_path), "--png", str(png_path)])

    assert [row["frames"] for row in rows] == [2, 4]
    assert all(row["nproc"] == 2 and row["peak_bytes"] > 0 and row["seconds"] > 0 for row in rows)
    with csv_path.open() as handle:
        written = list(csv.DictReader(handle))
    assert [int(row["frames"]) for row in written] == [2, 4] and set(written[0]) == set(bench.SWEEP_FIELDS)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MB per added frame" in capsys.readouterr().out


def test_sweep_options_need_sweep(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main([*TINY_ARGS, "--csv", "x.csv"])
    assert "belong to --sweep" in capsys.readouterr().err

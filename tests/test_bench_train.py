"""The training benchmark runs in-process and returns a well-formed row (timings are never asserted)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import CPU_ADAMW, TORCH_HAS_CPU_FUSED_ADAMW, benchmark_script
from tests.training_helpers import small_overrides


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with benchmark_script("bench_train") as module:
        yield module


def test_synthetic_row(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    json_path = tmp_path / "row.json"
    args = ["--config-name", "synthetic", *small_overrides(tmp_path / "scenes"), "--warmup", "0", "--steps", "1"]
    row = bench.main([*args, "--peak-tflops", "2", "--json", str(json_path)])

    assert (row.config_name, row.device, row.world_size, row.model, row.amp_dtype) == (
        "synthetic",
        "cpu",
        1,
        "tiny",
        "float32",
    )
    assert row.frozen == [] and row.trainable_params == row.total_params > 0
    assert row.optimizer == CPU_ADAMW  # the CPU's: fused where torch has it
    assert (row.warmup, row.steps) == (0, 1)
    assert row.batch_shapes == {"2x2x84x112": 1}  # B x S x H x W: 2 sequences of 2 frames, aspect 0.75 at 112 px
    assert (row.sequences_per_step, row.images_per_step) == (2, 4)
    assert row.min_step_s <= row.mean_step_s and row.std_step_s == 0.0  # one step: no spread
    assert row.sequences_per_s == pytest.approx(2 * row.steps_per_s)
    assert row.images_per_s == pytest.approx(4 * row.steps_per_s)
    assert row.flops_per_step > 0 and row.attention_flops_counted and row.notes == []
    assert row.achieved_tflops == pytest.approx(row.flops_per_step * row.steps_per_s / 1e12)
    assert row.mfu == pytest.approx(row.achieved_tflops / 2)
    assert row.memory_kind.startswith("RSS peak") or row.memory_kind == "unavailable"
    assert row.peak_bytes is None or row.peak_bytes > 0
    # fused AdamW skips on the device; the for-loop AdamW needs the flag read, timed (a number, sign left to noise)
    assert row.skip_flag_read_s is None if TORCH_HAS_CPU_FUSED_ADAMW else isinstance(row.skip_flag_read_s, float)

    out = capsys.readouterr().out
    assert out.startswith("# torch ")
    assert "sequences/s (all devices)" in out and "MFU" in out
    assert "non-finite skip: host flag read per step ms" in out

    payload = json.loads(json_path.read_text())
    assert payload["environment"]["device"] == "cpu"
    assert set(payload["rows"][0]) == {f.name for f in bench.Row.__dataclass_fields__.values()}


def test_synthetic_data_swaps_only_the_data_set(bench: ModuleType) -> None:
    cfg = bench.compose_config("perf", ["device=cpu", "data.train.num_sequences=4"], synthetic_data=True)
    assert cfg.data.train.kind == "synthetic" and cfg.data.train.cache_dir == bench.SCENES_DIR
    assert cfg.data.train.num_sequences == 4  # the user's overrides come after the benchmark's
    assert (cfg.model.config, cfg.data.img_size, cfg.data.train.batch_size) == ("vggt_1b", 518, 15)
    assert (list(cfg.data.train.img_nums), list(cfg.optim.frozen), cfg.optim.amp_dtype) == (
        [2, 2],
        ["*aggregator*"],
        "bfloat16",
    )
    assert cfg.data.val is None and cfg.checkpoint.resume is None


def test_perf_without_co3d_paths_names_them(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--config-name", "perf", "device=cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data.train.annotation_dir=... data.train.co3d_dir=..." in err and "--synthetic-data" in err


def test_bad_override_is_a_usage_error(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--config-name", "synthetic", "data.no_such_key=1"])
    assert exit_info.value.code == 2
    assert "cannot compose --config-name synthetic" in capsys.readouterr().err


def test_peak_tflops_auto_measures_a_gemm_peak_and_divides_by_it(bench: ModuleType, tmp_path: Path) -> None:
    args = ["--config-name", "synthetic", *small_overrides(tmp_path / "scenes"), "--warmup", "0", "--steps", "1"]
    row = bench.main([*args, "--peak-tflops", "auto"])
    assert row.peak_source.startswith("measured: best of 5 2048x2048 float32 GEMMs")
    assert row.peak_tflops > 0 and row.mfu == pytest.approx(row.achieved_tflops / row.peak_tflops)


def test_measured_gemm_peak_is_the_fastest_gemm_rate(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    common = sys.modules["common"]
    monkeypatch.setattr(common, "time_calls", lambda call, device, warmup, repeats: [4.0, 2.0, 8.0][:repeats])
    peak, how = common.measured_gemm_peak_tflops(torch.device("cpu"), torch.bfloat16, repeats=3)
    assert peak == pytest.approx(2 * 2048**3 / 2.0 / 1e12)  # 2 n^3 FLOPs of the quickest of the three
    assert how.startswith("measured: best of 3 2048x2048 bfloat16 GEMMs")


def test_peak_tflops_takes_a_number_or_auto(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.peak_or_auto("auto") == "auto" and bench.peak_or_auto("312.5") == 312.5
    with pytest.raises(SystemExit):
        bench.main(["--config-name", "synthetic", "--peak-tflops", "fast"])
    assert "'fast' is not a number" in capsys.readouterr().err

"""`vggt predict` prints its memory estimate before loading and stops, writing nothing, when it does not fit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import vggt.memory_plan as memory_plan
from tests.predict.conftest import predict_args, run_cli, write_scene_video
from vggt.config import VGGTConfig

MIB = 1024**2


def test_estimate_is_printed_before_loading(tiny_weights: Path, scene_images: Path, tmp_path: Path) -> None:
    result = run_cli(*predict_args(scene_images, tmp_path / "out", tiny_weights, "--export", "none"))
    assert result.status == 0, result.stderr
    estimate, loading = result.stdout.index("memory estimate for 3 frames"), result.stdout.index("loading the model")
    assert estimate < loading


def limit_free_memory(monkeypatch: pytest.MonkeyPatch, free_bytes: int) -> None:
    """The memory check sees `free_bytes` free on the device and on the host."""
    monkeypatch.setattr(memory_plan, "free_memory_bytes", lambda device: free_bytes)
    monkeypatch.setattr(memory_plan, "host_available_bytes", lambda: free_bytes)


def test_too_little_memory_stops_with_the_options_unless_overridden(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit_free_memory(monkeypatch, 64 * MIB)
    out = tmp_path / "out"
    stopped = run_cli(*predict_args(scene_images, out, tiny_weights, "--export", "none"))
    assert stopped.status == 2
    assert "this does not fit" in stopped.stderr and "64.00 MiB" not in stopped.stderr
    assert "0.06 GiB free on cpu" in stopped.stderr and "--skip-memory-check" in stopped.stderr
    assert "loading the model" not in stopped.stdout and not out.exists()

    forced = run_cli(*predict_args(scene_images, out, tiny_weights, "--export", "none", "--skip-memory-check"))
    assert forced.status == 0, forced.stderr
    assert (out / "predictions.npz").is_file()


def test_a_video_too_long_for_the_memory_stops_once_its_frames_are_counted_writing_nothing(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("av")
    limit_free_memory(monkeypatch, 64 * MIB)
    video = write_scene_video(tmp_path / "clip.mp4", scene_images)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped = run_cli(*predict_args(video, out, tiny_weights, "--fps", "2", "--export", "none"))
    assert stopped.status == 2
    assert "memory estimate for 6 frames" in stopped.stderr and "this does not fit" in stopped.stderr
    assert "loading the model" not in stopped.stdout and not out.exists()


def test_too_many_query_points_stop_before_loading_naming_the_count_that_fits(
    tiny_weights: Path, scene_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit_free_memory(monkeypatch, 2048 * MIB)
    queries = tmp_path / "queries.npy"
    grid = np.stack(np.meshgrid(np.arange(600), np.arange(500)), axis=-1).reshape(-1, 2) * [160 / 600, 120 / 500]
    np.save(queries, grid.astype(np.float32))  # 300,000 points inside the 160x120 images
    args = predict_args(scene_images, tmp_path / "out", tiny_weights, "--export", "none", "--resolution", 224)
    stopped = run_cli(*args, "--query-points", queries)
    assert stopped.status == 2 and "loading the model" not in stopped.stdout
    assert "with 300000 query points" in stopped.stderr and "this does not fit" in stopped.stderr
    fitting = int(stopped.stderr.split("What would fit: at most ")[1].split(" query points")[0])
    config, cpu = VGGTConfig.tiny(), torch.device("cpu")
    assert 0 < fitting < 300_000
    # the named count fits and one more does not, planned at the crop's 168x224 (from the 160x120 headers)
    memory_plan.check_inference_memory(config, 3, 168, 224, cpu, torch.float32, 8, query_points=fitting)
    with pytest.raises(memory_plan.MemoryPlanError):
        memory_plan.check_inference_memory(config, 3, 168, 224, cpu, torch.float32, 8, query_points=fitting + 1)
    assert "3 frames of at most 168x224" in stopped.stdout + stopped.stderr

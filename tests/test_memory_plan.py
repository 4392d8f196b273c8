"""The inference memory model: its estimate against a measured CPU peak, and the advice when memory is short."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import vggt.memory_plan as memory_plan
from tests.helpers import BENCHMARKS
from vggt.config import VGGTConfig
from vggt.memory_plan import (
    MemoryPlanError,
    check_inference_memory,
    estimate_inference_memory,
    inference_weight_bytes,
    largest_fitting,
)
from vggt.models.vggt import VGGT
from vggt.runtime import kernels

GIB = 1024**3


def test_per_frame_memory_of_vggt_1b_follows_the_kept_tensors() -> None:
    # 112 px: P = 5 + 8 * 8 = 69 tokens of C = 1024; 4 kept layers of 2C + residual C (float32) + keys and values 2C
    estimate = estimate_inference_memory(VGGTConfig(), 4096, 112, 112, torch.float32)
    assert estimate.phase == "aggregator"
    assert estimate.per_frame_bytes == 69 * 1024 * (32 + 4 + 8) + 3 * 112 * 112 * 4
    bf16 = estimate_inference_memory(VGGTConfig(), 4096, 112, 112, torch.bfloat16)
    assert bf16.per_frame_bytes == 69 * 1024 * (16 + 4 + 4) + 3 * 112 * 112 * 4  # kept layers, keys, values in bf16


def test_bf16_weights_count_the_aggregator_matmuls_at_two_bytes() -> None:
    config = VGGTConfig.tiny()
    model = VGGT(config=config)
    matmul = sum(
        p.numel()
        for m in model.aggregator.modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
        for p in m.parameters(recurse=False)
    )
    total = sum(p.numel() for p in model.parameters())
    assert inference_weight_bytes(config, torch.float32) == 4 * total
    assert inference_weight_bytes(config, torch.bfloat16) == 4 * total - 2 * matmul


def test_processes_share_the_per_frame_memory() -> None:
    one = estimate_inference_memory(VGGTConfig(), 1000, 518, 518, torch.bfloat16)
    four = estimate_inference_memory(VGGTConfig(), 1000, 518, 518, torch.bfloat16, world_size=4)
    assert four.device_bytes < one.device_bytes / 2


def test_a_rank_holds_nothing_of_the_other_ranks_frames() -> None:
    # vggt predict --nproc sends each rank its frames only and gathers outputs into rank 0's host memory: one more
    # frame on the other rank (4095 -> 4096 frames over 2, 2048 local frames both times) costs this rank nothing
    fewer = estimate_inference_memory(VGGTConfig(), 4095, 112, 112, torch.float32, world_size=2)
    more = estimate_inference_memory(VGGTConfig(), 4096, 112, 112, torch.float32, world_size=2)
    assert fewer.device_bytes == more.device_bytes
    assert more.host_bytes > fewer.host_bytes  # rank 0's host arrays hold the whole scene


def test_largest_fitting_finds_the_boundary() -> None:
    assert largest_fitting(lambda n: n <= 37, 100) == 37
    assert largest_fitting(lambda n: False, 100) == 0


def test_too_many_frames_stop_with_the_numbers_and_what_would_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_plan, "free_memory_bytes", lambda device: 8 * GIB)
    monkeypatch.setattr(memory_plan, "host_available_bytes", lambda: 8 * GIB)
    config, cpu = VGGTConfig(), torch.device("cpu")
    line = check_inference_memory(config, 4, 518, 518, cpu, torch.float32, 8)
    assert line.startswith("memory estimate for 4 frames of at most 518x518, float32, 1 process(es): device ")
    with pytest.raises(MemoryPlanError, match=r"does not fit: .* GiB > 8.00 GiB free on cpu") as error:
        check_inference_memory(config, 400, 518, 518, cpu, torch.float32, 8)
    fitting = int(str(error.value).split("What would fit: at most ")[1].split(" frames")[0])
    assert 0 < fitting < 400
    assert check_inference_memory(config, fitting, 518, 518, cpu, torch.float32, 8)  # the advice itself fits
    assert "--skip-memory-check" in str(error.value)
    assert check_inference_memory(config, 400, 518, 518, cpu, torch.float32, 8, enforce=False)


def test_most_frames_that_fit_is_the_largest_count_the_memory_check_lets_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory_plan, "free_memory_bytes", lambda device: 8 * GIB)
    monkeypatch.setattr(memory_plan, "host_available_bytes", lambda: 8 * GIB)
    config, cpu = VGGTConfig(), torch.device("cpu")
    most = memory_plan.most_frames_that_fit(config, 518, 518, cpu, torch.bfloat16, 8)
    assert most > 0
    check_inference_memory(config, most, 518, 518, cpu, torch.bfloat16, 8)  # passes
    with pytest.raises(MemoryPlanError):
        check_inference_memory(config, most + 1, 518, 518, cpu, torch.bfloat16, 8)
    monkeypatch.setattr(memory_plan, "free_memory_bytes", lambda device: None)
    assert memory_plan.most_frames_that_fit(config, 518, 518, cpu, torch.bfloat16, 8) is None


@pytest.mark.slow
def test_estimate_is_within_its_margin_of_a_measured_cpu_peak() -> None:
    """Stated margin: the working-memory estimate lies within -10 % / +50 % of the measured peak (tiny at 224 px)."""
    command = [sys.executable, str(BENCHMARKS / "working_memory.py"), "--config", "tiny", "--frames", "32"]
    command += ["--height", "224", "--width", "224", "--frames-chunk-size", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    measured = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)
    estimate = estimate_inference_memory(VGGTConfig.tiny(), 32, 224, 224, torch.float32, 8)
    predicted = estimate.device_bytes - estimate.weights_bytes - estimate.inputs_bytes  # the probe makes inputs first
    assert 0.9 * measured["working_bytes"] <= predicted <= 1.5 * measured["working_bytes"], (predicted, measured)


@pytest.mark.slow
def test_the_tracker_term_follows_the_measured_peak_per_added_query_point() -> None:
    """The estimate's bytes per added query point (tiny, 4 frames of 224 px) within 10 % of two measured runs."""
    measured = {}
    for points in (2000, 4000):
        command = [sys.executable, str(BENCHMARKS / "working_memory.py"), "--config", "tiny", "--frames", "4"]
        command += ["--height", "224", "--width", "224", "--query-points", str(points), "--threads", "1"]
        done = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ})
        measured[points] = json.loads(done.stdout)["working_bytes"]
    slope = (measured[4000] - measured[2000]) / 2000
    estimates = {n: estimate_inference_memory(VGGTConfig.tiny(), 4, 224, 224, query_points=n) for n in (2000, 4000)}
    predicted = (estimates[4000].device_bytes - estimates[2000].device_bytes) / 2000
    assert 0.9 * slope <= predicted <= 1.1 * slope, (predicted, slope)


TRACKER_PEAK_SCRIPT = """
import json, sys
import torch
from vggt.config import VGGTConfig
from vggt.heads.tracker import BaseTrackerPredictor
from vggt.runtime import resident_memory_bytes
points = int(sys.argv[1])
torch.set_num_threads(1)
c = VGGTConfig()
tracker = BaseTrackerPredictor(c.tracker_stride, c.tracker_corr_levels, c.tracker_corr_radius, c.track_features,
    c.tracker_hidden_size, c.tracker_num_heads, c.tracker_depth, c.tracker_num_virtual_tracks).eval()
fmaps = torch.randn(1, 2, c.track_features, 64, 64)
queries = torch.rand(1, points, 2) * 127
with torch.no_grad():
    tracker(queries[:, :1], fmaps, 1)
    base = resident_memory_bytes()
    tracker(queries, fmaps, c.tracker_iterations)
print(resident_memory_bytes(peak=True) - base)
"""


@pytest.mark.slow
def test_the_tracker_term_of_vggt_1b_shapes_follows_its_measured_peak() -> None:
    """The tracker alone with VGGT-1B's widths (random weights, 2 frames of 64x64 feature maps): bytes per added
    point and frame within 10 % of tracker_point_frame_bytes."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    measured = {}
    for points in (1000, 2000):
        command = [sys.executable, "-c", TRACKER_PEAK_SCRIPT, str(points)]
        measured[points] = int(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)
    per_point_frame = (measured[2000] - measured[1000]) / 1000 / 2
    predicted = memory_plan.tracker_point_frame_bytes(VGGTConfig())
    assert 0.9 * per_point_frame <= predicted <= 1.1 * per_point_frame, (predicted, per_point_frame)


def test_split_attention_costs_a_key_and_value_chunk_and_the_query_chunks_merge_buffers() -> None:
    # 300 keys in 3 chunks of 100, 100 queries in one; 4 channels; per query 4 float32 + 2 bf16 buffers
    assert memory_plan.split_attention_bytes(300, 100, 4, 2, 128) == 4 * (2 * 100 * 2 + 100 * (4 * 4 + 2 * 2))


def test_npu_estimate_adds_the_split_only_beyond_the_attention_limit() -> None:
    config, P = VGGTConfig(), 5 + 8 * 8  # 112 px
    plain = estimate_inference_memory(config, 4096, 112, 112, torch.bfloat16)
    split = estimate_inference_memory(config, 4096, 112, 112, torch.bfloat16, split_attention_tokens=100_000)
    assert split.phase == "aggregator"
    keys, key_chunk, queries = 4096 * P, math.ceil(4096 * P / 3), 8 * P  # 282,624 tokens: 3 chunks
    extra = 1024 * (2 * key_chunk * 2 + queries * (4 * 4 + 2 * 2))
    assert keys > 200_000 and split.device_bytes - plain.device_bytes == extra
    roomy = estimate_inference_memory(config, 4096, 112, 112, torch.bfloat16, split_attention_tokens=keys)
    assert roomy.device_bytes == plain.device_bytes


def test_only_the_npu_backend_splits_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VGGT_KERNELS", raising=False)
    monkeypatch.delenv("VGGT_NPU_ATTENTION_MAX_SEQ", raising=False)
    assert kernels.split_attention_tokens(torch.device("cpu")) is None
    assert kernels.split_attention_tokens(torch.device("cuda", 0)) is None
    monkeypatch.setenv("VGGT_KERNELS", "npu")
    assert kernels.split_attention_tokens(torch.device("cpu")) == 1024 * 1024

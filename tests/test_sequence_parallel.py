"""Sequence-parallel inference over 2 gloo processes equals the single-process forward."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vggt.config import VGGTConfig
from vggt.parallel import allowed_world_sizes, check_world_size, sequence_parallel_forward, shard_frames
from vggt.runtime import distributed_backend
from vggt.synthetic_weights import synthetic_model

H, W = 140, 168
QUERY_POINTS = torch.tensor([[20.0, 30.0], [100.5, 70.25], [150.0, 10.0]], dtype=torch.float64)
# (frames, with query points): S divisible by 2 and not, each with and without query points
CASES = ((4, True), (4, False), (3, True), (3, False), (5, False))
DENSE = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
TO_RANK_0 = ((5, True),)  # output_rank=0, as vggt predict --nproc runs it


def scene(frames: int) -> torch.Tensor:
    """[S, 3, H, W] float64 images."""
    return torch.rand(frames, 3, H, W, generator=torch.Generator().manual_seed(frames), dtype=torch.float64)


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        distributed_backend(torch.device("cpu")),
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),  # a lost peer fails the test instead of hanging it
    )
    torch.set_num_threads(1)
    model = synthetic_model(VGGTConfig.small_reference()).double()
    for frames, with_queries in CASES:
        start, end = shard_frames(frames, world)[rank]
        out = sequence_parallel_forward(
            model, scene(frames)[start:end], QUERY_POINTS if with_queries else None, frames_chunk_size=1
        )
        torch.save(out, Path(out_dir) / f"rank{rank}_S{frames}_{with_queries}.pt")
    for frames, with_queries in TO_RANK_0:
        start, end = shard_frames(frames, world)[rank]
        out = sequence_parallel_forward(
            model, scene(frames)[start:end], QUERY_POINTS if with_queries else None, frames_chunk_size=1, output_rank=0
        )
        torch.save(out, Path(out_dir) / f"to0_rank{rank}_S{frames}_{with_queries}.pt")
    dist.destroy_process_group()


def test_shards_are_contiguous_and_balanced() -> None:
    assert shard_frames(5, 2) == [(0, 3), (3, 5)]
    assert shard_frames(4, 2) == [(0, 2), (2, 4)]
    assert shard_frames(7, 4) == [(0, 2), (2, 4), (4, 6), (6, 7)]


def test_process_count_that_does_not_divide_the_heads_is_refused_with_the_counts_that_work() -> None:
    assert allowed_world_sizes(16) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match=r"got 3, use one of \[1, 2, 4, 8, 16\]"):
        check_world_size(16, 3)
    with pytest.raises(ValueError, match="2 frames cannot give each of 4 processes"):
        check_world_size(16, 4, frames=2)


@pytest.fixture(scope="module")
def parallel_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of every case's outputs per rank, from one spawn of 2 gloo processes."""
    folder = tmp_path_factory.mktemp("sequence_parallel")
    mp.spawn(_worker, args=(2, str(folder / "init"), str(folder)), nprocs=2, join=True)
    return folder


def single_process(frames: int, with_queries: bool) -> dict[str, torch.Tensor]:
    model = synthetic_model(VGGTConfig.small_reference()).double()
    with torch.no_grad():
        return model(scene(frames), query_points=QUERY_POINTS if with_queries else None)


def assert_matches(parallel: dict, single: dict, label: str, with_queries: bool) -> None:
    """Float64 outputs of the split forward equal the single-process ones up to summation order."""
    for key in DENSE:
        scale = max(1.0, single[key].abs().max().item())
        worst = (parallel[key] - single[key]).abs().max().item()
        assert worst <= 1e-10 * scale, f"{label} {key}: {worst:.3e}"
    if with_queries:
        assert (parallel["track"] - single["track"]).abs().max() <= 1e-9, label  # pixels
        for key in ("vis", "conf"):
            assert (parallel[key] - single[key]).abs().max() <= 1e-10, f"{label} {key}"


@pytest.mark.slow
def test_two_gloo_processes_equal_one(parallel_runs: Path) -> None:
    """In float64, where the split's other summation order costs about 1e-15: in float32 the tracker amplifies it
    by an amount that depends on the CPU's kernels (vis 0.066 apart on an AVX2-only CPU)."""
    for frames, with_queries in CASES:
        single = single_process(frames, with_queries)
        for rank in (0, 1):
            parallel = torch.load(parallel_runs / f"rank{rank}_S{frames}_{with_queries}.pt")
            label = f"S={frames} queries={with_queries} rank {rank}"
            assert set(parallel) == set(single) - {"images"}, label
            assert_matches(parallel, single, label, with_queries)


@pytest.mark.slow
def test_outputs_gathered_to_rank_0_equal_one_process_and_leave_the_others_with_cameras_only(
    parallel_runs: Path,
) -> None:
    for frames, with_queries in TO_RANK_0:
        single = single_process(frames, with_queries)
        first = torch.load(parallel_runs / f"to0_rank0_S{frames}_{with_queries}.pt")
        helper = torch.load(parallel_runs / f"to0_rank1_S{frames}_{with_queries}.pt")
        assert set(first) == set(single) - {"images"} and set(helper) == {"pose_enc", "pose_enc_list"}
        assert all(first[key].device.type == "cpu" for key in DENSE)
        assert_matches(first, single, f"S={frames} to rank 0", with_queries)

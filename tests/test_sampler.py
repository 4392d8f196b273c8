"""DynamicBatchSampler: determinism, rank slicing, shared shapes, fixed batches, passes and resume."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.base import SampleRequest
from training.data.sampler import DynamicBatchSampler

STEPS = 60


def epoch_batches(epoch: int = 0, start_step: int = 0, **kwargs) -> list[list[SampleRequest]]:
    options = {"num_sequences": 1000, "batches_per_epoch": STEPS} | kwargs
    sampler = DynamicBatchSampler(**options)
    sampler.set_epoch(epoch, start_step)
    return list(sampler)


def test_same_seed_and_epoch_give_identical_batches() -> None:
    sampler = DynamicBatchSampler(1000, seed=7, batches_per_epoch=STEPS)
    sampler.set_epoch(3)
    assert list(sampler) == list(sampler) == epoch_batches(3, seed=7)


def test_different_epochs_and_seeds_give_different_batches() -> None:
    reference = epoch_batches(0)
    assert epoch_batches(1) != reference
    assert epoch_batches(0, seed=43) != reference


@pytest.mark.parametrize(
    ("per_rank", "single_process"),
    [
        ({"batch_size": 3}, {"batch_size": 12}),
        # every S in 2..4 divides 48, so 96 // S == 2 * (48 // S) and the global batches match exactly
        ({"img_nums": (2, 4), "max_img_per_gpu": 48}, {"img_nums": (2, 4), "max_img_per_gpu": 48 * 4}),
    ],
)
def test_ranks_take_disjoint_contiguous_slices_of_the_single_process_global_batch(per_rank, single_process) -> None:
    # 10^5 sequences: the whole epoch stays within one pass, where a sequence appears once
    world = [epoch_batches(2, rank=r, world_size=4, num_sequences=10**5, **per_rank) for r in range(4)]
    reference = epoch_batches(2, num_sequences=10**5, **single_process)

    for step, global_batch in enumerate(reference):
        slices = [world[r][step] for r in range(4)]
        assert [request for batch in slices for request in batch] == global_batch  # rank order = slice order
        indices = [{request.index for request in batch} for batch in slices]
        assert sum(map(len, indices)) == len(set().union(*indices))  # no sequence on two ranks


def test_all_ranks_draw_the_same_frame_count_and_aspect_each_step() -> None:
    world = [epoch_batches(rank=r, world_size=3) for r in range(3)]
    for step in range(STEPS):
        shapes = {(request.num_frames, request.aspect_ratio) for rank in world for request in rank[step]}
        assert len(shapes) == 1


def test_frame_counts_aspects_and_batch_sizes_follow_the_configuration() -> None:
    batches = epoch_batches(num_sequences=50, batches_per_epoch=800)
    counts = [batch[0].num_frames for batch in batches]
    aspects = [batch[0].aspect_ratio for batch in batches]

    assert set(counts) == set(range(2, 25))  # every S in U{2..24} shows up in 800 steps
    assert all(0.33 <= a <= 1.0 and a == round(a, 2) for a in aspects)
    assert len(set(aspects)) > 30
    assert [len(batch) for batch in batches] == [max(1, 48 // s) for s in counts]  # 48 images per GPU
    assert all(request.num_frames == batch[0].num_frames for batch in batches for request in batch)


def test_fixed_batch_size_overrides_the_image_budget() -> None:
    batches = epoch_batches(img_nums=(2, 2), batch_size=15)  # the perf preset: 15 sequences of 2 images
    assert all(len(batch) == 15 and {r.num_frames for r in batch} == {2} for batch in batches)


def test_every_sequence_is_visited_once_per_pass_and_passes_are_reshuffled() -> None:
    stream = [r.index for batch in epoch_batches(num_sequences=7, batch_size=3, batches_per_epoch=14) for r in batch]
    passes = [stream[i : i + 7] for i in range(0, 42, 7)]
    assert all(sorted(p) == list(range(7)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1


def test_resume_from_start_step_yields_exactly_the_tail() -> None:
    full = epoch_batches(5, rank=1, world_size=2)
    sampler = DynamicBatchSampler(1000, rank=1, world_size=2, batches_per_epoch=STEPS)
    sampler.set_epoch(5, start_step=37)
    assert len(sampler) == STEPS - 37
    assert list(sampler) == full[37:]


def test_request_seeds_differ_across_requests_and_ranks() -> None:
    seeds = [r.seed for rank in range(2) for batch in epoch_batches(rank=rank, world_size=2) for r in batch]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**64 for seed in seeds)
    np.random.default_rng(seeds[0])  # usable as a numpy seed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_sequences": 0}, "num_sequences"),
        ({"img_nums": (5, 2)}, "img_nums"),
        ({"aspects": (0.0, 1.0)}, "aspects"),
        ({"batch_size": 0}, "batch_size"),
        ({"rank": 2, "world_size": 2}, "rank"),
    ],
)
def test_invalid_configuration_is_rejected_naming_the_parameter(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DynamicBatchSampler(**({"num_sequences": 10} | kwargs))


def test_start_step_beyond_the_epoch_is_rejected() -> None:
    with pytest.raises(ValueError, match="start_step"):
        DynamicBatchSampler(10, batches_per_epoch=5).set_epoch(0, start_step=6)

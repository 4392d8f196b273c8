"""Dynamic batches: every step draws a frame count S and an aspect ratio, and fills a fixed image budget.

Per step of an epoch, S ~ U{img_nums} and aspect = round(U(aspects), 2) come from a generator seeded
by (seed, epoch, step) only, so every rank uses the same S and shape at the same step: ranks finish a
step in about the same time and nobody waits at the gradient all-reduce. A rank's batch holds
`batch_size` or max(1, max_img_per_gpu // S) sequences. The global batch (world_size x that) is the
next stretch of an endless stream of sequence indices (per-epoch permutations, reshuffled at every
pass), and rank r takes its r-th contiguous slice, so the global samples of a step do not depend on
how they are spread over ranks: one process with batch_size x world_size sees exactly the same samples
(and with max_img_per_gpu x world_size too, whenever world_size * (max_img_per_gpu mod S) < S for
every S, e.g. when every S divides max_img_per_gpu). Each request's seed hashes (seed, epoch, step,
position in the global batch) with numpy's SeedSequence, so a sample never depends on worker or rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from training.data.base import SampleRequest

# one tag per use of (seed, epoch, ...), so the hashed streams never coincide
_SHAPE, _ORDER, _REQUEST = 1, 2, 3


def _seed_sequence(*entropy: int) -> np.random.SeedSequence:
    """numpy's hash of the non-negative ints `entropy`."""
    return np.random.SeedSequence(list(entropy))


class DynamicBatchSampler(Sampler[list[SampleRequest]]):
    """Yields one list[SampleRequest] per step for this rank; use as a DataLoader `batch_sampler`."""

    def __init__(
        self,
        num_sequences: int,
        img_nums: tuple[int, int] = (2, 24),
        aspects: tuple[float, float] = (0.33, 1.0),
        max_img_per_gpu: int = 48,
        batch_size: int | None = None,
        seed: int = 42,
        rank: int = 0,
        world_size: int = 1,
        batches_per_epoch: int = 800,
    ):
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1, got {num_sequences}; is the dataset empty?")
        if not 1 <= img_nums[0] <= img_nums[1]:
            raise ValueError(f"img_nums must be (low, high) with 1 <= low <= high, got {img_nums}")
        if not 0 < aspects[0] <= aspects[1]:
            raise ValueError(f"aspects must be (low, high) with 0 < low <= high, got {aspects}")
        if max_img_per_gpu < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(f"max_img_per_gpu and batch_size must be >= 1, got {max_img_per_gpu}, {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if seed < 0 or batches_per_epoch < 1:
            raise ValueError(f"seed must be >= 0 and batches_per_epoch >= 1, got {seed}, {batches_per_epoch}")
        super().__init__()
        self.num_sequences = num_sequences
        self.img_nums = img_nums
        self.aspects = aspects
        self.max_img_per_gpu = max_img_per_gpu
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch; `start_step` > 0 resumes mid-epoch, yielding steps start_step.. only."""
        if epoch < 0 or not 0 <= start_step <= self.batches_per_epoch:
            raise ValueError(
                f"need epoch >= 0 and start_step in [0, {self.batches_per_epoch}], got {epoch}, {start_step}"
            )
        self.epoch = epoch
        self.start_step = start_step

    def step_shape(self, step: int) -> tuple[int, float]:
        """(S, aspect ratio) of a step of the current epoch; the same on every rank."""
        rng = np.random.default_rng(_seed_sequence(_SHAPE, self.seed, self.epoch, step))
        num_frames = int(rng.integers(self.img_nums[0], self.img_nums[1], endpoint=True))
        return num_frames, round(float(rng.uniform(*self.aspects)), 2)

    def per_rank_batch(self, num_frames: int) -> int:
        """Sequences per rank in a step of S = num_frames."""
        return self.batch_size or max(1, self.max_img_per_gpu // num_frames)

    def _order(self, cycle: int) -> np.ndarray:
        """The cycle-th permutation of sequence indices of the current epoch."""
        return np.random.default_rng(_seed_sequence(_ORDER, self.seed, self.epoch, cycle)).permutation(
            self.num_sequences
        )

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        shapes = [self.step_shape(step) for step in range(self.batches_per_epoch)]
        # stream position of the first sequence of the first step; skipped steps cost no images
        start = sum(self.world_size * self.per_rank_batch(s) for s, _ in shapes[: self.start_step])
        cycle, order = -1, np.empty(0, dtype=np.int64)
        for step in range(self.start_step, self.batches_per_epoch):
            num_frames, aspect = shapes[step]
            per_rank = self.per_rank_batch(num_frames)
            requests = []
            for slot in range(self.rank * per_rank, (self.rank + 1) * per_rank):  # slot: place in the global batch
                slot_cycle, offset = divmod(start + slot, self.num_sequences)
                if slot_cycle != cycle:  # the stream moved on to the next pass: a fresh permutation
                    cycle, order = slot_cycle, self._order(slot_cycle)
                seed = _seed_sequence(_REQUEST, self.seed, self.epoch, step, slot).generate_state(1, np.uint64)[0]
                requests.append(SampleRequest(int(order[offset]), num_frames, aspect, int(seed)))
            yield requests
            start += self.world_size * per_rank

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_step

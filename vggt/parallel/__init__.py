"""Inference of one scene across processes: frames split by process, global attention through collectives."""

from vggt.parallel.sequence import (
    SequenceShards,
    allowed_world_sizes,
    check_world_size,
    sequence_parallel_forward,
    shard_frames,
)

__all__ = ["SequenceShards", "allowed_world_sizes", "check_world_size", "sequence_parallel_forward", "shard_frames"]

"""Process-group setup for torchrun (DDP) and for a single process, on the runtime's backend."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vggt import runtime


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str | None, timeout_minutes: int = 30) -> DistInfo:
    """Join the process group when launched by torchrun (RANK / WORLD_SIZE set); one process otherwise."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = runtime.resolve_device(device_name)
    if device.type != "cpu" and device.index is None:
        device = torch.device(device.type, local_rank)  # one accelerator per local rank
    runtime.set_current_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=runtime.distributed_backend(device),
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return DistInfo(rank, local_rank, world_size, device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over ranks (identity in a single process); stays on the device."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""Process-group lifetime for torchrun (DDP) and for a single process, on the runtime's backend.

`setup` joins the group and starts the peer watch (training/utils/peer_watch.py); `report_failure` posts this
rank's error so every other rank ends within seconds; `teardown` stops the watch and destroys the group.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.utils.peer_watch import PeerWatch
from vggt import runtime

_watch: PeerWatch | None = None  # this process's peer watch, while it is in a multi-process group


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(
    device_name: str | None, timeout_minutes: int = 30, peer_timeout_s: float = 60.0, deterministic: bool = False
) -> DistInfo:
    """Join the process group when launched by torchrun (RANK / WORLD_SIZE set); one process otherwise.

    Devices come from LOCAL_RANK (one accelerator per process of a node), ranks from RANK (global across
    nodes). `peer_timeout_s`: a peer whose heartbeat stops this long ends the job (see PeerWatch).
    `deterministic`: deterministic collectives (their environment is set before the group initialises).
    """
    global _watch
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = runtime.resolve_device(device_name, local_rank)  # one accelerator per local rank unless named
    runtime.set_current_device(device)
    runtime.configure_environment(device, deterministic)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=runtime.distributed_backend(device),
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    if world_size > 1 and _watch is None and "MASTER_ADDR" in os.environ:
        _watch = PeerWatch(rank, world_size, peer_timeout_s)
        _watch.start()
    return DistInfo(rank, local_rank, world_size, device)


def report_failure(error: BaseException) -> None:
    """Tell every other rank that this one failed (they end within seconds); no-op in a single process."""
    if _watch is not None:
        _watch.report(error)


def teardown() -> None:
    """Stop the peer watch and destroy the process group (safe to call when neither exists)."""
    global _watch
    if _watch is not None:
        _watch.stop()
        _watch = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over ranks (identity in a single process); stays on the device."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def broadcast_from_main(values: list[int], device: torch.device) -> list[int]:
    """Rank 0's integers on every rank (themselves in a single process)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""Multi-process `vggt predict`: start or join the process group, rank 0 drives, the other ranks compute.

`vggt predict --nproc N` spawns N processes on this machine; under `torchrun` (WORLD_SIZE set) the
processes already exist. Every rank loads the model; rank 0 reads the images, sends each rank its block
of frames, receives their outputs and writes every output. The other ranks join each sequence-parallel
forward with their frames, hold nothing of the whole scene, and write nothing. A failing rank ends the job:
torch.multiprocessing.spawn and torchrun both stop the remaining processes. A stop signal to the parent
(KeyboardInterrupt, see vggt.interrupts) is passed on to the spawned ranks as SIGTERM, so rank 0 rolls back what
it was writing before the parent ends.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vggt.models.vggt import VGGT
from vggt.parallel.sequence import collective_device, sequence_parallel_forward, shard_frames
from vggt.runtime import autocast, distributed_backend, resolve_device, set_current_device

READABLE_ERRORS = (ValueError, OSError)  # what `vggt` reports as a message, not a traceback (vggt.cli.main)
TIMEOUT = datetime.timedelta(minutes=30)  # a slow rank (model download, long scene) is not a dead one
WRITER_STOP_SECONDS = 60.0  # how long a stopped rank 0 may take to roll back its staging directory
HELPER_STOP_SECONDS = 5.0  # then the helper ranks, which write nothing, are killed if still running


def under_torchrun() -> bool:
    """True when torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device_name: str, local_rank: int) -> torch.device:
    """The device of one rank: the accelerator with the rank's local index, or the CPU."""
    device = resolve_device(device_name)
    return device if device.type == "cpu" else resolve_device(f"{device.type}:{local_rank}")


def init_group(device: torch.device, rank: int | None = None, world_size: int | None = None, init: str = "env://"):
    """init_process_group with the runtime's backend for `device` (gloo on the CPU, nccl, hccl)."""
    set_current_device(device)
    kwargs = {} if rank is None else {"rank": rank, "world_size": world_size}
    dist.init_process_group(distributed_backend(device), init_method=init, timeout=TIMEOUT, **kwargs)


def process_device(device_name: str) -> torch.device:
    """The device this process computes on: in a process group the rank's own, which launch made current (as in
    rank_device, only the kind of `device_name` counts: "cuda:0" on local rank 1 is cuda:1), else `device_name`."""
    return collective_device() if dist.is_available() and dist.is_initialized() else resolve_device(device_name)


def process_count() -> int:
    """Processes sharing each forward: the group's world size, 1 without a process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_helper_rank() -> bool:
    """A rank that computes its share of each forward but writes nothing (every rank but 0)."""
    return dist.is_available() and dist.is_initialized() and dist.get_rank() > 0


def _scatter_scene(images: torch.Tensor | None, query_points: torch.Tensor | None):
    """Rank 0's images [S, 3, H, W] (in host memory) and query points [N, 2] (or None) -> this rank's block of
    frames (shard_frames) on the collective device and the query points, on every rank; rank 0 sends each helper
    its block only, so no helper holds the whole scene."""
    device, rank, world = collective_device(), dist.get_rank(), dist.get_world_size()
    header = torch.zeros(4, dtype=torch.int64, device=device)
    if images is not None:
        header[:3] = torch.tensor(images.shape[-4:][:1] + images.shape[-2:])
        header[3] = 0 if query_points is None else query_points.shape[0]
    dist.broadcast(header, src=0)
    frames, height, width, queries = (int(v) for v in header.tolist())
    blocks = shard_frames(frames, world)
    if rank == 0:
        for helper, (start, end) in enumerate(blocks[1:], start=1):
            dist.send(images[start:end].contiguous().to(device), helper)
        local = images[blocks[0][0] : blocks[0][1]].to(device)
    else:
        start, end = blocks[rank]
        local = torch.empty(end - start, 3, height, width, device=device)
        dist.recv(local, 0)
    points = None
    if queries:
        points = torch.empty(queries, 2, device=device) if query_points is None else query_points.float().to(device)
        dist.broadcast(points, src=0)
    return local, points


def parallel_forward(
    model: VGGT, images: torch.Tensor | None, query_points: torch.Tensor | None, frames_chunk_size: int
) -> dict[str, Any]:
    """One sequence-parallel forward; rank 0 passes images [S, 3, H, W] (in host memory), the others None.

    Returns the model's eval outputs (with "images", in host memory) on rank 0; a helper rank gets pose_enc only.
    """
    device = next(model.parameters()).device
    local, points = _scatter_scene(images, query_points)
    local = local.to(device)
    points = None if points is None else points.to(device)
    output = sequence_parallel_forward(model, local, points, frames_chunk_size, output_rank=0)
    if images is not None:
        output["images"] = images[None]
    return output


def scene_forward() -> Callable[..., dict[str, Any]] | None:
    """parallel_forward inside a multi-process group, None (the plain model call) in a single process."""
    return parallel_forward if process_count() > 1 else None


def serve_forward(model: VGGT, device: torch.device, dtype: torch.dtype, frames_chunk_size: int) -> None:
    """A helper rank's part of `vggt predict`: join rank 0's forward with its own frames."""
    with autocast(device, dtype):
        parallel_forward(model.to(device), None, None, frames_chunk_size)


def _error_file(init_file: str, rank: int) -> Path:
    """Where a spawned rank leaves the message of its bad-input error for the parent."""
    return Path(f"{init_file}.error{rank}")


def _spawned(rank: int, world_size: int, init_file: str, device_name: str, run: Callable[[], Any]) -> None:
    init_group(rank_device(device_name, rank), rank, world_size, f"file://{init_file}")
    try:
        run()
    except READABLE_ERRORS as err:  # the parent only sees a traceback string; a file keeps multi-line messages whole
        _error_file(init_file, rank).write_text(str(err))
        raise
    finally:
        dist.destroy_process_group()


def _stop_ranks(processes: list[mp.Process]) -> None:
    """SIGTERM every rank, wait for rank 0 (the writer) to roll back and end, then kill what still runs."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    processes[0].join(WRITER_STOP_SECONDS)
    deadline = time.monotonic() + HELPER_STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def launch(nproc: int, device_name: str, run: Callable[[], Any]) -> None:
    """Run `run()` on `nproc` ranks: spawned here, or this process's rank under torchrun."""
    if under_torchrun():
        init_group(rank_device(device_name, int(os.environ.get("LOCAL_RANK", "0"))))
        try:
            run()
        finally:
            dist.destroy_process_group()
        return
    with tempfile.TemporaryDirectory(prefix="vggt-predict-") as tmp:
        init_file = str(Path(tmp) / "rendezvous")
        ranks = mp.spawn(_spawned, args=(nproc, init_file, device_name, run), nprocs=nproc, join=False)
        try:
            while not ranks.join():
                pass
        except KeyboardInterrupt:  # a stop signal: the ranks must end (and rank 0 roll back) before this process
            _stop_ranks(ranks.processes)
            raise
        except (mp.ProcessRaisedException, mp.ProcessExitedException):  # the others are stopped: a bad-input error?
            # a peer's lost connection may be reported first (an exception, or gloo aborting it): look at every
            # rank's error file, not just the first rank to fail; each is written before its group is destroyed
            for rank in range(nproc):
                message = _error_file(init_file, rank)
                if message.is_file():
                    raise ValueError(f"process {rank} of {nproc}: {message.read_text()}") from None
            raise

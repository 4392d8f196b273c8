"""Exact sequence-parallel inference: N processes each hold a contiguous block of a scene's frames.

Frame blocks, the patch embed, the DPT heads and every token-wise part of the global blocks run on
the local frames only. Global attention uses the all-to-all over heads (DeepSpeed-Ulysses): each
process projects queries, keys and values of its own tokens, exchanges them so that it holds every
token of H/N heads, attends with the ordinary attention kernel and sends the results back. It is
exact with any kernel (no partial softmax statistics to merge, which a ring exchange of keys and
values needs and which the fused attention kernels of torch, CUDA and the NPU do not all return),
and it moves 4 tensors of the local tokens per block instead of N - 1 rounds of keys and values.
Its limit is that N must divide the head count.

The exchange is built from point-to-point sends and receives (`batch_isend_irecv`), which gloo,
nccl and hccl all have from torch 2.1, with uneven token counts when S is not a multiple of N.
The camera head reads the gathered camera tokens of all frames; the track head gathers the
tracker's feature maps of all frames. Every process returns the full predictions, or with `output_rank` only
that rank does, receiving the other ranks' outputs into its host memory one rank at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from vggt.layers import Block, RopeTables, grid_positions
from vggt.layers.token_chunks import check_frames_chunk_size, finish_global_block_in_place, project_global
from vggt.models.aggregator import DEFAULT_FRAMES_CHUNK_SIZE, GlobalBlockRunner
from vggt.models.vggt import VGGT
from vggt.runtime import backend_device, kernels


def allowed_world_sizes(num_heads: int) -> list[int]:
    """Process counts the all-to-all over heads supports: the divisors of the head count."""
    return [n for n in range(1, num_heads + 1) if num_heads % n == 0]


def check_world_size(num_heads: int, world_size: int, frames: int | None = None) -> None:
    """Raise a ValueError naming the process counts that work unless `world_size` divides the heads and the frames."""
    if num_heads % world_size:
        raise ValueError(
            f"sequence parallelism splits the {num_heads} attention heads over the processes, so the process count "
            f"must divide {num_heads}; got {world_size}, use one of {allowed_world_sizes(num_heads)}"
        )
    if frames is not None and frames < world_size:
        raise ValueError(f"{frames} frames cannot give each of {world_size} processes a frame; use at most {frames}")


def shard_frames(frames: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) frame ranges per rank; the first `frames % world_size` ranks take one extra frame."""
    base, extra = divmod(frames, world_size)
    bounds = [0]
    for rank in range(world_size):
        bounds.append(bounds[-1] + base + (rank < extra))
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class SequenceShards:
    """Where each process's frames sit in the scene, and the process group the collectives run in."""

    frames: list[int]  # frame count of every rank
    rank: int
    group: dist.ProcessGroup | None = None

    @classmethod
    def gather(cls, local_frames: int, group: dist.ProcessGroup | None = None) -> SequenceShards:
        """Every rank's local frame count, learned by one all-gather (ranks hold contiguous frames in rank order)."""
        world = dist.get_world_size(group)
        device = collective_device(group)
        counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([local_frames], dtype=torch.int64, device=device), group=group)
        return cls([int(c.item()) for c in counts], dist.get_rank(group), group)

    @property
    def world_size(self) -> int:
        return len(self.frames)

    @property
    def start(self) -> int:
        """Index of this rank's first frame in the scene."""
        return sum(self.frames[: self.rank])


def collective_device(group: dist.ProcessGroup | None = None) -> torch.device:
    """Where the tensors of this group's collectives live (host for gloo, the rank's accelerator otherwise)."""
    return backend_device(dist.get_backend(group))


# collectives ---------------------------------------------------------------------------------------
def exchange(send: list[torch.Tensor], recv: list[torch.Tensor], shards: SequenceShards) -> None:
    """All-to-all: send[j] goes to rank j, recv[i] is filled from rank i (send[rank] is copied locally)."""
    rank, world = shards.rank, shards.world_size
    recv[rank].copy_(send[rank])
    ops = []
    for offset in range(1, world):
        to, frm = (rank + offset) % world, (rank - offset) % world
        ops.append(dist.P2POp(dist.isend, send[to].contiguous(), _global_rank(to, shards), shards.group))
        ops.append(dist.P2POp(dist.irecv, recv[frm], _global_rank(frm, shards), shards.group))
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()


def _global_rank(group_rank: int, shards: SequenceShards) -> int:
    """Point-to-point ops take ranks of the default group."""
    return group_rank if shards.group is None else dist.get_global_rank(shards.group, group_rank)


def gather_frames(local: torch.Tensor, shards: SequenceShards, dim: int = 1) -> torch.Tensor:
    """Concatenate every rank's `local` along the frame dimension `dim` (padded all-gather: ranks may differ by one)."""
    most = max(shards.frames)
    shape = list(local.shape)
    shape[dim] = most
    padded = local.new_zeros(shape)
    padded.narrow(dim, 0, local.shape[dim]).copy_(local)
    # gloo gathers bf16 only from torch 2.8: its bits travel as float16, which every backend gathers (a pure copy)
    wire = padded.view(torch.float16) if padded.dtype == torch.bfloat16 else padded
    pieces = [torch.empty_like(wire) for _ in range(shards.world_size)]
    dist.all_gather(pieces, wire, group=shards.group)
    pieces = [piece.view(local.dtype) for piece in pieces]
    return torch.cat([piece.narrow(dim, 0, n) for piece, n in zip(pieces, shards.frames)], dim=dim)


def gather_frames_to_host(local: torch.Tensor, shards: SequenceShards, output_rank: int) -> torch.Tensor | None:
    """Every rank's `local` [B, S_r, ...] concatenated along the frames in host memory on `output_rank` (None on
    the other ranks). The pieces arrive one rank at a time through a buffer the size of one rank's piece, so no
    device holds the whole scene's tensor."""
    wire = collective_device(shards.group)  # `local` may be in host memory (host offload)
    if shards.rank != output_rank:
        dist.send(local.to(wire).contiguous(), _global_rank(output_rank, shards), group=shards.group)
        return None
    pieces = []
    for rank, frames in enumerate(shards.frames):
        if rank == output_rank:
            pieces.append(local.cpu())
            continue
        shape = list(local.shape)
        shape[1] = frames
        piece = torch.empty(shape, dtype=local.dtype, device=wire)
        dist.recv(piece, _global_rank(rank, shards), group=shards.group)
        pieces.append(piece.cpu())
    return torch.cat(pieces, dim=1)


# global attention across processes --------------------------------------------------------------------
def global_block_across_processes(shards: SequenceShards) -> GlobalBlockRunner:
    """A `global_block_in_place` for Aggregator.run_blocks_chunked whose attention spans every rank's frames."""

    def run(
        block: Block, x: torch.Tensor, frame_rope: RopeTables, tokens_per_frame: int, frames_per_chunk: int
    ) -> None:
        B = x.shape[0]
        heads, head_dim = block.attn.num_heads, block.attn.head_dim
        mine = heads // shards.world_size
        q, k, v = project_global(block, x, frame_rope, tokens_per_frame, frames_per_chunk, with_queries=True)
        qkv = torch.stack((q, k, v))  # [3, B, H, n_local, D]
        del q, k, v
        tokens = [n * tokens_per_frame for n in shards.frames]
        send = [qkv[:, :, j * mine : (j + 1) * mine] for j in range(shards.world_size)]
        recv = [qkv.new_empty(3, B, mine, n, head_dim) for n in tokens]
        exchange(send, recv, shards)
        del qkv, send
        q_all, k_all, v_all = torch.cat(recv, dim=3).unbind(0)  # this rank's heads over every token
        del recv
        attended = kernels.attention(q_all, k_all, v_all)  # [B, H / N, S * P, D]
        del q_all, k_all, v_all
        send = list(attended.split(tokens, dim=2))
        recv = [attended.new_empty(B, mine, x.shape[1], head_dim) for _ in range(shards.world_size)]
        exchange(send, recv, shards)
        del attended, send
        local = torch.cat(recv, dim=1)  # [B, H, n_local * P, D], heads in rank order = head order
        finish_global_block_in_place(
            block, x, tokens_per_frame, frames_per_chunk, lambda span, _frames: local[:, :, span]
        )

    return run


# the model -------------------------------------------------------------------------------------------
@torch.no_grad()
def sequence_parallel_forward(
    model: VGGT,
    local_images: torch.Tensor,
    query_points: torch.Tensor | None = None,
    frames_chunk_size: int | None = DEFAULT_FRAMES_CHUNK_SIZE,
    group: dist.ProcessGroup | None = None,
    output_rank: int | None = None,
) -> dict[str, Any]:
    """The model's eval forward over a scene whose frames are split across the ranks of `group`.

    local_images: [S_r, 3, H, W] or [B, S_r, 3, H, W], this rank's contiguous block of frames (rank 0 holds
    frame 0; see shard_frames); query_points: [N, 2] or [B, N, 2] pixels of frame 0, the same on every rank.
    Returns on every rank what `model(all_images, query_points)` returns in eval mode (without "images"). With
    `output_rank` (a rank of `group`), the dense outputs and tracks go to that rank only, in host memory
    (gather_frames_to_host), and only it runs the tracker: the other ranks return pose_enc alone and never hold
    the whole scene's outputs.
    """
    check_frames_chunk_size(frames_chunk_size)
    if not dist.is_initialized():
        raise RuntimeError("sequence_parallel_forward needs torch.distributed initialised (init_process_group)")
    images, query_points = model.check_inputs(local_images, query_points)
    check_world_size(model.config.num_heads, dist.get_world_size(group))
    shards = SequenceShards.gather(images.shape[1], group)
    if min(shards.frames) < 1:
        raise ValueError(f"every process needs at least one frame; frames per rank are {shards.frames}")
    aggregator = model.aggregator
    B, S_local, _, H, W = images.shape
    chunk = frames_chunk_size or S_local
    h, w = H // aggregator.patch_size, W // aggregator.patch_size
    frame_rope = aggregator.rope.tables(
        grid_positions(h, w, aggregator.patch_start_idx, images.device), aggregator.head_dim
    )
    frame_index = shards.start + torch.arange(S_local, device=images.device).repeat(B)
    tokens = aggregator.embed_in_chunks(images, frame_index == 0, chunk)
    keep = set(aggregator.keep_layers)
    tokens_list = aggregator.run_blocks_chunked(tokens, keep, frame_rope, chunk, global_block_across_processes(shards))
    del tokens
    patch_start_idx = aggregator.patch_start_idx

    def collect(local: torch.Tensor) -> torch.Tensor | None:
        """A per-frame output of every rank: on every rank, or on output_rank only (in host memory)."""
        if output_rank is None:
            return gather_frames(local.to(images.device), shards)
        return gather_frames_to_host(local, shards, output_rank)

    predictions: dict[str, Any] = {}
    with model.heads_precision(images.device):  # as VGGT.forward
        if model.camera_head is not None:
            camera_tokens = tokens_list[-1][:, :, :1].to(images.device)  # [B, S_r, 1, 2C]: kept on host with offload
            camera_tokens = gather_frames(camera_tokens.contiguous(), shards)  # [B, S, 1, 2C]
            pose_enc_list = model.camera_head([camera_tokens])
            predictions["pose_enc"], predictions["pose_enc_list"] = pose_enc_list[-1], pose_enc_list
        for head, names in (
            (model.depth_head, ("depth", "depth_conf")),
            (model.point_head, ("world_points", "world_points_conf")),
        ):
            if head is not None:
                for name, value in zip(names, head(tokens_list, images, patch_start_idx, frames_chunk_size)):
                    gathered = collect(value)
                    if gathered is not None:
                        predictions[name] = gathered
    if query_points is not None:
        track_head = model.track_head
        fmaps = collect(track_head.feature_extractor(tokens_list, images, patch_start_idx, frames_chunk_size))
        del tokens_list
        if fmaps is not None:
            track_list, vis, conf = track_head.tracker(query_points, fmaps.to(images.device), track_head.iters)
            predictions["track"], predictions["vis"], predictions["conf"] = track_list[-1], vis, conf
    return predictions

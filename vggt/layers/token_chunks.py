"""Inference of the aggregator's blocks in frame chunks, in place: memory that does not grow with token-wise work.

Under torch.no_grad() nothing is kept for backward, so every part of a block that needs no
cross-token context (norms, the qkv and output projections, the MLP, whole frame blocks) can run
on a few frames at a time and write its result back into the residual stream. What still grows
with the frame count is only what global attention must see at once: its keys and values.
Results equal the unchunked block up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vggt.layers.block import Block
from vggt.layers.rope import RopeTables
from vggt.runtime import kernels


def frame_spans(frames: int, frames_per_chunk: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of at most `frames_per_chunk` frames covering 0..frames."""
    return [(s, min(s + frames_per_chunk, frames)) for s in range(0, frames, frames_per_chunk)]


def run_frame_block_in_place(block: Block, x: torch.Tensor, rope: RopeTables, frames_per_chunk: int) -> None:
    """x: [F, P, C] (one sequence per frame) <- block(x), `frames_per_chunk` frames at a time."""
    for start, end in frame_spans(x.shape[0], frames_per_chunk):
        x[start:end] = block(x[start:end], rope)


def chunk_rope(frame_rope: RopeTables, frames: int, cache: dict[int, RopeTables]) -> RopeTables:
    """Tables for `frames` consecutive frames of a global sequence (at most two distinct chunk lengths occur)."""
    if frames not in cache:
        cache[frames] = frame_rope.repeat(frames)
    return cache[frames]


def global_keys_values(
    block: Block, x: torch.Tensor, frame_rope: RopeTables, tokens_per_frame: int, frames_per_chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [B, S * P, C] -> rotated keys and values of the whole sequence, each [B, H, S * P, D], chunk by chunk."""
    B, N, _ = x.shape
    attn = block.attn
    keys = values = None
    ropes: dict[int, RopeTables] = {}
    for start, end in frame_spans(N // tokens_per_frame, frames_per_chunk):
        tokens = slice(start * tokens_per_frame, end * tokens_per_frame)
        k, v = attn.keys_values(block.norm1(x[:, tokens]), chunk_rope(frame_rope, end - start, ropes))
        if keys is None:
            keys = k.new_empty(B, attn.num_heads, N, attn.head_dim)
            values = v.new_empty(B, attn.num_heads, N, attn.head_dim)
        keys[:, :, tokens] = k
        values[:, :, tokens] = v
    return keys, values


def finish_global_block_in_place(
    block: Block,
    x: torch.Tensor,
    frame_rope: RopeTables,
    tokens_per_frame: int,
    frames_per_chunk: int,
    attend: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """x: [B, S * P, C] <- block(x), given `attend(queries [B, H, n, D]) -> [B, H, n, D]` over the whole sequence.

    Every chunk's keys and values already exist, so overwriting a chunk's residual loses nothing later chunks need.
    """
    ropes: dict[int, RopeTables] = {}
    for start, end in frame_spans(x.shape[1] // tokens_per_frame, frames_per_chunk):
        tokens = slice(start * tokens_per_frame, end * tokens_per_frame)
        residual = x[:, tokens]
        q = block.attn.queries(block.norm1(residual), chunk_rope(frame_rope, end - start, ropes))
        h = residual + block.ls1(block.attn.output(attend(q)))
        x[:, tokens] = h + block.ls2(block.mlp(block.norm2(h)))


def run_global_block_in_place(
    block: Block, x: torch.Tensor, frame_rope: RopeTables, tokens_per_frame: int, frames_per_chunk: int
) -> None:
    """x: [B, S * P, C] <- block(x) with global attention, `frames_per_chunk` frames of token-wise work at a time."""
    keys, values = global_keys_values(block, x, frame_rope, tokens_per_frame, frames_per_chunk)
    finish_global_block_in_place(
        block, x, frame_rope, tokens_per_frame, frames_per_chunk, lambda q: kernels.attention(q, keys, values)
    )

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


def check_frames_chunk_size(frames_chunk_size: int | None) -> None:
    """Raise unless `frames_chunk_size` is None or 0 (all frames at once) or a positive frame count."""
    if frames_chunk_size is not None and frames_chunk_size < 0:
        raise ValueError(
            f"frames_chunk_size must be a positive number of frames per chunk, or None / 0 for all frames at once, "
            f"got {frames_chunk_size}"
        )


def frame_spans(frames: int, frames_per_chunk: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of at most `frames_per_chunk` frames covering 0..frames."""
    return [(s, min(s + frames_per_chunk, frames)) for s in range(0, frames, frames_per_chunk)]


def run_frame_block_in_place(block: Block, x: torch.Tensor, rope: RopeTables, frames_per_chunk: int) -> None:
    """x: [F, P, C] (one sequence per frame) <- block(x), `frames_per_chunk` frames at a time."""
    for start, end in frame_spans(x.shape[0], frames_per_chunk):
        block(x[start:end], rope, out=x[start:end])


def chunk_rope(frame_rope: RopeTables, frames: int, cache: dict[int, RopeTables]) -> RopeTables:
    """Tables for `frames` consecutive frames of a global sequence (at most two distinct chunk lengths occur)."""
    if frames not in cache:
        cache[frames] = frame_rope.repeat(frames)
    return cache[frames]


def project_global(
    block: Block,
    x: torch.Tensor,
    frame_rope: RopeTables,
    tokens_per_frame: int,
    frames_per_chunk: int,
    with_queries: bool = False,
) -> list[torch.Tensor]:
    """x: [B, S * P, C] -> [keys, values] (or [queries, keys, values]), each [B, H, S * P, D], chunk by chunk."""
    B, N, _ = x.shape
    attn = block.attn
    projected: list[torch.Tensor] = []
    ropes: dict[int, RopeTables] = {}
    for start, end in frame_spans(N // tokens_per_frame, frames_per_chunk):
        tokens = slice(start * tokens_per_frame, end * tokens_per_frame)
        normed = block.norm1(x[:, tokens])
        rope = chunk_rope(frame_rope, end - start, ropes)
        parts = attn.keys_values(normed, rope)
        if with_queries:
            parts = (attn.queries(normed, rope), *parts)
        if not projected:
            projected = [p.new_empty(B, attn.num_heads, N, attn.head_dim) for p in parts]
        for buffer, part in zip(projected, parts):
            buffer[:, :, tokens] = part
    return projected


def finish_global_block_in_place(
    block: Block,
    x: torch.Tensor,
    tokens_per_frame: int,
    frames_per_chunk: int,
    attended: Callable[[slice, int], torch.Tensor],
) -> None:
    """x: [B, S * P, C] <- block(x), given `attended(tokens, frames)`: the attention result [B, H, n, D] of a chunk.

    `attended` is called for a chunk before its residual is overwritten; global keys and values must already exist.
    """
    for start, end in frame_spans(x.shape[1] // tokens_per_frame, frames_per_chunk):
        tokens = slice(start * tokens_per_frame, end * tokens_per_frame)
        h = x[:, tokens] + block.ls1(block.attn.output(attended(tokens, end - start)))
        torch.add(h, block.ls2(block.mlp(block.norm2(h))), out=x[:, tokens])


def run_global_block_in_place(
    block: Block, x: torch.Tensor, frame_rope: RopeTables, tokens_per_frame: int, frames_per_chunk: int
) -> None:
    """x: [B, S * P, C] <- block(x) with global attention, `frames_per_chunk` frames of token-wise work at a time."""
    frames = x.shape[1] // tokens_per_frame
    if frames <= frames_per_chunk:  # one chunk: the plain block (fused qkv projection, one norm1)
        block(x, frame_rope.repeat(frames), out=x)
        return
    keys, values = project_global(block, x, frame_rope, tokens_per_frame, frames_per_chunk)
    ropes: dict[int, RopeTables] = {}

    def attended(tokens: slice, frames: int) -> torch.Tensor:
        q = block.attn.queries(block.norm1(x[:, tokens]), chunk_rope(frame_rope, frames, ropes))
        return kernels.attention(q, keys, values)

    finish_global_block_in_place(block, x, tokens_per_frame, frames_per_chunk, attended)

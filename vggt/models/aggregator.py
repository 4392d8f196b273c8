"""The aggregator: patch embed, camera/register tokens, alternating frame and global attention.

Output entry i is [frame_out_i ‖ global_out_i] of shape [B, S, P, 2C] (raw residual stream, no
final norm), where P = 1 + num_register_tokens + patches. Only the layers some head reads are
kept alive; the other entries are None so that the list stays indexable by layer.

Without autograd the token-wise work runs `frames_chunk_size` frames at a time, in place (see
vggt.layers.token_chunks). It is the same knob as the heads' `frames_chunk_size`, not a second one:
both bound a transient that is linear in the frames of one chunk, the heads' (full-resolution DPT
maps, about 0.3 GB a frame at 518 px) is several times the aggregator's, so the heads set the
chunk a memory budget allows and a separate aggregator chunk would buy nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from vggt.config import VGGTConfig
from vggt.layers import (
    Block,
    DinoVisionTransformer,
    PatchEmbed,
    RopeTables,
    RotaryPositionEmbedding2D,
    grid_positions,
)
from vggt.layers.checkpoint import run_block
from vggt.layers.token_chunks import (
    check_frames_chunk_size,
    frame_spans,
    run_frame_block_in_place,
    run_global_block_in_place,
)
from vggt.runtime.host_copy import HostCopier

RESNET_MEAN = (0.485, 0.456, 0.406)
RESNET_STD = (0.229, 0.224, 0.225)


DEFAULT_FRAMES_CHUNK_SIZE = 8
GlobalBlockRunner = Callable[[Block, torch.Tensor, RopeTables, int, int], None]


def first_frame_of_sequence(batch: int, frames: int, device: torch.device) -> torch.Tensor:
    """[B * S] bool, True for frame 0 of each sequence (it takes the reference slot of the learned tokens)."""
    return (torch.arange(batch * frames, device=device) % frames) == 0


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of [..., 3, H, W]; constants are built on the images' device (no host copy)."""
    mean = torch.stack([images.new_full((), m) for m in RESNET_MEAN]).view(3, 1, 1)
    std = torch.stack([images.new_full((), s) for s in RESNET_STD]).view(3, 1, 1)
    return (images - mean) / std


def copy_in_chunks(
    kept: torch.Tensor, tokens: torch.Tensor, frames_per_chunk: int, to_host: HostCopier | None = None
) -> None:
    """kept[:, frames] = tokens[:, frames] ([B, S, P, C]), a chunk of frames at a time and cast where `tokens` are:
    into host memory (offload, through `to_host`) only the chunk's bytes in the kept dtype cross, never a
    whole-scene temporary. With `to_host` the copies finish at its `flush()`."""
    for start, end in frame_spans(tokens.shape[1], frames_per_chunk):
        if to_host is None:
            kept[:, start:end].copy_(tokens[:, start:end].to(kept.dtype))
        else:  # a chunk of its own: the next block overwrites `tokens` while the copy may still be under way
            to_host.to_host(tokens[:, start:end].to(kept.dtype, copy=to_host.staging), kept[:, start:end])


class Aggregator(nn.Module):
    def __init__(self, config: VGGTConfig):
        super().__init__()
        c = config
        self.patch_size = c.patch_size
        self.depth = c.depth
        self.patch_start_idx = c.patch_start_idx
        self.head_dim = c.embed_dim // c.num_heads
        self.keep_layers = c.layers_read_by_heads()
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, c.embed_dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, c.num_register_tokens, c.embed_dim) * 1e-6)
        if c.patch_embed == "conv":
            self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        else:
            self.patch_embed = DinoVisionTransformer(c.img_size, c.patch_size, c.embed_dim)
        self.rope = RotaryPositionEmbedding2D(c.rope_freq)

        def block() -> Block:
            return Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.init_values, qk_norm=c.qk_norm)

        self.frame_blocks = nn.ModuleList(block() for _ in range(c.depth))
        self.global_blocks = nn.ModuleList(block() for _ in range(c.depth))
        self.activation_checkpointing = False
        self.kept_dtype: torch.dtype | None = None  # chunked inference holds the kept layers in it (None: as computed)
        self.kept_on_host = False  # chunked inference holds the kept layers in host memory (VGGT.set_host_offload)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute every block (and the DINOv2 blocks) in backward while training."""
        self.activation_checkpointing = enabled
        if isinstance(self.patch_embed, DinoVisionTransformer):
            self.patch_embed.activation_checkpointing = enabled

    def forward(
        self,
        images: torch.Tensor,
        keep_layers: Iterable[int] | None = None,
        frames_chunk_size: int | None = DEFAULT_FRAMES_CHUNK_SIZE,
        second_half_reversed: bool = False,
    ) -> tuple[list[torch.Tensor | None], int]:
        """images: [B, S, 3, H, W] in [0, 1] -> (depth entries of [B, S, P, 2C] or None, patch_start_idx).

        keep_layers: layer indices to return (default: the layers the heads read).
        frames_chunk_size: without autograd, the token-wise work (patch embed, frame blocks, the global
        blocks' projections and MLPs) runs on this many frames at a time, in place; None runs every frame at once.
        second_half_reversed: the caller's promise that images[B // 2:] are images[:B // 2] with their frames in
        reverse order (training's repeat_batch); the patch embed then runs on the first half only (embed_batch).
        """
        check_frames_chunk_size(frames_chunk_size)
        B, S, C_in, H, W = images.shape
        if C_in != 3:
            raise ValueError(f"images must have 3 channels (RGB) in dim 2, got shape {tuple(images.shape)}")
        keep = set(self.keep_layers if keep_layers is None else keep_layers)
        h, w = H // self.patch_size, W // self.patch_size
        frame_rope = self.rope.tables(grid_positions(h, w, self.patch_start_idx, images.device), self.head_dim)
        if frames_chunk_size and not torch.is_grad_enabled():
            tokens = self.embed_batch(images, frames_chunk_size, second_half_reversed)
            return self.run_blocks_chunked(tokens, keep, frame_rope, frames_chunk_size), self.patch_start_idx

        tokens = self.embed_batch(images, B * S, second_half_reversed).flatten(0, 1)
        P, C = tokens.shape[1], tokens.shape[2]
        global_rope = frame_rope.repeat(S)
        checkpointed = self.activation_checkpointing and self.training

        outputs: list[torch.Tensor | None] = [None] * self.depth
        for i, (frame_block, global_block) in enumerate(zip(self.frame_blocks, self.global_blocks)):
            tokens = run_block(frame_block, tokens.reshape(B * S, P, C), frame_rope, checkpointed=checkpointed)
            frame_out = tokens.view(B, S, P, C)
            tokens = run_block(global_block, tokens.reshape(B, S * P, C), global_rope, checkpointed=checkpointed)
            if i in keep:
                outputs[i] = torch.cat((frame_out, tokens.view(B, S, P, C)), dim=-1)
        return outputs, self.patch_start_idx

    def embed(self, frames: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
        """frames: [F, 3, H, W] in [0, 1], is_first: [F] bool (frame 0 of its sequence) -> tokens [F, P, C]."""
        return self.with_learned_tokens(self.patch_embed(normalize_images(frames)), is_first)

    def with_learned_tokens(self, patches: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
        """patches: [F, N, C], is_first: [F] bool -> tokens [F, P, C].

        Token order per frame: camera token, register tokens, patch tokens; frame 0 of a sequence takes the
        learned slot 0 of the camera and register tokens, every other frame slot 1.
        """
        slot = (~is_first).long()
        camera, registers = self.camera_token[0, slot], self.register_token[0, slot]
        return torch.cat((camera, registers, patches), dim=1)  # promotes to float32 under autocast

    def embed_in_chunks(self, images: torch.Tensor, is_first: torch.Tensor, frames_per_chunk: int) -> torch.Tensor:
        """images: [B, S, 3, H, W], is_first: [B * S] bool -> tokens [B, S, P, C], a chunk of frames at a time."""
        B, S = images.shape[:2]
        frames = images.flatten(0, 1)
        chunks = [
            self.embed(frames[start:end], is_first[start:end]) for start, end in frame_spans(B * S, frames_per_chunk)
        ]
        tokens = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return tokens.view(B, S, *tokens.shape[1:])

    def embed_batch(self, images: torch.Tensor, frames_per_chunk: int, second_half_reversed: bool) -> torch.Tensor:
        """images: [B, S, 3, H, W] -> tokens [B, S, P, C] (see forward's second_half_reversed).

        The patch embed sees one frame at a time, so a reversed copy's patch tokens are the original's in reverse
        frame order: only its learned tokens differ (its new frame 0 takes slot 0). That saves the DINOv2 forward of
        half the batch, a third of the aggregator's FLOPs there.
        """
        B, S = images.shape[:2]
        is_first = first_frame_of_sequence(B, S, images.device)
        if not second_half_reversed:
            return self.embed_in_chunks(images, is_first, frames_per_chunk)
        if B % 2:
            raise ValueError(f"second_half_reversed needs an even batch (sequences, then their reversals), got B={B}")
        half = B // 2
        original = self.embed_in_chunks(images[:half], is_first[: half * S], frames_per_chunk)
        patches = original[:, :, self.patch_start_idx :].flip(1).flatten(0, 1)
        reversed_copy = self.with_learned_tokens(patches, is_first[half * S :]).view_as(original)
        return torch.cat((original, reversed_copy))

    def run_blocks_chunked(
        self,
        tokens: torch.Tensor,
        keep: set[int],
        frame_rope: RopeTables,
        frames_per_chunk: int,
        global_block_in_place: GlobalBlockRunner = run_global_block_in_place,
    ) -> list[torch.Tensor | None]:
        """tokens: [B, S, P, C] embedded frames (overwritten) -> the kept layers' [B, S, P, 2C] entries, in
        `kept_dtype` where set (inference under autocast: half the memory of the heads' inputs), in host memory with
        `kept_on_host` (the heads bring back a chunk of frames at a time).

        `global_block_in_place(block, x [B, S * P, C], frame_rope, P, frames_per_chunk)` runs one global block;
        sequence parallelism swaps in one whose attention spans the frames of every process.
        """
        B, S, P, C = tokens.shape
        per_frame = tokens.view(B * S, P, C)
        sequence = tokens.view(B, S * P, C)
        outputs: list[torch.Tensor | None] = [None] * self.depth
        to_host = HostCopier(tokens.device) if self.kept_on_host else None
        for i, (frame_block, global_block) in enumerate(zip(self.frame_blocks, self.global_blocks)):
            run_frame_block_in_place(frame_block, per_frame, frame_rope, frames_per_chunk)
            if i in keep:
                where = torch.device("cpu") if self.kept_on_host else tokens.device
                outputs[i] = torch.empty(B, S, P, 2 * C, dtype=self.kept_dtype or tokens.dtype, device=where)
                copy_in_chunks(outputs[i][..., :C], tokens, frames_per_chunk, to_host)
            global_block_in_place(global_block, sequence, frame_rope, P, frames_per_chunk)
            if i in keep:
                copy_in_chunks(outputs[i][..., C:], tokens, frames_per_chunk, to_host)
        if to_host is not None:
            to_host.flush()
        return outputs

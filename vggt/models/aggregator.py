"""The aggregator: patch embed, camera/register tokens, alternating frame and global attention.

Output entry i is [frame_out_i ‖ global_out_i] of shape [B, S, P, 2C] (raw residual stream, no
final norm), where P = 1 + num_register_tokens + patches. Only the layers some head reads are
kept alive; the other entries are None so that the list stays indexable by layer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vggt.config import VGGTConfig
from vggt.layers import Block, DinoVisionTransformer, PatchEmbed, RotaryPositionEmbedding2D, grid_positions
from vggt.layers.checkpoint import run_block

RESNET_MEAN = (0.485, 0.456, 0.406)
RESNET_STD = (0.229, 0.224, 0.225)


def per_frame_tokens(token: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """[1, 2, X, C] learned slots -> [B * S, X, C]: slot 0 for frame 0, slot 1 for the other frames."""
    first = token[:, :1].expand(batch, 1, -1, -1)
    rest = token[:, 1:].expand(batch, frames - 1, -1, -1)
    return torch.cat((first, rest), dim=1).flatten(0, 1)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation; constants are built on the images' device (no host copy)."""
    mean = torch.stack([images.new_full((), m) for m in RESNET_MEAN]).view(1, 1, 3, 1, 1)
    std = torch.stack([images.new_full((), s) for s in RESNET_STD]).view(1, 1, 3, 1, 1)
    return (images - mean) / std


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

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute every block (and the DINOv2 blocks) in backward while training."""
        self.activation_checkpointing = enabled
        if isinstance(self.patch_embed, DinoVisionTransformer):
            self.patch_embed.activation_checkpointing = enabled

    def forward(
        self, images: torch.Tensor, keep_layers: Iterable[int] | None = None
    ) -> tuple[list[torch.Tensor | None], int]:
        """images: [B, S, 3, H, W] in [0, 1] -> (depth entries of [B, S, P, 2C] or None, patch_start_idx).

        keep_layers: layer indices to return (default: the layers the heads read).
        """
        B, S, C_in, H, W = images.shape
        if C_in != 3:
            raise ValueError(f"images must have 3 channels (RGB) in dim 2, got shape {tuple(images.shape)}")
        keep = set(self.keep_layers if keep_layers is None else keep_layers)
        h, w = H // self.patch_size, W // self.patch_size

        frames = normalize_images(images).flatten(0, 1)
        patches = self.patch_embed(frames)
        camera = per_frame_tokens(self.camera_token, B, S)
        registers = per_frame_tokens(self.register_token, B, S)
        tokens = torch.cat((camera, registers, patches), dim=1)  # promotes to float32 under autocast
        P, C = tokens.shape[1], tokens.shape[2]

        frame_rope = self.rope.tables(grid_positions(h, w, self.patch_start_idx, images.device), self.head_dim)
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

"""Building blocks shared by the aggregator and the heads."""

from vggt.layers.attention import Attention
from vggt.layers.block import Block
from vggt.layers.dinov2 import DinoVisionTransformer
from vggt.layers.layer_scale import LayerScale
from vggt.layers.mlp import GELU, Mlp
from vggt.layers.patch_embed import PatchEmbed
from vggt.layers.rope import RopeTables, RotaryPositionEmbedding2D, grid_positions

__all__ = [
    "Attention",
    "Block",
    "DinoVisionTransformer",
    "GELU",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "RopeTables",
    "RotaryPositionEmbedding2D",
    "grid_positions",
]

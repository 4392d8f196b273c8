"""Every architecture number of VGGT in one dataclass.

`VGGTConfig()` is VGGT-1B (the `facebook/VGGT-1B` checkpoint). `small_reference()` is the small
architecture of the reference fixtures and `tiny()` a few-million-parameter model for tests and
the CPU demo. Training numbers live in the YAML configs, not here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

PATCH_EMBED_KINDS = ("dinov2_vitl14_reg", "conv")


@dataclass
class VGGTConfig:
    # input
    img_size: int = 518
    patch_size: int = 14

    # aggregator (alternating frame / global attention)
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    patch_embed: str = "dinov2_vitl14_reg"

    # camera head
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_iterations: int = 4

    # dense (DPT) heads: depth and point
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    dpt_intermediate_layers: tuple[int, ...] = (4, 11, 17, 23)

    # track head: DPT feature extractor + iterative tracker
    track_features: int = 128
    track_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    tracker_hidden_size: int = 384
    tracker_num_heads: int = 8
    tracker_depth: int = 6
    tracker_iterations: int = 4
    tracker_stride: int = 2
    tracker_corr_levels: int = 7
    tracker_corr_radius: int = 4
    tracker_num_virtual_tracks: int = 64
    tracker_max_scale: float = 518.0

    # which heads exist (a disabled head has no parameters)
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True

    # presets -------------------------------------------------------------------------------
    @classmethod
    def vggt_1b(cls) -> VGGTConfig:
        return cls()

    @classmethod
    def small_reference(cls) -> VGGTConfig:
        """The small architecture of the reference fixtures (`small_keys.tsv`)."""
        return cls(
            embed_dim=64,
            num_heads=4,
            patch_embed="conv",
            camera_num_heads=4,
            dpt_features=32,
            dpt_out_channels=(16, 32, 64, 64),
            track_features=32,
            tracker_hidden_size=64,
        )

    @classmethod
    def tiny(cls) -> VGGTConfig:
        """About 3M parameters: fast tests and the CPU demo."""
        return cls(
            embed_dim=64,
            depth=4,
            num_heads=4,
            patch_embed="conv",
            camera_trunk_depth=2,
            camera_num_heads=4,
            dpt_features=32,
            dpt_out_channels=(16, 32, 64, 64),
            dpt_intermediate_layers=(0, 1, 2, 3),
            track_features=32,
            track_out_channels=(32, 64, 128, 128),
            tracker_hidden_size=64,
            tracker_num_heads=4,
            tracker_depth=2,
            tracker_num_virtual_tracks=16,
        )

    @classmethod
    def preset(cls, name: str) -> VGGTConfig:
        presets = {"vggt_1b": cls.vggt_1b, "small_reference": cls.small_reference, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown VGGT config preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()

    # derived numbers -----------------------------------------------------------------------
    @property
    def head_dim_in(self) -> int:
        """Width of an aggregated token: frame and global outputs concatenated."""
        return 2 * self.embed_dim

    @property
    def patch_start_idx(self) -> int:
        """Camera token + register tokens precede the patch tokens of every frame."""
        return 1 + self.num_register_tokens

    def layers_read_by_heads(self) -> tuple[int, ...]:
        """Aggregator layers whose outputs some head reads; the others are never kept alive."""
        layers = {self.depth - 1}
        if self.enable_depth or self.enable_point or self.enable_track:
            layers.update(self.dpt_intermediate_layers)
        return tuple(sorted(layers))

    def __post_init__(self) -> None:
        for name in ("dpt_out_channels", "track_out_channels", "dpt_intermediate_layers"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.patch_embed not in PATCH_EMBED_KINDS:
            problems.append(f"patch_embed={self.patch_embed!r} is not one of {PATCH_EMBED_KINDS}")
        if self.patch_embed == "dinov2_vitl14_reg" and (self.embed_dim != 1024 or self.patch_size != 14):
            problems.append("patch_embed='dinov2_vitl14_reg' needs embed_dim=1024 and patch_size=14")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if (self.embed_dim // self.num_heads) % 4:
            problems.append(f"head dim {self.embed_dim // self.num_heads} must be a multiple of 4 for 2D RoPE")
        if self.head_dim_in % self.camera_num_heads:
            problems.append(
                f"2*embed_dim={self.head_dim_in} is not divisible by camera_num_heads={self.camera_num_heads}"
            )
        if len(self.dpt_out_channels) != 4 or len(self.track_out_channels) != 4:
            problems.append("dpt_out_channels and track_out_channels need 4 entries (one per DPT layer)")
        if len(self.dpt_intermediate_layers) != 4:
            problems.append("dpt_intermediate_layers needs 4 layer indices")
        bad = [i for i in self.dpt_intermediate_layers if not 0 <= i < self.depth]
        if bad:
            problems.append(f"dpt_intermediate_layers {bad} are outside the aggregator's 0..{self.depth - 1}")
        if self.img_size % self.patch_size:
            problems.append(f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}")
        if self.tracker_hidden_size % self.tracker_num_heads:
            problems.append("tracker_hidden_size must be divisible by tracker_num_heads")
        if problems:
            raise ValueError("invalid VGGTConfig: " + "; ".join(problems))

    # serialisation (config.json next to the weights) ----------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VGGTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VGGTConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


__all__ = ["VGGTConfig", "PATCH_EMBED_KINDS"]

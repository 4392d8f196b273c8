"""VGGT: images -> cameras, depth maps, point maps and point tracks in one forward pass."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from vggt.config import VGGTConfig
from vggt.heads.camera_head import CameraHead
from vggt.heads.dpt_head import DPTHead
from vggt.heads.track_head import TrackHead
from vggt.models.aggregator import Aggregator
from vggt.runtime import autocast_disabled, cpu
from vggt.weights import load_pretrained, save_model

INFERENCE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None}


def inference_dtype(torch_dtype: torch.dtype | str | None) -> torch.dtype | None:
    """from_pretrained's torch_dtype (a dtype or Hugging Face's name of one) -> the lower dtype to hold, or None."""
    if torch_dtype is None:
        return None
    name = torch_dtype if isinstance(torch_dtype, str) else str(torch_dtype).removeprefix("torch.")
    if name not in INFERENCE_DTYPES:
        raise ValueError(f"torch_dtype must be one of {', '.join(INFERENCE_DTYPES)} (or None), got {torch_dtype!r}")
    return INFERENCE_DTYPES[name]


class VGGT(nn.Module, PyTorchModelHubMixin):
    """`VGGT()` is VGGT-1B; `VGGT(config=VGGTConfig.tiny())` builds any preset.

    Upstream's keyword arguments (`img_size`, `patch_size`, `embed_dim`, `enable_camera`,
    `enable_point`, `enable_depth`, `enable_track`) override the config when given.
    """

    def __init__(
        self,
        img_size: int | None = None,
        patch_size: int | None = None,
        embed_dim: int | None = None,
        enable_camera: bool | None = None,
        enable_point: bool | None = None,
        enable_depth: bool | None = None,
        enable_track: bool | None = None,
        config: VGGTConfig | dict[str, Any] | None = None,
    ):
        super().__init__()
        if config is None:
            config = VGGTConfig()
        elif isinstance(config, dict):
            config = VGGTConfig.from_dict(config)
        overrides = {
            "img_size": img_size,
            "patch_size": patch_size,
            "embed_dim": embed_dim,
            "enable_camera": enable_camera,
            "enable_point": enable_point,
            "enable_depth": enable_depth,
            "enable_track": enable_track,
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if overrides:
            config = VGGTConfig.from_dict({**config.to_dict(), **overrides})
        self.config = c = config
        self._hub_mixin_config = c.to_dict()  # what save_pretrained / push_to_hub write as config.json

        def dense_head(output_dim: int, activation: str) -> DPTHead:
            return DPTHead(
                c.head_dim_in,
                patch_size=c.patch_size,
                output_dim=output_dim,
                activation=activation,
                conf_activation="expp1",
                features=c.dpt_features,
                out_channels=c.dpt_out_channels,
                intermediate_layer_idx=c.dpt_intermediate_layers,
            )

        self.aggregator = Aggregator(c)
        self.camera_head = (
            CameraHead(
                c.head_dim_in, c.camera_trunk_depth, c.camera_num_heads, c.mlp_ratio, c.init_values, c.camera_iterations
            )
            if c.enable_camera
            else None
        )
        self.point_head = dense_head(4, "inv_log") if c.enable_point else None
        self.depth_head = dense_head(2, "exp") if c.enable_depth else None
        self.track_head = TrackHead(c) if c.enable_track else None
        # False: the camera, depth and point heads compute in float32 under any autocast (as upstream on a GPU);
        # True: they follow the caller's autocast (upstream on a CPU does, since its CUDA-only off switch misses it)
        self.heads_under_autocast = False

    def heads_precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context the camera, depth and point heads run in: autocast off unless heads_under_autocast."""
        return contextlib.nullcontext() if self.heads_under_autocast else autocast_disabled(device)

    def aggregator_autograd(self, images: torch.Tensor) -> contextlib.AbstractContextManager:
        """The context the aggregator runs in: autograd off when no gradient could reach it (its parameters frozen, as
        upstream's training default freezes them, and images [B, S, 3, H, W] without grad); it then takes the
        inference paths (token-wise work chunked in place, the CPU kernels) and its outputs are the same tensors."""
        frozen = not images.requires_grad and not any(p.requires_grad for p in self.aggregator.parameters())
        return torch.no_grad() if torch.is_grad_enabled() and frozen else contextlib.nullcontext()

    def forward(
        self,
        images: torch.Tensor,
        query_points: torch.Tensor | None = None,
        frames_chunk_size: int | None = 8,
        second_half_reversed: bool = False,
    ) -> dict[str, Any]:
        """images: [S, 3, H, W] or [B, S, 3, H, W] in [0, 1]; query_points: [N, 2] or [B, N, 2] pixels of frame 0.
        second_half_reversed: images[B // 2:] are images[:B // 2] with their frames reversed (training's
        repeat_batch); the aggregator then embeds the first half's frames only (Aggregator.embed_batch).

        Returns pose_enc [B, S, 9] (+ pose_enc_list), depth [B, S, H, W, 1], depth_conf [B, S, H, W],
        world_points [B, S, H, W, 3], world_points_conf, and with query points track [B, S, N, 2],
        vis and conf [B, S, N] (in training mode also track_list, every tracker iteration); in eval mode
        also the (batched) input images.
        """
        images, query_points = self.check_inputs(images, query_points)
        with self.aggregator_autograd(images):
            tokens, patch_start_idx = self.aggregator(
                images, frames_chunk_size=frames_chunk_size, second_half_reversed=second_half_reversed
            )
        predictions: dict[str, Any] = {}
        with self.heads_precision(images.device):
            if self.camera_head is not None:
                pose_enc_list = self.camera_head(tokens)
                predictions["pose_enc"] = pose_enc_list[-1]
                predictions["pose_enc_list"] = pose_enc_list
            if self.depth_head is not None:
                depth, depth_conf = self.depth_head(tokens, images, patch_start_idx, frames_chunk_size)
                predictions["depth"], predictions["depth_conf"] = depth, depth_conf
            if self.point_head is not None:
                points, points_conf = self.point_head(tokens, images, patch_start_idx, frames_chunk_size)
                predictions["world_points"], predictions["world_points_conf"] = points, points_conf
        if query_points is not None:
            track_list, vis, conf = self.track_head(
                tokens, images, patch_start_idx, query_points=query_points, frames_chunk_size=frames_chunk_size
            )
            predictions["track"], predictions["vis"], predictions["conf"] = track_list[-1], vis, conf
            if self.training:
                predictions["track_list"] = track_list  # every iteration, for the iteration-weighted track loss
        if not self.training:
            predictions["images"] = images
        return predictions

    def check_inputs(
        self, images: torch.Tensor, query_points: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate and batch the inputs; raise a ValueError that says what would work."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"images must be a torch.Tensor [S, 3, H, W] or [B, S, 3, H, W], got {type(images).__name__}"
            )
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5:
            raise ValueError(f"images must be [S, 3, H, W] or [B, S, 3, H, W], got shape {tuple(images.shape)}")
        B, S, C, H, W = images.shape
        if C != 3:
            raise ValueError(
                f"images must have 3 (RGB) channels in dim -3, got {C} (shape {tuple(images.shape)}); "
                "convert grayscale with images.expand(..., 3, H, W) and drop alpha channels"
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}; use images.float() / 255")
        p = self.config.patch_size
        if H % p or W % p or H == 0 or W == 0:
            raise ValueError(
                f"image height and width must be positive multiples of the patch size {p}, got {H}x{W}; "
                f"resize or crop to e.g. {max(p, H // p * p)}x{max(p, W // p * p)} "
                "(vggt.utils.load_fn.load_and_preprocess_images does this)"
            )
        if query_points is None:
            return images, None
        if self.track_head is None:
            raise ValueError("query_points were given but this model has no track head (enable_track=False)")
        if not isinstance(query_points, torch.Tensor):
            raise TypeError(
                f"query_points must be a torch.Tensor [N, 2] or [B, N, 2], got {type(query_points).__name__}"
            )
        if query_points.dim() == 2:
            query_points = query_points.unsqueeze(0)
        if query_points.dim() != 3 or query_points.shape[-1] != 2 or query_points.shape[1] == 0:
            raise ValueError(
                "query_points must be [N, 2] or [B, N, 2] (x, y) pixels with N >= 1, "
                f"got shape {tuple(query_points.shape)}"
            )
        if query_points.shape[0] != B:
            raise ValueError(f"query_points batch {query_points.shape[0]} does not match the images batch {B}")
        if not query_points.is_floating_point():
            query_points = query_points.float()
        if query_points.device != images.device:
            raise ValueError(
                f"query_points are on {query_points.device} but images on {images.device}; move them together"
            )
        min_side = self.track_head.min_image_size()
        if H < min_side or W < min_side:
            raise ValueError(
                f"tracking needs images of at least {min_side}x{min_side} pixels (the tracker's correlation "
                f"pyramid pools its stride-{self.config.tracker_stride} feature map "
                f"{self.config.tracker_corr_levels - 1} times), got {H}x{W}; use larger images"
            )
        return images, query_points

    # loading and saving ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        config: VGGTConfig | dict[str, Any] | str | None = None,
        strict: bool = True,
        map_location: str | torch.device = "cpu",
        torch_dtype: torch.dtype | str | None = None,
        **model_kwargs: Any,
    ) -> VGGT:
        """Load a model from a Hugging Face repo id, a local directory or a weights file.

        Prefers `model.safetensors`, accepts `model.pt` / `pytorch_model.bin` (plain state dicts or
        training checkpoints holding one under "model"). The architecture comes from `config`
        (a VGGTConfig, dict or preset name), else the source's config.json, else VGGT-1B. Loading
        is strict: missing, unexpected or mis-shaped keys raise with a readable report.
        Honours the Hugging Face cache and offline mode (HF_HUB_OFFLINE=1).

        `torch_dtype` (Hugging Face's name; bfloat16 or float16) loads the aggregator's linear and convolution
        weights straight into that dtype, tensor by tensor from a .safetensors file, for inference under autocast
        to it (hold_in_compute_dtype). The rest stays float32: the camera and DPT heads compute in float32 with
        autocast off. Without autocast the aggregator refuses float32 inputs (a dtype mismatch); to train, load
        without torch_dtype (float32 masters).
        """
        compute = inference_dtype(torch_dtype)
        return load_pretrained(
            cls,
            pretrained_model_name_or_path,
            config=config,
            strict=strict,
            map_location=map_location,
            hub_kwargs={
                "force_download": force_download,
                "token": token,
                "cache_dir": cache_dir,
                "local_files_only": local_files_only,
                "revision": revision,
            },
            model_kwargs=model_kwargs,
            lower_precision=None if compute is None else lambda m: m.hold_in_compute_dtype(compute),
        )

    def set_host_offload(self, enabled: bool) -> None:
        """Inference with host offload (`vggt predict --offload`): the aggregator keeps the layers the heads read in
        host memory, the camera and DPT heads bring them back a chunk of frames at a time, and the depth and point
        maps go to host memory chunk by chunk; the device then holds per frame about the residual stream and the
        global keys and values. The outputs are the same. On a CPU, host and device are one memory: nothing moves.
        The track head keeps its feature maps on the device (the tracker reads every frame). Applies to the chunked
        inference forward (frames_chunk_size set, the default). Host memory is pageable (pinned whole-scene buffers
        would cost up to twice their size in the caching host allocator); each chunk crosses through pinned staging
        buffers on a copy stream, overlapping the next chunk's compute (vggt.runtime.host_copy)."""
        self.aggregator.kept_on_host = enabled
        for head in (self.depth_head, self.point_head):
            if head is not None:
                head.outputs_on_host = enabled

    def hold_in_compute_dtype(self, dtype: torch.dtype) -> None:
        """For inference under autocast to `dtype`: hold the aggregator's linear and convolution weights (and
        biases) in it, which is what autocast casts them to on every call (the same outputs, without the per-call
        casts: 8 % of VGGT-1B's bf16 aggregator on a CPU, and half their memory), and the layer outputs the heads
        read when `dtype` is bfloat16 (Aggregator.kept_dtype, chunked inference: half their memory; a rounding the
        bf16 bound covers). Layer norms, tokens and the heads' weights stay as they are (autocast computes layer
        norms in float32). The aggregator must then run under that autocast; training holds its frozen layers alike
        (training.utils.optim.hold_frozen_layers_in), the weights only."""
        for layer in self.aggregator.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                layer.to(dtype)
        # bf16 has float32's range; float16 kept layers could overflow (and no bound covers them): kept as computed
        self.aggregator.kept_dtype = dtype if dtype == torch.bfloat16 else None

    def lay_out_for_cpu_inference(self) -> None:
        """Before inference on a CPU: the camera head's GEMMs have one row a frame and stream their weights, which
        MKL reads faster transposed (VGGT-1B's camera head at 8 frames: 0.25 instead of 0.34 s, Xeon with AMX, 2
        threads; the same values, float32 rounding apart). Not when the heads run under a bf16 autocast, whose
        casts keep the layout and which it slows down; training keeps the default layout."""
        if self.camera_head is not None and not self.heads_under_autocast:
            cpu.lay_out_linears_for_few_rows(self.camera_head)

    def to_inference_device(self, device: torch.device) -> VGGT:
        """The model moved to `device` for inference, with lay_out_for_cpu_inference on a CPU with AMX: measured
        faster there only (on an AMD EPYC Zen 5, 2 threads, the laid-out camera head took 0.37 instead of 0.32 s)."""
        model = self.to(device)
        if device.type == "cpu" and cpu.AMX_BF16:
            model.lay_out_for_cpu_inference()
        return model

    def _save_pretrained(self, save_directory: Path) -> None:
        """Called by `save_pretrained`: weights as model.safetensors plus our config.json."""
        save_model(self, Path(save_directory))

"""Memory model of VGGT inference: peak bytes from the frame count, resolution, dtype and chunk size.

Inference (no autograd, token-wise work in frame chunks, see vggt.layers.token_chunks) peaks in one
of two phases, and the estimate is the larger:

- aggregator, last global block: the kept layer outputs (2C float32 per token each: the residual stream
  stays float32 under autocast), the residual stream (C float32) and the global keys and values (2C in
  the compute dtype) over all tokens, plus one chunk's transients (norms, projections, MLP hidden);
- heads: the kept layer outputs, the dense outputs (depth 2 + points 4 floats a pixel, the point head's
  chunks and their concatenation) and one chunk of DPT feature maps at full resolution (the refinement
  stages and two maps of `dpt_features / 2` channels at the image size); with query points also the
  tracker's feature maps of every frame.

Weights count once (their own dtype). Host memory holds the loaded images, the float32 prediction
arrays and the exports; on the CPU device and host are the same memory. With N processes
(sequence parallelism) a process holds its frames' share of everything per frame, plus the gathered
outputs of the whole scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vggt.config import VGGTConfig

FLOAT32 = 4
DENSE_OUTPUT_FLOATS = 2 + 4 + 4  # depth+conf, point chunks (4) and their concatenation (4), per pixel
HOST_FLOATS_PER_PIXEL = 3 + 2 + 4 + 3  # images, depth+conf, points+conf, points unprojected from depth
DPT_FULL_RES_MAPS = 2  # maps of features/2 channels at the image size held together in a DPT chunk
DPT_STAGE_CHANNELS = 32 + 8  # output_conv2 hidden (32) and the interpolation / activation temporaries
AGGREGATOR_TRANSIENT_FLOAT32 = 3  # norm1, residual + attention, norm2 of a chunk (float32)
AGGREGATOR_TRANSIENT_COMPUTE = 11  # q, attention out, proj, MLP hidden twice (4 + 4) in the compute dtype
EXPORT_FACTOR = 2.0  # point cloud and COLMAP exports copy the dense points about twice at most


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of one inference; `device_bytes` includes the weights, `host_bytes` the images and outputs."""

    device_bytes: int
    host_bytes: int
    weights_bytes: int
    per_frame_bytes: int
    phase: str  # where the peak sits: "aggregator" or "heads"

    def describe(self) -> str:
        gib = 1024**3
        return (
            f"device {self.device_bytes / gib:.2f} GiB (weights {self.weights_bytes / gib:.2f} GiB, "
            f"{self.per_frame_bytes / 1e6:.1f} MB a frame, peak in the {self.phase}), "
            f"host {self.host_bytes / gib:.2f} GiB"
        )


def tokens_per_frame(config: VGGTConfig, height: int, width: int) -> int:
    """P: camera + register tokens + patches of one frame."""
    return config.patch_start_idx + (height // config.patch_size) * (width // config.patch_size)


def parameter_count(config: VGGTConfig) -> int:
    """Parameters of the model of `config` (built on the meta device: no memory)."""
    from vggt.weights import build_model

    return sum(p.numel() for p in build_model(config).parameters())


def estimate_inference_memory(
    config: VGGTConfig,
    frames: int,
    height: int,
    width: int,
    dtype: torch.dtype = torch.float32,
    frames_chunk_size: int | None = 8,
    world_size: int = 1,
    query_points: int = 0,
    weights_bytes: int | None = None,
) -> MemoryEstimate:
    """Peak memory of `model(images)` for [1, frames, 3, height, width] images under autocast to `dtype`.

    `weights_bytes` defaults to the float32 parameters of `config`; `world_size` > 1 estimates one process
    of sequence-parallel inference (its ceil(frames / world_size) frames).
    """
    compute = torch.empty((), dtype=dtype).element_size()
    local = math.ceil(frames / world_size)
    chunk = min(frames_chunk_size or local, local)
    P, C, pixels = tokens_per_frame(config, height, width), config.embed_dim, height * width
    kept = len(config.layers_read_by_heads()) * 2 * C * FLOAT32 * P
    weights = parameter_count(config) * FLOAT32 if weights_bytes is None else weights_bytes
    images = 3 * pixels * FLOAT32

    keys_values = 2 * C * compute * P * (1 if world_size == 1 else 3)  # across processes: q, k, v and their copies
    aggregator_frame = kept + C * FLOAT32 * P + keys_values + images
    aggregator_chunk = chunk * P * C * (AGGREGATOR_TRANSIENT_FLOAT32 * FLOAT32 + AGGREGATOR_TRANSIENT_COMPUTE * compute)
    aggregator = local * aggregator_frame + aggregator_chunk

    heads_frame = kept + images + DENSE_OUTPUT_FLOATS * pixels * FLOAT32
    stride = config.tracker_stride
    if query_points:
        heads_frame += config.track_features * (pixels // stride**2) * FLOAT32
    dpt_chunk = chunk * pixels * FLOAT32 * (DPT_FULL_RES_MAPS * config.dpt_features // 2 + DPT_STAGE_CHANNELS)
    gathered = (frames - local) * (DENSE_OUTPUT_FLOATS * pixels * FLOAT32)  # the other ranks' outputs
    heads = local * heads_frame + dpt_chunk + gathered

    phase, working, per_frame = max(
        ("aggregator", aggregator, aggregator_frame), ("heads", heads, heads_frame), key=lambda t: t[1]
    )
    host = int(frames * pixels * FLOAT32 * HOST_FLOATS_PER_PIXEL * EXPORT_FACTOR)
    return MemoryEstimate(
        device_bytes=int(weights + working),
        host_bytes=host,
        weights_bytes=int(weights),
        per_frame_bytes=int(per_frame),
        phase=phase,
    )

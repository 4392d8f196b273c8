"""Memory model of VGGT inference: peak bytes from the frame count, resolution, dtype and chunk size.

Inference (no autograd, token-wise work in frame chunks, see vggt.layers.token_chunks) peaks in one
of two phases, and the estimate is the larger:

- aggregator, last global block: the kept layer outputs (2C per token each, in the compute dtype:
  VGGT.hold_in_compute_dtype, as vggt predict loads the model), the residual stream (C float32: it stays
  float32 under autocast) and the global keys and values (2C in the compute dtype) over all tokens, plus one
  chunk's transients (norms, projections, MLP hidden);
- heads: the kept layer outputs, the dense outputs (depth 2 + points 4 floats a pixel, the point head's
  chunks and their concatenation) and one chunk of DPT feature maps at full resolution (the refinement
  stages and two maps of `dpt_features / 2` channels at the image size, or output_conv2's input and hidden map
  where those are larger); with query points also the
  tracker's feature maps of every frame, and instead of the DPT chunk (the tracker runs after the DPT heads) the
  tracker's working memory: its normalised feature pyramid and, per query point and frame, the correlation window
  of one pyramid level (tracker_point_frame_bytes). The update transformer's virtual tracks attend across all
  points, so the points are not split: a count beyond the free memory is refused, naming the count that fits.

- on an NPU, global attention longer than npu_fusion_attention's limit (1M tokens) runs split over keys
  (vggt.runtime.npu.split_attention): a contiguous key and value chunk of at most the limit, and per query
  chunk its copy, one chunk result and the float32 merge temporaries, in the aggregator phase.

Weights count once, in the dtypes predict loads them in (the aggregator's matmul weights in the compute
dtype). Host memory holds the loaded images, the float32 prediction arrays and the exports; on the CPU
device and host are the same memory. With N processes (sequence parallelism) a process holds its frames'
share of everything per frame on its device: rank 0 sends each rank only its frames and receives their dense
outputs into host memory one rank's piece at a time (one piece's buffer on its device), and only rank 0 runs the
tracker, over every frame's feature maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.parallel.sequence import allowed_world_sizes
from vggt.runtime import free_memory_bytes, host_available_bytes
from vggt.runtime.kernels import split_attention_tokens
from vggt.weights import as_config, build_on_meta_device, config_from_json, read_config_json

FLOAT32 = 4
DENSE_OUTPUT_FLOATS = 2 + 4 + 4  # depth+conf, point chunks (4) and their concatenation (4), per pixel
HOST_FLOATS_PER_PIXEL = 3 + 2 + 4 + 3  # images, depth+conf, points+conf, points unprojected from depth
DPT_FULL_RES_MAPS = 2  # maps of features/2 channels at the image size held together in a DPT chunk
DPT_HALF_RES_MAPS = 1  # the last upsample's input: features/2 channels at half the image size
DPT_TEMPORARY_CHANNELS = 8  # position embedding and interpolation temporaries, in channels at the image size
DPT_HIDDEN = 32  # output_conv2's hidden map beside its features/2 input (its ReLU runs in place: no third map)
AGGREGATOR_TRANSIENT_FLOAT32 = 3  # norm1, residual + attention, norm2 of a chunk (float32)
AGGREGATOR_TRANSIENT_COMPUTE = 11  # q, attention out, proj, MLP hidden twice (4 + 4) in the compute dtype
TRACKER_PYRAMID_MAPS = 1 + 1 / 3  # the normalised feature maps plus their pooled levels (1/4 + 1/16 + ...)
TRACKER_WINDOW_COPIES = 2  # grid_sample's [S, C, N, K] window and the contiguous copy einsum makes of it
TRACKER_GRID_COPIES = 3  # the window's sample positions [S, N, K, 2]: shifted centres, x / y scaled, stacked
EXPORT_FACTOR = 2.0  # point cloud and COLMAP exports copy the dense points about twice at most
SPLIT_QUERY_FLOAT32 = 4  # split attention, per query token: the merged sum, its two weighted terms, the cast part
SPLIT_QUERY_COMPUTE = 2  # split attention, per query token: the contiguous query chunk, one chunk's result
RUNTIME_BYTES = 48 * 1024**2  # the first forward's fixed cost on the CPU (kernel libraries, thread buffers), measured
GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of one inference; `device_bytes` includes the weights, `host_bytes` the images and outputs."""

    device_bytes: int
    host_bytes: int
    weights_bytes: int
    inputs_bytes: int  # the images [S, 3, H, W] float32 on the device, part of device_bytes
    per_frame_bytes: int
    phase: str  # where the peak sits: "aggregator" or "heads"

    def describe(self) -> str:
        return (
            f"device {self.device_bytes / GIB:.2f} GiB (weights {self.weights_bytes / GIB:.2f} GiB, "
            f"{self.per_frame_bytes / 1e6:.1f} MB a frame, peak in the {self.phase}), "
            f"host {self.host_bytes / GIB:.2f} GiB"
        )


def tokens_per_frame(config: VGGTConfig, height: int, width: int) -> int:
    """P: camera + register tokens + patches of one frame."""
    return config.patch_start_idx + (height // config.patch_size) * (width // config.patch_size)


def tracker_point_frame_bytes(config: VGGTConfig, iterations: int | None = None) -> int:
    """The tracker's peak bytes per query point and frame (float32 throughout), reached while it samples the last
    level of its correlation pyramid (vggt/heads/correlation.py): the window of K = (2r + 1)^2 feature vectors of C
    channels around the point, held twice, with its sample positions; the correlations of the levels sampled so
    far; and what lives across iterations (position 2, track feature C, the constant embedding 3C + 4, and the
    positions of every iteration 2 * iterations)."""
    c, window = config.track_features, (2 * config.tracker_corr_radius + 1) ** 2
    iterations = config.tracker_iterations if iterations is None else iterations
    per_point = TRACKER_WINDOW_COPIES * c * window + TRACKER_GRID_COPIES * 2 * window
    per_point += config.tracker_corr_levels * window + 2 + c + (3 * c + 4) + 2 * iterations
    return per_point * FLOAT32


def planning_config(config: VGGTConfig | dict[str, Any] | str | None, model_source: str | Path) -> VGGTConfig:
    """The architecture to plan for before loading: `config` if given, else a local source's config.json, else 1B."""
    if config is not None:
        return as_config(config)
    config_json = Path(model_source) / "config.json"
    return config_from_json(read_config_json(config_json)) if config_json.is_file() else VGGTConfig()


def inference_weight_bytes(config: VGGTConfig, dtype: torch.dtype) -> int:
    """Bytes of the weights as vggt predict loads them for autocast to `dtype` (VGGT.from_pretrained's
    torch_dtype: the aggregator's matmul weights in `dtype`, the rest float32), counted on the meta device."""
    model = build_on_meta_device(VGGT, config)
    if dtype != torch.float32:
        model.hold_in_compute_dtype(dtype)
    return sum(p.numel() * p.element_size() for p in model.parameters())


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
    split_attention_tokens: int | None = None,
    offload: bool = False,
) -> MemoryEstimate:
    """Peak memory of `model(images)` for [1, frames, 3, height, width] images under autocast to `dtype`.

    `weights_bytes` defaults to inference_weight_bytes(config, dtype); `world_size` > 1 estimates one process
    of sequence-parallel inference (its ceil(frames / world_size) frames). `split_attention_tokens`: the
    sequence length beyond which the device's attention runs split (vggt.runtime.kernels.split_attention_tokens;
    None: never). `offload` (VGGT.set_host_offload): the kept layers and the dense outputs live in host memory;
    the device holds a chunk of frames' kept layers and outputs at a time.
    """
    compute = torch.empty((), dtype=dtype).element_size()
    local = math.ceil(frames / world_size)
    chunk = min(frames_chunk_size or local, local)
    P, C, pixels = tokens_per_frame(config, height, width), config.embed_dim, height * width
    kept = len(config.layers_read_by_heads()) * 2 * C * compute * P
    weights = inference_weight_bytes(config, dtype) if weights_bytes is None else weights_bytes
    images = 3 * pixels * FLOAT32

    dense = DENSE_OUTPUT_FLOATS * pixels * FLOAT32
    kept_on_device, dense_on_device = (0, 0) if offload else (kept, dense)
    keys_values = 2 * C * compute * P * (1 if world_size == 1 else 3)  # across processes: q, k, v and their copies
    aggregator_frame = kept_on_device + C * FLOAT32 * P + keys_values + images
    aggregator_chunk = chunk * P * C * (AGGREGATOR_TRANSIENT_FLOAT32 * FLOAT32 + AGGREGATOR_TRANSIENT_COMPUTE * compute)
    aggregator = local * aggregator_frame + aggregator_chunk
    if split_attention_tokens is not None and frames * P > split_attention_tokens:
        aggregator += split_attention_bytes(frames * P, chunk * P, C // world_size, compute, split_attention_tokens)

    heads_frame = kept_on_device + images + dense_on_device
    track_map = config.track_features * (pixels // config.tracker_stride**2) * FLOAT32  # one frame's feature map
    tracker = 0
    if query_points:  # rank 0 tracks through all frames (it gathers the feature maps): the largest process
        heads_frame += track_map
        tracker = frames * (TRACKER_PYRAMID_MAPS * track_map + query_points * tracker_point_frame_bytes(config))
    half = config.dpt_features // 2
    upsampling = DPT_FULL_RES_MAPS * half + DPT_HALF_RES_MAPS * half // 4 + DPT_TEMPORARY_CHANNELS
    dpt_chunk = chunk * pixels * FLOAT32 * max(upsampling, half + DPT_HIDDEN)
    # vggt predict --nproc: rank 0 receives the other ranks' dense outputs one rank's piece at a time, into host
    # memory (gather_frames_to_host); the tracker's gathered feature maps are in its term
    gathered = 0 if world_size == 1 else local * dense
    brought_back = chunk * (kept + dense) if offload else 0  # a chunk's kept layers in, its outputs on their way out
    heads = local * heads_frame + max(dpt_chunk, tracker) + gathered + brought_back

    phase, working, per_frame = max(
        ("aggregator", aggregator, aggregator_frame), ("heads", heads, heads_frame), key=lambda t: t[1]
    )
    host = int(frames * pixels * FLOAT32 * HOST_FLOATS_PER_PIXEL * EXPORT_FACTOR)
    if offload:  # every process's kept layers, on one host (vggt predict --nproc); the outputs are counted above
        host += world_size * local * kept
    return MemoryEstimate(
        device_bytes=int(weights + working + RUNTIME_BYTES),
        host_bytes=host,
        weights_bytes=int(weights),
        inputs_bytes=local * images,
        per_frame_bytes=int(per_frame),
        phase=phase,
    )


def split_attention_bytes(keys: int, queries: int, channels: int, compute: int, limit: int) -> int:
    """Transient bytes of one split attention call (vggt.runtime.npu.split_attention): `keys` tokens attended by
    `queries` tokens over `channels` (heads x head dim) in a `compute`-byte dtype, chunks of at most `limit`."""
    key_chunk = math.ceil(keys / math.ceil(keys / limit))
    query_chunk = math.ceil(queries / math.ceil(queries / limit))
    per_query = SPLIT_QUERY_FLOAT32 * FLOAT32 + SPLIT_QUERY_COMPUTE * compute
    return channels * (2 * key_chunk * compute + query_chunk * per_query)


def largest_fitting(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in 1..upper with fits(n) (fits grows false with n), or 0 when even 1 does not fit."""
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _needed_bytes(
    config: VGGTConfig,
    height: int,
    width: int,
    device: torch.device,
    weights: Callable[[torch.dtype], int],
    split: int | None,
    **args: Any,
) -> int:
    """What a run needs of the memory that `free_memory_bytes(device)` reports (args: estimate_inference_memory's;
    `weights(dtype)`: the weights' bytes)."""
    estimate = estimate_inference_memory(
        config, height=height, width=width, weights_bytes=weights(args["dtype"]), split_attention_tokens=split, **args
    )
    if device.type == "cpu":  # one memory: every process's share, the host arrays once
        return args.get("world_size", 1) * estimate.device_bytes + estimate.host_bytes
    return estimate.device_bytes


def most_frames_that_fit(
    config: VGGTConfig,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    frames_chunk_size: int | None,
    weights_resident: bool = False,
    upper: int = 100_000,
) -> int | None:
    """The most frames (at most `upper`) of one process's inference that fit the memory free on `device` now, as
    check_inference_memory counts it (`weights_resident`: the model is loaded there already, so the free memory
    excludes its weights); 0 when not even one does, None when the free memory is unknown."""
    free = free_memory_bytes(device)
    if free is None:
        return None
    weights = _no_weights if weights_resident else _weights_by_dtype(config)
    split = split_attention_tokens(device)

    def fits(frames: int) -> bool:
        need = _needed_bytes(config, height, width, device, weights, split, frames=frames, dtype=dtype,
                             frames_chunk_size=frames_chunk_size)  # fmt: skip
        return need <= free

    return largest_fitting(fits, upper)


def _no_weights(dtype: torch.dtype) -> int:
    """The weights' bytes still to come when the model is loaded already."""
    return 0


def _weights_by_dtype(config: VGGTConfig) -> Callable[[torch.dtype], int]:
    """inference_weight_bytes(config, dtype), each dtype counted once."""
    counted: dict[torch.dtype, int] = {}

    def weights(dtype: torch.dtype) -> int:
        if dtype not in counted:
            counted[dtype] = inference_weight_bytes(config, dtype)
        return counted[dtype]

    return weights


class MemoryPlanError(ValueError):
    """The requested inference does not fit the free memory; the message gives the numbers and what would fit."""


def check_inference_memory(
    config: VGGTConfig,
    frames: int,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    frames_chunk_size: int | None,
    world_size: int = 1,
    query_points: int = 0,
    enforce: bool = True,
    weights_resident: bool = False,
    offload: bool = False,
) -> str:
    """A one-line estimate of peak memory against what is free; raises MemoryPlanError (when `enforce`) naming the
    frame count, chunk size, dtype and process count that would fit instead. `weights_resident`: the model is
    loaded on `device` already (the free memory excludes its weights)."""

    weights = _weights_by_dtype(config)
    still_needed = _no_weights if weights_resident else weights
    split = split_attention_tokens(device)

    def need(**changes: Any) -> int:
        args = {"frames": frames, "dtype": dtype, "frames_chunk_size": frames_chunk_size, "world_size": world_size}
        args.update({"query_points": query_points, "offload": offload, **changes})
        return _needed_bytes(config, height, width, device, still_needed, split, **args)

    estimate = estimate_inference_memory(
        config,
        frames,
        height,
        width,
        dtype,
        frames_chunk_size,
        world_size,
        query_points,
        weights(dtype),
        split,
        offload,
    )
    free_device, free_host = free_memory_bytes(device), host_available_bytes()
    tracked = f" with {query_points} query points" if query_points else ""
    line = (
        f"memory estimate for {frames} frames of at most {height}x{width}{tracked}, "
        f"{str(dtype).removeprefix('torch.')}, "
        f"{world_size} process(es): {estimate.describe()}; free: device "
        f"{'unknown' if free_device is None else f'{free_device / GIB:.2f} GiB'}, host "
        f"{'unknown' if free_host is None else f'{free_host / GIB:.2f} GiB'}"
    )
    too_big = []
    if free_device is not None and need() > free_device:
        too_big.append(f"{need() / GIB:.2f} GiB > {free_device / GIB:.2f} GiB free on {device}")
    if device.type != "cpu" and free_host is not None and estimate.host_bytes > free_host:
        too_big.append(f"host arrays {estimate.host_bytes / GIB:.2f} GiB > {free_host / GIB:.2f} GiB available")
    if not too_big or not enforce:
        return line
    budget = free_device if free_device is not None else free_host
    options = []
    if query_points:
        points = largest_fitting(lambda n: need(query_points=n) <= budget, query_points - 1)
        options.append(f"at most {points} query points" if points else "no --query-points")
    most = largest_fitting(lambda n: need(frames=n) <= budget, frames - 1)
    if most:
        options.append(f"at most {most} frames")
    if frames_chunk_size != 1 and need(frames_chunk_size=1) <= budget:
        options.append("--frames-chunk-size 1")
    if dtype == torch.float32 and device.type != "cpu" and need(dtype=torch.bfloat16) <= budget:
        options.append("--dtype bfloat16")
    if not offload and device.type != "cpu" and need(offload=True) <= budget:
        options.append("--offload (the kept layers and outputs in host memory)")
    counts = [n for n in allowed_world_sizes(config.num_heads) if n > world_size and n <= frames]
    fitting_counts = [n for n in counts if need(world_size=n) <= budget]
    if fitting_counts and device.type != "cpu":
        options.append(f"--nproc {fitting_counts[0]} (one device each)")
    advice = "; ".join(options) if options else "a smaller --resolution or a device with more memory"
    raise MemoryPlanError(
        f"{line}\nthis does not fit: {', '.join(too_big)}. What would fit: {advice}. "
        "--skip-memory-check runs anyway (the model behind the estimate: vggt/memory_plan.py)"
    )

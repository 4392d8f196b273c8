"""Load the model and run it once over all frames: upstream's prediction keys plus decoded cameras, as NumPy."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.predict.cameras import camera_validity
from vggt.runtime import autocast
from vggt.utils.geometry import unproject_depth_map_to_point_map
from vggt.utils.pose_enc import pose_encoding_to_extri_intri
from vggt.weights import WeightsMismatchError

REQUIRED_HEADS = ("camera_head", "depth_head")
NUMPY_KEYS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf", "images", "track", "vis", "conf")


def load_model(
    source: str | Path,
    config: VGGTConfig | dict[str, Any] | str | None,
    heads_under_autocast: bool = False,
    autocast_dtype: torch.dtype = torch.float32,
) -> VGGT:
    """VGGT.from_pretrained(source); heads the checkpoint has no weights for are disabled with a warning.
    `heads_under_autocast` lets the camera, depth and point heads compute in the autocast dtype (--heads-autocast);
    with a lower `autocast_dtype` the aggregator's matmul weights are loaded into it and the layers the heads read
    are kept in it (VGGT.from_pretrained's torch_dtype, hold_in_compute_dtype; the model then runs under it).

    Training checkpoints often hold only the heads that were trained (camera and depth); predict needs those two.
    """
    try:
        model = VGGT.from_pretrained(source, config=config, torch_dtype=autocast_dtype)
    except WeightsMismatchError as err:
        report = err.report
        absent = [m for m in report.absent_modules if m.endswith("_head")]
        only_absent_heads = (
            absent
            and not report.unexpected
            and not report.shape_mismatch
            and all(key.split(".")[0] in absent for key in report.missing)
        )
        if not only_absent_heads:
            raise
        flags = {f"enable_{head.removesuffix('_head')}": False for head in absent}
        model = VGGT.from_pretrained(source, config=config, torch_dtype=autocast_dtype, **flags)
        warnings.warn(f"{source} has no weights for {', '.join(absent)}; running without them", stacklevel=2)
    model.heads_under_autocast = heads_under_autocast
    model.requires_grad_(False)  # inference: no parameter takes part in autograd
    missing = [head for head in REQUIRED_HEADS if getattr(model, head) is None]
    if missing:
        raise ValueError(
            f"{source}: predict needs the camera and depth heads, but the model has no {', '.join(missing)}"
        )
    return model


ModelForward = Callable[[VGGT, torch.Tensor, "torch.Tensor | None", int], dict[str, Any]]


def local_forward(
    model: VGGT, images: torch.Tensor, query_points: torch.Tensor | None, frames_chunk_size: int
) -> dict[str, Any]:
    """The model's eval forward in this process, the images moved to the model's device."""
    images = images.to(next(model.parameters()).device)
    return model(images, query_points=query_points, frames_chunk_size=frames_chunk_size)


def _numpy(value: torch.Tensor) -> np.ndarray:
    """Batch dimension dropped, float32 on the host."""
    return value[0].detach().float().cpu().numpy()


def _points_from_depth(predictions: dict[str, np.ndarray]) -> np.ndarray:
    """world_points_from_depth [S, H, W, 3]: the depth unprojected by each usable camera, NaN for the others."""
    depth, valid = predictions["depth"], predictions["camera_valid"]
    points = np.full((*depth.shape[:3], 3), np.nan, dtype=np.float32)
    if valid.any():
        points[valid] = unproject_depth_map_to_point_map(
            depth[valid], predictions["extrinsic"][valid], predictions["intrinsic"][valid]
        )
    return points


@torch.no_grad()
def run_model(
    model: VGGT,
    images: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    frames_chunk_size: int,
    query_points: torch.Tensor | None = None,
    forward: ModelForward | None = None,
) -> dict[str, np.ndarray]:
    """images [S, 3, H, W] in [0, 1], query_points [N, 2] model pixels of frame 0 or None.

    `forward(model, images, query_points, frames_chunk_size)` replaces the plain model call (sequence parallelism);
    it gets the images where they are (host memory) and moves what it computes on.

    Returns float32 arrays without the batch dimension: pose_enc [S, 9], depth [S, H, W, 1], depth_conf [S, H, W],
    world_points [S, H, W, 3] and world_points_conf (when the model has a point head), images [S, 3, H, W],
    track [S, N, 2] / vis / conf [S, N] (with query points), extrinsic [S, 3, 4] (camera-from-world, OpenCV),
    intrinsic [S, 3, 3] (model pixels), camera_valid [S] (see vggt.predict.cameras) and world_points_from_depth
    [S, H, W, 3] (NaN for frames without a usable camera).
    """
    model = model.to_inference_device(device)
    queries = None if query_points is None else query_points.to(device)
    with autocast(device, dtype):
        output = (forward or local_forward)(model, images, queries, frames_chunk_size)  # each moves what it needs
    predictions = {key: _numpy(output[key]) for key in NUMPY_KEYS if key in output}
    extrinsic, intrinsic = pose_encoding_to_extri_intri(output["pose_enc"].float(), images.shape[-2:])
    predictions["extrinsic"] = _numpy(extrinsic)
    predictions["intrinsic"] = _numpy(intrinsic)
    predictions["camera_valid"] = camera_validity(
        predictions["pose_enc"], predictions["extrinsic"], predictions["intrinsic"]
    )
    predictions["world_points_from_depth"] = _points_from_depth(predictions)
    return predictions

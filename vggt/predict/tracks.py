"""Correspondences from our own track head: query frames, query pixels, and tracks through every frame."""

from __future__ import annotations

import math

import numpy as np
import torch

from vggt.models.vggt import VGGT
from vggt.predict.frustum import camera_centers
from vggt.runtime import autocast


def select_query_frames(extrinsic: np.ndarray, count: int) -> list[int]:
    """Frame 0, then greedily the frame whose camera centre is farthest from those already chosen.

    Spread-out query frames see most of the scene; with coincident centres (a rotating camera) the frames
    are spaced evenly instead.
    """
    frames = len(extrinsic)
    count = min(count, frames)
    centers = camera_centers(extrinsic)
    if np.ptp(centers, axis=0).max() <= 1e-9:
        return sorted({round(i * frames / count) for i in range(count)})
    chosen = [0]
    distance = np.linalg.norm(centers - centers[0], axis=1)
    while len(chosen) < count:
        best = int(np.argmax(distance))
        chosen.append(best)
        distance = np.minimum(distance, np.linalg.norm(centers - centers[best], axis=1))
    return chosen


def select_query_pixels(confidence: np.ndarray, valid: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` pixels [n, 2] (u, v), int: the most confident valid pixel of each cell of a square grid,
    best cells first. The grid spreads the queries over the image; the confidence puts them on solid surfaces."""
    height, width = confidence.shape
    cell = max(1, int(math.sqrt(valid.sum() / max(count, 1))))
    rows, cols = -(-height // cell), -(-width // cell)
    score = np.full((rows * cell, cols * cell), -np.inf)
    score[:height, :width] = np.where(valid, confidence, -np.inf)
    blocks = score.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, cell * cell)
    best = blocks.argmax(axis=-1)
    best_score = np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0]
    cell_row, cell_col = np.nonzero(np.isfinite(best_score))
    order = np.argsort(-best_score[cell_row, cell_col], kind="stable")[:count]
    cell_row, cell_col = cell_row[order], cell_col[order]
    offset = best[cell_row, cell_col]
    return np.stack([cell_col * cell + offset % cell, cell_row * cell + offset // cell], axis=-1).astype(np.int64)


@torch.no_grad()
def track_from_frame(
    model: VGGT,
    images: torch.Tensor,
    frame: int,
    query_pixels: np.ndarray,
    dtype: torch.dtype,
    frames_chunk_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track pixels [N, 2] (u, v) of `frame` through all frames: (tracks [S, N, 2], vis [S, N], conf [S, N]).

    The track head follows points of the first frame, so the frames are reordered with `frame` first (the
    aggregator runs again for that order) and the outputs are put back in the original order. images
    [S, 3, H, W] on the model's device.
    """
    order = [frame] + [i for i in range(len(images)) if i != frame]
    reordered = images[order]
    queries = torch.as_tensor(query_pixels, dtype=torch.float32, device=images.device)
    reordered, queries = model.check_inputs(reordered, queries)
    with autocast(images.device, dtype):
        tokens, patch_start_idx = model.aggregator(reordered)
        track_list, vis, conf = model.track_head(
            tokens, reordered, patch_start_idx, query_points=queries, frames_chunk_size=frames_chunk_size
        )
    restore = np.argsort(order)
    return tuple(x[0].float().cpu().numpy()[restore] for x in (track_list[-1], vis, conf))

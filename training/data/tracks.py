"""Ground-truth point tracks from depth: frame 0's valid points projected into every frame (host-side, NumPy).

Runs in the dataset worker on one sample (before normalisation; depths and points share the scene's units).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

BORDER_PX = 4  # a projection must lie at least this many pixels inside the image to count as visible
DEPTH_REL_TOL = 0.05  # |projected depth - GT depth| <= 5% of the GT depth
MIN_VISIBLE_FRAMES = 2  # a positive track is visible in frame 0 and in at least this many frames (frame 0 included)
MIN_DEPTH = 1e-8  # projections at or behind the camera plane are invisible


def _numpy(array: Any, dtype: type) -> np.ndarray:
    """Host NumPy copy of a torch tensor or array-like."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


def project_points(points: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [Q, 3] -> (pixels [S, Q, 2], camera depths [S, Q]) in each of S cameras.

    Pixels of points at or behind a camera (depth <= MIN_DEPTH) are set to 0, so every output is finite.
    """
    cam = np.einsum("sij,qj->sqi", extrinsics[:, :, :3], points) + extrinsics[:, None, :, 3]
    depth = cam[..., 2]
    in_front = depth > MIN_DEPTH
    normalised = cam / np.where(in_front, depth, 1.0)[..., None]
    pixels = np.einsum("sij,sqj->sqi", intrinsics, normalised)[..., :2]
    return np.where(in_front[..., None], pixels, 0.0).astype(np.float32), depth.astype(np.float32)


def visibility(pixels: np.ndarray, depth: np.ndarray, depth_maps: np.ndarray) -> np.ndarray:
    """Which projections are visible [S, Q] bool, from pixels [S, Q, 2], their depths [S, Q] and GT depths [S, H, W].

    Visible: in front of the camera, inside the image with a BORDER_PX margin (BORDER_PX <= u <= W-1-BORDER_PX,
    same for v), and within DEPTH_REL_TOL of a valid GT depth at any of the 4 integer pixels around it.
    """
    frames, height, width = depth_maps.shape
    u, v = pixels[..., 0], pixels[..., 1]
    inside = (
        (depth > MIN_DEPTH)
        & (u >= BORDER_PX)
        & (u <= width - 1 - BORDER_PX)
        & (v >= BORDER_PX)
        & (v <= height - 1 - BORDER_PX)
    )
    # clipping only matters outside the border, where `inside` already rules the point out
    u0 = np.clip(np.floor(u).astype(np.int64), 0, width - 2)
    v0 = np.clip(np.floor(v).astype(np.int64), 0, height - 2)
    frame = np.arange(frames)[:, None]
    agrees = np.zeros(depth.shape, dtype=bool)
    for dv in (0, 1):
        for du in (0, 1):
            gt = depth_maps[frame, v0 + dv, u0 + du]
            agrees |= (gt > MIN_DEPTH) & (np.abs(depth - gt) <= DEPTH_REL_TOL * gt)
    return inside & agrees


def choose_tracks(
    candidates: np.ndarray, visible_counts: np.ndarray, num_tracks: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick at most `num_tracks` of the candidate query indices [P].

    With more candidates than needed, keep the best-seen max(num_tracks, P // 2) by number of visible frames
    (ties broken at random), then sample `num_tracks` of them without replacement.
    """
    if len(candidates) <= num_tracks:
        return candidates
    shuffled = candidates[rng.permutation(len(candidates))]
    ranked = shuffled[np.argsort(-visible_counts[shuffled], kind="stable")]
    kept = ranked[: max(num_tracks, len(candidates) // 2)]
    return rng.choice(kept, num_tracks, replace=False)


def build_tracks(sample: dict[str, Any], num_tracks: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Tracks of frame 0's valid points through the sequence (upstream's build_tracks_by_depth).

    Args:
        sample: world_points [S, H, W, 3], point_masks [S, H, W], depths [S, H, W], extrinsics [S, 3, 4]
            (camera-from-world), intrinsics [S, 3, 3] (torch tensors or arrays).
        num_tracks: N, the number of tracks returned.
        rng: the sample's generator (tie-breaking and sampling).

    Returns:
        tracks [S, N, 2] float32 pixels, track_vis_mask [S, N] bool, track_positive_mask [N] bool.
        Positives are tracks visible in frame 0 and in >= MIN_VISIBLE_FRAMES frames. When fewer than N exist,
        the remaining slots repeat the chosen positives cyclically but are marked non-positive: shapes stay
        fixed, the model gets realistic query points, and the loss counts each real track once. Without any
        positive, all tracks are 0, invisible and non-positive.
    """
    world = _numpy(sample["world_points"], np.float32)
    masks = _numpy(sample["point_masks"], bool)
    depth_maps = _numpy(sample["depths"], np.float32)
    extrinsics = _numpy(sample["extrinsics"], np.float32)
    intrinsics = _numpy(sample["intrinsics"], np.float32)
    frames = world.shape[0]

    queries = world[0][masks[0]]  # [Q, 3]
    pixels, depth = project_points(queries, extrinsics, intrinsics)
    visible = visibility(pixels, depth, depth_maps)
    counts = visible.sum(axis=0)
    candidates = np.flatnonzero(visible[0] & (counts >= MIN_VISIBLE_FRAMES))
    chosen = choose_tracks(candidates, counts, num_tracks, rng)

    tracks = np.zeros((frames, num_tracks, 2), dtype=np.float32)
    vis_mask = np.zeros((frames, num_tracks), dtype=bool)
    positive = np.zeros(num_tracks, dtype=bool)
    if len(chosen) > 0:
        slots = chosen[np.arange(num_tracks) % len(chosen)]
        tracks, vis_mask = pixels[:, slots], visible[:, slots]
        positive[: len(chosen)] = True
    return {
        "tracks": torch.from_numpy(np.ascontiguousarray(tracks)),
        "track_vis_mask": torch.from_numpy(np.ascontiguousarray(vis_mask)),
        "track_positive_mask": torch.from_numpy(positive),
    }

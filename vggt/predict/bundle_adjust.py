"""`--ba`: a COLMAP model from track-head correspondences, refined by pycolmap's bundle adjustment.

1. Pick query frames (spread-out cameras) and their most confident pixels on a grid (vggt.predict.tracks).
2. Track them through every frame with the track head; keep sightings with visibility above `vis_thresh`.
3. Start each 3D point at the query pixel's depth-unprojected world point.
4. Drop sightings whose reprojection error under the predicted cameras exceeds `max_error`, and tracks seen in
   fewer than 2 frames; build the pycolmap Reconstruction (original-image pixels; PINHOLE cameras, one per frame,
   unless the options choose another camera model or one shared camera) and bundle-adjust it (poses, focal
   lengths, SIMPLE_RADIAL's distortion and points; principal points fixed).
5. Drop the sightings whose error is still above `max_error` (a point left with one sighting goes with it).

Errors are measured in model pixels (the resolution the network saw), so one threshold fits any input size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from vggt.models.vggt import VGGT
from vggt.predict.colmap import (
    Observations,
    build_reconstruction,
    check_camera_model,
    check_shared_camera,
    import_pycolmap,
)
from vggt.predict.geometry import model_index_to_original, original_intrinsics
from vggt.predict.tracks import select_query_frames, select_query_pixels, track_from_frame
from vggt.utils.load_fn import PreprocessTransform

MIN_TRACK_LENGTH = 2


@dataclass
class TrackSet:
    """N tracks through S frames, in model pixels, with their initial 3D points."""

    xyz: np.ndarray  # [N, 3] initial world points (depth unprojected at the query pixel)
    rgb: np.ndarray  # [N, 3] uint8 colour at the query pixel
    uv: np.ndarray  # [S, N, 2] model pixel indices
    seen: np.ndarray  # [S, N] bool: visible enough and inside the image content


@dataclass
class BundleAdjustmentOptions:
    query_frames: int = 4  # frames whose pixels are tracked
    max_query_points: int = 2048  # queries over all query frames
    vis_thresh: float = 0.2  # a sighting counts when the track head's visibility exceeds this
    max_error: float = 4.0  # reprojection error limit, model pixels
    camera_model: str = "PINHOLE"  # one of vggt.predict.colmap.CAMERA_MODELS
    shared_camera: bool = False  # one camera for all frames (original images of one size)


@dataclass
class BundleAdjustmentStats:
    query_frames: list[int]
    tracks: int  # tracked points
    points_before: int  # points entering the adjustment (seen in >= 2 frames within max_error)
    points_after: int  # points left after the final filter
    error_before: float  # mean reprojection error (model pixels) of the sightings kept, predicted cameras
    error_after: float  # the same after the adjustment and the final filter


def collect_tracks(
    model: VGGT,
    images: torch.Tensor,
    predictions: dict[str, np.ndarray],
    valid: np.ndarray,
    query_frame_count: int,
    max_query_points: int,
    vis_thresh: float,
    dtype: torch.dtype,
    frames_chunk_size: int,
) -> tuple[TrackSet, list[int]]:
    """Steps 1-3: tracks from `query_frame_count` frames, `max_query_points` queries in all. images [S, 3, H, W].

    Only frames with a usable camera (predictions["camera_valid"]) query or see a track."""
    cameras = np.flatnonzero(predictions["camera_valid"])
    query_frames = [int(cameras[i]) for i in select_query_frames(predictions["extrinsic"][cameras], query_frame_count)]
    per_frame = max(1, max_query_points // len(query_frames))
    frames, height, width = valid.shape
    parts = []
    for frame in tqdm(query_frames, desc="tracking", unit="query frame"):
        pixels = select_query_pixels(predictions["depth_conf"][frame], valid[frame], per_frame)
        if not len(pixels):
            continue
        uv, vis, _ = track_from_frame(model, images, frame, pixels, dtype, frames_chunk_size)
        u, v = np.rint(uv[..., 0]).astype(np.int64), np.rint(uv[..., 1]).astype(np.int64)
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
        on_content = inside & valid[np.arange(frames)[:, None], v.clip(0, height - 1), u.clip(0, width - 1)]
        seen = on_content & (vis > vis_thresh) & predictions["camera_valid"][:, None]
        seen[frame] = True  # the query frame sees its own pixels, whatever the head says
        uv[frame] = pixels
        qu, qv = pixels[:, 0], pixels[:, 1]
        rgb = np.clip(predictions["images"][frame][:, qv, qu].T * 255 + 0.5, 0, 255).astype(np.uint8)
        parts.append(TrackSet(predictions["world_points_from_depth"][frame, qv, qu], rgb, uv, seen))
    if not parts:
        raise ValueError("--ba found no pixel to track: every query frame is padding only")
    merged = TrackSet(
        xyz=np.concatenate([part.xyz for part in parts]),
        rgb=np.concatenate([part.rgb for part in parts]),
        uv=np.concatenate([part.uv for part in parts], axis=1),  # tracks are the second axis
        seen=np.concatenate([part.seen for part in parts], axis=1),
    )
    return merged, query_frames


def reprojection_errors(xyz: np.ndarray, uv: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray) -> np.ndarray:
    """Pixel distance [S, N] between uv [S, N, 2] and the projections of xyz [N, 3]; inf behind a camera."""
    cam = np.einsum("sij,nj->sni", extrinsic[:, :, :3].astype(np.float32), xyz) + extrinsic[:, None, :, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        projected = np.stack(
            [
                intrinsic[:, None, 0, 0] * cam[..., 0] / z + intrinsic[:, None, 0, 2],
                intrinsic[:, None, 1, 1] * cam[..., 1] / z + intrinsic[:, None, 1, 2],
            ],
            axis=-1,
        )
    errors = np.linalg.norm(projected - uv, axis=-1)
    return np.where(z > 1e-9, errors, np.inf)


@contextlib.contextmanager
def _quiet_colmap_log(pycolmap) -> Iterator[None]:
    """Only COLMAP's warnings and errors reach stderr: its INFO lines would break up the progress bars."""
    logging = getattr(pycolmap, "logging", None)
    if logging is None:  # pycolmap releases without log control
        yield
        return
    previous = logging.minloglevel
    logging.minloglevel = int(logging.Level.WARNING.value)
    try:
        yield
    finally:
        logging.minloglevel = previous


def _drop_bad_sightings(reconstruction, transforms: Sequence[PreprocessTransform], max_error: float) -> list[float]:
    """Step 5 on the adjusted model; returns the errors (model pixels) of the sightings kept."""
    doomed, kept = [], []
    for point_id, point in reconstruction.points3D.items():
        for element in point.track.elements:
            image = reconstruction.images[element.image_id]
            projected = image.project_point(point.xyz)
            observed = image.points2D[element.point2D_idx].xy
            scale = np.array(transforms[element.image_id - 1].scale)
            error = np.inf if projected is None else float(np.linalg.norm((projected - observed) * scale))
            (kept if error <= max_error else doomed).append((point_id, element.image_id, element.point2D_idx, error))
    for point_id, image_id, point2d_idx, _ in doomed:
        if reconstruction.exists_point3D(point_id):  # deleting a 2-sighting track's sighting deletes its point
            reconstruction.delete_observation(image_id, point2d_idx)
    return [error for point_id, *_, error in kept if reconstruction.exists_point3D(point_id)]


def adjust_tracks(
    tracks: TrackSet,
    predictions: dict[str, np.ndarray],
    transforms: Sequence[PreprocessTransform],
    names: Sequence[str],
    max_error: float,
    camera_model: str = "PINHOLE",
    shared_camera: bool = False,
):  # -> (pycolmap.Reconstruction, points before, mean error before, mean error after)
    """Steps 4-5 on tracks in model pixels; errors in model pixels. `camera_model` and `shared_camera` as in
    build_reconstruction."""
    pycolmap = import_pycolmap()
    extrinsic, intrinsic = predictions["extrinsic"], predictions["intrinsic"]
    errors = reprojection_errors(tracks.xyz.astype(np.float32), tracks.uv, extrinsic, intrinsic)
    keep = tracks.seen & (errors <= max_error)
    keep &= keep.sum(axis=0) >= MIN_TRACK_LENGTH
    if not keep.any():
        raise ValueError(
            f"--ba: no track was seen in {MIN_TRACK_LENGTH} frames within {max_error} px of the predicted cameras; "
            "raise --max-reproj-error, lower --vis-thresh or add --query-frames / --max-query-points"
        )
    frame, point = np.nonzero(keep)  # frame-major, as build_reconstruction numbers each image's 2D points
    xy = np.zeros((len(frame), 2))
    for index, transform in enumerate(transforms):
        mine = frame == index
        xy[mine] = model_index_to_original(tracks.uv[index, point[mine]], transform)
    reconstruction = build_reconstruction(
        extrinsic,
        original_intrinsics(intrinsic, transforms),
        predictions["camera_valid"],
        transforms,
        names,
        tracks.xyz,
        tracks.rgb,
        Observations(point=point, frame=frame, xy=xy),
        camera_model,
        shared_camera,
    )
    points_before = reconstruction.num_points3D()
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    with _quiet_colmap_log(pycolmap):
        pycolmap.bundle_adjustment(reconstruction, options)
    after = _drop_bad_sightings(reconstruction, transforms, max_error)
    return reconstruction, points_before, float(errors[keep].mean()), float(np.mean(after)) if after else float("nan")


def run_bundle_adjustment(
    model: VGGT,
    images: torch.Tensor,
    predictions: dict[str, np.ndarray],
    valid: np.ndarray,
    transforms: Sequence[PreprocessTransform],
    names: Sequence[str],
    options: BundleAdjustmentOptions,
    dtype: torch.dtype,
    frames_chunk_size: int,
):  # -> (pycolmap.Reconstruction, BundleAdjustmentStats)
    """Steps 1-5. images [S, 3, H, W] on the model's device, valid bool [S, H, W] (non-padding pixels)."""
    if model.track_head is None:
        raise ValueError("--ba needs the track head, and this model has none; run without --ba")
    check_camera_model(options.camera_model)  # before the tracking, which takes a while
    if options.shared_camera:
        check_shared_camera([transform.original_size for transform in transforms], names)
    tracks, query_frames = collect_tracks(
        model,
        images,
        predictions,
        valid,
        options.query_frames,
        options.max_query_points,
        options.vis_thresh,
        dtype,
        frames_chunk_size,
    )
    reconstruction, points_before, error_before, error_after = adjust_tracks(
        tracks, predictions, transforms, names, options.max_error, options.camera_model, options.shared_camera
    )
    stats = BundleAdjustmentStats(
        query_frames, tracks.xyz.shape[0], points_before, reconstruction.num_points3D(), error_before, error_after
    )
    return reconstruction, stats

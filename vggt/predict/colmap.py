"""COLMAP sparse models (cameras.bin, images.bin, points3D.bin) through pycolmap, in original-image pixels.

Every frame gets its own PINHOLE camera (fx, fy, cx, cy) of the original image's size, its pose is the predicted
camera-from-world, and every observation is a 2D point in the original image (COLMAP's continuous convention;
see vggt.predict.geometry). Image names are the input file names (video frames: frame_000001.png ... in video_frames/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vggt.interrupts import reclaim_stop_signals
from vggt.utils.load_fn import PreprocessTransform


def import_pycolmap():  # -> the pycolmap module
    """pycolmap, or a ValueError that says how to get it (it is an optional dependency)."""
    try:
        import pycolmap
    except ImportError as err:
        raise ValueError(
            "the colmap export (and --ba) needs pycolmap: pip install 'vggt-npu[export]' "
            "(or leave colmap out of --export)"
        ) from err
    reclaim_stop_signals()  # its glog took SIGTERM on import
    return pycolmap


@dataclass
class Observations:
    """M sightings of 3D points: point `point[i]` seen in frame `frame[i]` at `xy[i]` (original pixels)."""

    point: np.ndarray  # [M] int64 index into the points
    frame: np.ndarray  # [M] int64 frame index
    xy: np.ndarray  # [M, 2] continuous original-image coordinates


def build_reconstruction(
    extrinsic: np.ndarray,
    intrinsic: np.ndarray,
    registered: np.ndarray,
    transforms: Sequence[PreprocessTransform],
    names: Sequence[str],
    xyz: np.ndarray,
    rgb: np.ndarray,
    observations: Observations,
):  # -> pycolmap.Reconstruction
    """A reconstruction with one camera and image per registered frame (ids = frame + 1) and the points with their
    tracks.

    extrinsic [S, 3, 4] camera-from-world, intrinsic [S, 3, 3] in original pixels, registered bool [S] (the frames
    with a usable camera; the others get no image, as in COLMAP), xyz [N, 3], rgb [N, 3] uint8. Points without any
    observation are left out.
    """
    if not registered[observations.frame].all():
        raise ValueError("an observation lies in a frame without a usable camera")  # a caller's bug, never the user's
    pycolmap = import_pycolmap()
    reconstruction = pycolmap.Reconstruction()
    order = np.argsort(observations.frame, kind="stable")
    frames, xy, points = observations.frame[order], observations.xy[order], observations.point[order]
    starts = np.searchsorted(frames, np.arange(len(names) + 1))
    point2d_index = np.arange(len(frames)) - starts[frames]  # position of each observation within its image
    for frame, (transform, name) in enumerate(zip(transforms, names)):
        if not registered[frame]:
            continue
        k = intrinsic[frame]
        width, height = transform.original_size
        camera = pycolmap.Camera(
            model="PINHOLE",
            width=width,
            height=height,
            params=[k[0, 0], k[1, 1], k[0, 2], k[1, 2]],
            camera_id=frame + 1,
        )
        reconstruction.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(
            name=name, keypoints=xy[starts[frame] : starts[frame + 1]], camera_id=frame + 1, image_id=frame + 1
        )
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(extrinsic[frame, :, :3]), extrinsic[frame, :, 3])
        reconstruction.add_image_with_trivial_frame(image, pose)

    by_point = np.argsort(points, kind="stable")
    bounds = np.searchsorted(points[by_point], np.arange(len(xyz) + 1))
    for index in tqdm(range(len(xyz)), desc="COLMAP points", unit="point", mininterval=0.5):
        members = by_point[bounds[index] : bounds[index + 1]]
        if not len(members):
            continue
        track = pycolmap.Track()
        for member in members:
            track.add_element(int(frames[member]) + 1, int(point2d_index[member]))
        reconstruction.add_point3D(xyz[index], track, rgb[index])
    return reconstruction


def write_reconstruction(reconstruction, out_dir: Path) -> None:
    """cameras.bin, images.bin, points3D.bin (and, with pycolmap >= 3.12, rigs.bin and frames.bin) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    reconstruction.write_binary(str(out_dir))

"""COLMAP sparse models (cameras.bin, images.bin, points3D.bin) through pycolmap, in original-image pixels.

By default every frame gets its own PINHOLE camera (fx, fy, cx, cy) of the original image's size; SIMPLE_PINHOLE
(f, cx, cy) and SIMPLE_RADIAL (f, cx, cy, k = 0) are the other models, and one camera may be shared by all frames
(images of one size only). A frame's pose is the predicted camera-from-world, and every observation is a 2D point in
the original image (COLMAP's continuous convention; see vggt.predict.geometry). Image names are the input file names
(video frames: frame_000001.png ... in video_frames/).
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


CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL")  # the models build_reconstruction can fill


def check_camera_model(name: str) -> str:
    """The COLMAP camera model `name` (any case) in COLMAP's spelling, or a ValueError naming the supported ones."""
    model = name.upper()
    if model not in CAMERA_MODELS:
        raise ValueError(
            f"camera model {name!r} is not supported; choose one of {', '.join(CAMERA_MODELS)} (the models the "
            "predicted pinhole intrinsics fill; SIMPLE_RADIAL starts its distortion at 0)"
        )
    return model


def check_shared_camera(sizes: Sequence[tuple[int, int]], names: Sequence[str]) -> None:
    """A ValueError naming two files when the images (W, H) `sizes` cannot share one camera, i.e. differ in size."""
    for size, name in zip(sizes, names):
        if tuple(size) != tuple(sizes[0]):
            raise ValueError(
                f"a shared camera needs images of one size, but {names[0]} is {sizes[0][0]}x{sizes[0][1]} and {name} "
                f"is {size[0]}x{size[1]}; give each image its own camera (leave out the shared camera)"
            )


def camera_params(model: str, k: np.ndarray) -> list[float]:
    """The parameters of COLMAP camera `model` from an intrinsic matrix k [3, 3] (one focal length: the mean)."""
    fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
    if model == "PINHOLE":
        return [fx, fy, cx, cy]
    focal = (fx + fy) / 2
    return [focal, cx, cy] if model == "SIMPLE_PINHOLE" else [focal, cx, cy, 0.0]  # SIMPLE_RADIAL: k = 0


def build_reconstruction(
    extrinsic: np.ndarray,
    intrinsic: np.ndarray,
    registered: np.ndarray,
    transforms: Sequence[PreprocessTransform],
    names: Sequence[str],
    xyz: np.ndarray,
    rgb: np.ndarray,
    observations: Observations,
    camera_model: str = "PINHOLE",
    shared_camera: bool = False,
):  # -> pycolmap.Reconstruction
    """A reconstruction with one image (and, unless shared, one camera) per registered frame (ids = frame + 1) and
    the points with their tracks.

    extrinsic [S, 3, 4] camera-from-world, intrinsic [S, 3, 3] in original pixels, registered bool [S] (the frames
    with a usable camera; the others get no image, as in COLMAP), xyz [N, 3], rgb [N, 3] uint8. Points without any
    observation are left out. `camera_model` is one of CAMERA_MODELS; with `shared_camera` every image uses camera
    1, whose intrinsics are the mean of the registered frames' (their original images must be of one size).
    """
    if not registered[observations.frame].all():
        raise ValueError("an observation lies in a frame without a usable camera")  # a caller's bug, never the user's
    camera_model = check_camera_model(camera_model)
    if shared_camera:
        kept = np.flatnonzero(registered)
        check_shared_camera([transforms[i].original_size for i in kept], [names[i] for i in kept])
    pycolmap = import_pycolmap()
    reconstruction = pycolmap.Reconstruction()
    order = np.argsort(observations.frame, kind="stable")
    frames, xy, points = observations.frame[order], observations.xy[order], observations.point[order]
    starts = np.searchsorted(frames, np.arange(len(names) + 1))
    point2d_index = np.arange(len(frames)) - starts[frames]  # position of each observation within its image
    shared_k = intrinsic[registered].mean(axis=0) if shared_camera and registered.any() else None
    for frame, (transform, name) in enumerate(zip(transforms, names)):
        if not registered[frame]:
            continue
        camera_id = 1 if shared_camera else frame + 1
        if not reconstruction.exists_camera(camera_id):
            width, height = transform.original_size
            k = intrinsic[frame] if shared_k is None else shared_k
            camera = pycolmap.Camera(
                model=camera_model,
                width=width,
                height=height,
                params=camera_params(camera_model, k),
                camera_id=camera_id,
            )
            reconstruction.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(
            name=name, keypoints=xy[starts[frame] : starts[frame + 1]], camera_id=camera_id, image_id=frame + 1
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

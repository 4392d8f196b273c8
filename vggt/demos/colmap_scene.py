"""demo_colmap.py's work: the images of a scene folder (DIR/images) -> a COLMAP model in DIR/sparse, as upstream.

Upstream's recipe, kept: every image of DIR/images (sorted by name) is black-padded to a centred square and resized
to 1024 px, then bilinearly resized (align_corners=False) to 518 x 518 for the model. Without bundle adjustment the
depth points whose depth confidence reaches an absolute threshold (at most 100000 of them, drawn at random with the
seed) go into the model, each seen once at its own pixel, with one PINHOLE camera per image. With it, track-head
correspondences are bundle-adjusted (vggt.predict.bundle_adjust) with the chosen camera model, shared or not.
Cameras and observations are in original-image pixels, image names are the file names, and sparse/points.ply holds
the model's points.

What is ours: DIR/sparse is written as `vggt predict` writes its outputs (vggt.predict.ownership and staging): in a
staging folder that replaces DIR/sparse only when complete, and only a sparse/ an earlier run recorded in DIR's
manifest (vggt_predict_manifest.json) is replaced; a sparse/ of the user's stops the run before the model loads.
DIR/images is only read. A failed or interrupted run leaves DIR as it was.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from vggt.predict.bundle_adjust import BundleAdjustmentOptions, run_bundle_adjustment
from vggt.predict.colmap import (
    Observations,
    build_reconstruction,
    check_camera_model,
    check_shared_camera,
    import_pycolmap,
    write_reconstruction,
)
from vggt.predict.geometry import content_mask, model_index_to_original, original_intrinsics
from vggt.predict.inference import load_model, run_model
from vggt.predict.inputs import resolve_inputs
from vggt.predict.nofollow import exists, opened_directory
from vggt.predict.ownership import MANIFEST_NAME, check_output, read_manifest
from vggt.predict.pipeline import PredictSummary
from vggt.predict.ply import write_ply
from vggt.predict.points import PointCloud, confident_points
from vggt.predict.staging import recover_interrupted, staged_output
from vggt.runtime import configure_process, describe_dtype_choice, parse_dtype, resolve_device, seed_everything
from vggt.utils.load_fn import PreprocessTransform, load_and_preprocess_images_square

LOAD_SIZE = 1024  # upstream loads the padded squares at this size ...
MODEL_SIZE = 518  # ... and runs the model at this one
IMAGES = "images"
SPARSE = "sparse"
PLY = "points.ply"
FRAMES_CHUNK_SIZE = 8  # as vggt predict's default
MAX_POINTS = 100_000  # upstream's cap on the depth points of the model without BA
EDGE_TOLERANCE = 1e-3  # model pixels: a content edge this close to a pixel edge is on it (float32 coordinates)


@dataclass
class ColmapSceneOptions:
    """demo_colmap.py's flags (upstream's names and defaults) and the model options of `vggt predict`."""

    scene_dir: Path
    model: str = "facebook/VGGT-1B"
    config: str | dict[str, Any] | None = None  # preset name or config.json contents
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 42
    use_ba: bool = False
    max_reproj_error: float = 8.0  # pixels of the 1024 square, as upstream
    shared_camera: bool = False  # with use_ba only
    camera_type: str = "SIMPLE_PINHOLE"  # with use_ba only
    vis_thresh: float = 0.2
    query_frame_num: int = 8
    max_query_pts: int = 4096
    conf_thres_value: float = 5.0  # absolute depth confidence (without use_ba)


def square_transform(coords: Sequence[float]) -> PreprocessTransform:
    """The PreprocessTransform of a 518 x 518 model image, from its row of load_and_preprocess_images_square's
    original_coords: [x1, y1, x2, y2] (where the original lies in the 1024 square) and the original [W, H].

    The content box holds the model pixels wholly inside the original image; the ones the square's edge crosses,
    half black, count as padding."""
    ratio = MODEL_SIZE / LOAD_SIZE  # the bilinear resize (align_corners=False) scales pixel edges by this
    x1, y1, x2, y2 = (float(value) * ratio for value in coords[:4])
    width, height = float(coords[4]), float(coords[5])
    scale = ((x2 - x1) / width, (y2 - y1) / height)
    content = (
        math.ceil(x1 - EDGE_TOLERANCE),
        math.ceil(y1 - EDGE_TOLERANCE),
        math.floor(x2 + EDGE_TOLERANCE),
        math.floor(y2 + EDGE_TOLERANCE),
    )
    return PreprocessTransform((round(width), round(height)), scale, (x1, y1), content)


def load_square_images(paths: Sequence[Path]) -> tuple[torch.Tensor, list[PreprocessTransform]]:
    """Upstream's demo_colmap preprocessing: [S, 3, 518, 518] in [0, 1] and each image's transform. One image at a
    time, so only one 1024 square is held at once."""
    images, transforms = [], []
    for path in tqdm(paths, desc="loading images", unit="image"):
        square, coords = load_and_preprocess_images_square([path], LOAD_SIZE)
        images.append(F.interpolate(square, size=(MODEL_SIZE, MODEL_SIZE), mode="bilinear", align_corners=False)[0])
        transforms.append(square_transform(coords[0].tolist()))
    return torch.stack(images), transforms


def image_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """(W, H) of each image, from its header only."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except OSError as err:
            raise ValueError(f"cannot read {path} as an image ({err}); pass a PNG, JPEG or other PIL format") from err
    return sizes


def confident_depth_points(
    predictions: dict[str, np.ndarray], transforms: Sequence[PreprocessTransform], threshold: float
) -> PointCloud:
    """The depth points with depth_conf >= `threshold` (absolute), on image content, in frames with a usable camera,
    finite."""
    confidence = predictions["depth_conf"]
    shown = content_mask(transforms, *confidence.shape[1:]) & predictions["camera_valid"][:, None, None]
    shown &= confidence >= threshold
    return confident_points(predictions["world_points_from_depth"], confidence, predictions["images"], shown, 0.0)


def dense_reconstruction(
    predictions: dict[str, np.ndarray],
    transforms: Sequence[PreprocessTransform],
    names: Sequence[str],
    cloud: PointCloud,
):  # -> pycolmap.Reconstruction
    """The model without BA: the cloud's points, each seen once at its own pixel; one PINHOLE camera per image."""
    xy = np.zeros((len(cloud), 2))
    for index, transform in enumerate(transforms):
        mine = cloud.frame == index
        xy[mine] = model_index_to_original(cloud.pixel[mine], transform)
    return build_reconstruction(
        predictions["extrinsic"],
        original_intrinsics(predictions["intrinsic"], transforms),
        predictions["camera_valid"],
        transforms,
        names,
        cloud.xyz,
        cloud.rgb,
        Observations(point=np.arange(len(cloud)), frame=cloud.frame, xy=xy),
    )


def reconstruction_points(reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """xyz [N, 3] float32 and rgb [N, 3] uint8 of a reconstruction's points, by point id."""
    points = [reconstruction.points3D[point_id] for point_id in sorted(reconstruction.points3D)]
    xyz = np.array([point.xyz for point in points], dtype=np.float32).reshape(-1, 3)
    rgb = np.array([point.color for point in points], dtype=np.uint8).reshape(-1, 3)
    return xyz, rgb


def _check_options(options: ColmapSceneOptions) -> None:
    """Every flag problem that needs no image or model."""
    check_camera_model(options.camera_type)
    if not 0 <= options.seed < 2**32:
        raise ValueError(f"--seed must be from 0 to 2**32 - 1 (NumPy's range), got {options.seed}")
    if not math.isfinite(options.conf_thres_value):
        raise ValueError(f"--conf_thres_value must be a number, got {options.conf_thres_value}")
    if not options.max_reproj_error > 0:
        raise ValueError(
            f"--max_reproj_error must be positive (pixels of the 1024 square), got {options.max_reproj_error}"
        )
    if not 0 <= options.vis_thresh < 1:
        raise ValueError(f"--vis_thresh is a visibility from 0 to 1 (exclusive), got {options.vis_thresh}")
    if options.query_frame_num < 1 or options.max_query_pts < 1:
        raise ValueError("--query_frame_num and --max_query_pts must be at least 1")
    if not options.use_ba and (options.shared_camera or check_camera_model(options.camera_type) != "SIMPLE_PINHOLE"):
        warnings.warn(
            "--shared_camera and --camera_type apply with --use_ba only; without it every image gets its own PINHOLE "
            "camera (as upstream)",
            stacklevel=3,
        )


def _scene_images(scene_dir: Path) -> Path:
    """DIR/images, or a FileNotFoundError that says what the script expects."""
    if not scene_dir.is_dir():
        raise FileNotFoundError(f"--scene_dir {scene_dir} is not a folder; pass the scene folder that holds images/")
    images = scene_dir / IMAGES
    if not images.is_dir():
        raise FileNotFoundError(
            f"{images} is not a folder; demo_colmap.py reads the images of --scene_dir DIR from DIR/{IMAGES}/ "
            "(put them there, or run `vggt predict --images FOLDER --out DIR --export colmap`)"
        )
    return images


def _check_scene(scene_dir: Path, inputs: Sequence[Path]) -> list[str]:
    """The recorded entries this run replaces (an earlier run's sparse/), or a ValueError naming what stops it."""
    with opened_directory(scene_dir) as scene_fd:
        foreign = exists(scene_fd, SPARSE) and SPARSE not in read_manifest(scene_dir, scene_fd)
    if foreign:
        raise ValueError(
            f"{scene_dir / SPARSE} exists and demo_colmap.py did not write it (it is not recorded in "
            f"{scene_dir / MANIFEST_NAME}), so it is left alone: move it away (e.g. to {SPARSE}_before) and run again"
        )
    replaced = check_output(scene_dir, {SPARSE: "demo_colmap.py", MANIFEST_NAME: "always written"}, True, inputs)
    others = [name for name in replaced if name != SPARSE]
    if others:
        raise ValueError(
            f"{scene_dir} holds outputs of an earlier `vggt predict --out {scene_dir}` run ({', '.join(others)}); "
            "demo_colmap.py replaces an earlier run's outputs as a whole, so it would delete them and stops instead: "
            f"move them and {MANIFEST_NAME} out of {scene_dir} and run again"
        )
    return replaced


def _usable_cameras(predictions: dict[str, np.ndarray], names: Sequence[str]) -> None:
    """An error when no image has a usable camera, a warning naming those without one."""
    valid = predictions["camera_valid"]
    if not valid.any():
        raise ValueError(
            "no image got a usable camera from the model (a field of view that is not positive, or a non-finite "
            "entry), so there is no COLMAP model to write; are the weights trained for these images?"
        )
    if not valid.all():
        bad = [names[frame] for frame in np.flatnonzero(~valid)]
        warnings.warn(
            f"{len(bad)} of {len(valid)} images have no usable camera ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}); they are left out of {SPARSE}/, as COLMAP leaves out an image it "
            "cannot register",
            stacklevel=3,
        )


def reconstruct_scene(options: ColmapSceneOptions) -> PredictSummary:
    """Run demo_colmap.py: check the flags, DIR/images and DIR/sparse first, then model, images, predictions and
    the COLMAP model, written into a staging folder that becomes DIR/sparse only when complete."""
    _check_options(options)
    import_pycolmap()
    scene_dir = Path(options.scene_dir).expanduser()
    source = resolve_inputs([_scene_images(scene_dir)])
    camera_model = check_camera_model(options.camera_type)
    if options.use_ba and options.shared_camera:
        check_shared_camera(image_sizes(source.images), source.names)

    def check() -> list[str]:
        return _check_scene(scene_dir, source.images)

    recover_interrupted(scene_dir)
    check()
    seed_everything(options.seed)
    device = resolve_device(options.device)
    configure_process(device)
    dtype = parse_dtype(options.dtype, device)
    summary = PredictSummary(scene_dir)
    with staged_output(scene_dir, check) as stage:
        print(f"loading the model from {options.model}")
        model = load_model(options.model, options.config, autocast_dtype=dtype)
        if options.use_ba and model.track_head is None:
            raise ValueError("--use_ba needs the track head, and this model has none; run without --use_ba")
        images, transforms = load_square_images(source.images)
        precision = describe_dtype_choice(options.dtype, device)
        print(f"running VGGT on {len(images)} images of {MODEL_SIZE}x{MODEL_SIZE} ({device}, {precision})")
        predictions = run_model(model, images, device, dtype, FRAMES_CHUNK_SIZE)
        _usable_cameras(predictions, source.names)
        if options.use_ba:
            ba = BundleAdjustmentOptions(
                query_frames=options.query_frame_num,
                max_query_points=options.max_query_pts,
                vis_thresh=options.vis_thresh,
                max_error=options.max_reproj_error * MODEL_SIZE / LOAD_SIZE,  # upstream's pixels of the 1024 square
                camera_model=camera_model,
                shared_camera=options.shared_camera,
            )
            valid = content_mask(transforms, MODEL_SIZE, MODEL_SIZE)
            try:
                reconstruction, stats = run_bundle_adjustment(
                    model, images.to(device), predictions, valid, transforms, source.names, ba, dtype,
                    FRAMES_CHUNK_SIZE,
                )  # fmt: skip
            except ValueError as err:  # its advice names vggt predict's flags
                raise ValueError(
                    f"the bundle adjustment found nothing to adjust ({err}). In this script's flags: raise "
                    f"--max_reproj_error (now {options.max_reproj_error:g} px of the {LOAD_SIZE} square, "
                    f"{ba.max_error:g} model px), lower --vis_thresh, or raise --query_frame_num / --max_query_pts"
                ) from err
            detail = (
                f"bundle-adjusted: {stats.points_after} of {stats.tracks} tracked points kept, mean reprojection "
                f"error {stats.error_before * LOAD_SIZE / MODEL_SIZE:.2f} -> "
                f"{stats.error_after * LOAD_SIZE / MODEL_SIZE:.2f} px of the {LOAD_SIZE} square"
            )
            cameras = f"{'one shared' if options.shared_camera else 'one per image'}, {camera_model}"
        else:
            cloud = confident_depth_points(predictions, transforms, options.conf_thres_value)
            found = len(cloud)
            if found > MAX_POINTS:
                rng = np.random.default_rng(options.seed)
                cloud = cloud.subset(np.sort(rng.choice(found, MAX_POINTS, replace=False)))
            reconstruction = dense_reconstruction(predictions, transforms, source.names, cloud)
            detail = (
                f"{len(cloud)} of the {found} depth points with confidence >= {options.conf_thres_value:g}, each seen "
                "once"
            )
            cameras = "one per image, PINHOLE"
        write_reconstruction(reconstruction, stage / SPARSE)
        xyz, rgb = reconstruction_points(reconstruction)
        write_ply(stage / SPARSE / PLY, xyz, rgb)
        images_kept = reconstruction.num_images()
        summary.add(
            f"{SPARSE}/",
            f"COLMAP model: {images_kept} of {len(source.names)} images, cameras {cameras}, at the original "
            f"resolution; {detail}",
        )
        summary.add(f"{SPARSE}/{PLY}", f"its {len(xyz)} points, coloured (binary PLY)")
    summary.add(MANIFEST_NAME, f"what this run wrote: the next run replaces exactly that ({SPARSE}/)")
    return summary

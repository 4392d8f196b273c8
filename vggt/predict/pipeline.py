"""`vggt predict` end to end: inputs -> model -> predictions.npz and the chosen exports, in a staged directory."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggt.memory_plan import check_inference_memory, planning_config
from vggt.models.vggt import VGGT
from vggt.parallel.launch import is_helper_rank, process_count, process_device, scene_forward, serve_forward
from vggt.predict.bundle_adjust import BundleAdjustmentOptions, BundleAdjustmentStats, run_bundle_adjustment
from vggt.predict.cameras import describe_invalid_cameras
from vggt.predict.colmap import Observations, build_reconstruction, import_pycolmap, write_reconstruction
from vggt.predict.depth_png import write_depth_pngs
from vggt.predict.geometry import (
    content_mask,
    model_index_to_original,
    original_index_to_model,
    original_intrinsics,
    transform_arrays,
)
from vggt.predict.glb import import_trimesh, write_glb
from vggt.predict.inference import load_model, run_model
from vggt.predict.inputs import InputSource, resolve_inputs
from vggt.predict.ownership import MANIFEST_NAME, check_output
from vggt.predict.ply import write_ply
from vggt.predict.points import PointCloud, confident_points
from vggt.predict.render import write_previews
from vggt.predict.staging import recover_interrupted, staged_output
from vggt.predict.video import extract_frames, import_av
from vggt.runtime import configure_process, describe_dtype_choice, parse_dtype
from vggt.utils.load_fn import (
    PATCH_SIZE,
    PreprocessTransform,
    load_and_preprocess_images_with_transforms,
    preprocessed_shape,
)

EXPORTS = ("depth", "ply", "glb", "colmap", "preview")
CAMERA_EXPORTS = ("ply", "glb", "colmap")  # skipped when no frame has a usable camera (preview keeps frames.png)
EXPORT_ENTRIES = {  # what each export writes into --out
    "depth": ("depth", "confidence"),
    "ply": ("points.ply",),
    "glb": ("scene.glb",),
    "colmap": ("sparse",),
    "preview": ("preview",),
}
PREDICTIONS = "predictions.npz"
VIDEO_FRAMES = "video_frames"  # not images/: that is where COLMAP users keep their own photos
SUBSAMPLE_SEED = 0  # the COLMAP point subsample is reproducible


def parse_exports(text: str) -> tuple[str, ...]:
    """--export: "ply,glb" -> ("ply", "glb"); "all" is every format and "none" only predictions.npz."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return EXPORTS
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in EXPORTS]
    if unknown:
        raise ValueError(
            f"unknown --export format {unknown[0]!r}; choose from {', '.join(EXPORTS)} (comma-separated), all or none"
        )
    return tuple(dict.fromkeys(names))


@dataclass
class PredictOptions:
    images: Sequence[str | Path]  # a folder, image files or one video
    out: Path
    model: str = "facebook/VGGT-1B"
    config: str | dict[str, Any] | None = None  # preset name or config.json contents
    device: str = "auto"
    dtype: str = "auto"
    mode: str = "crop"
    resolution: int = 518
    frames_chunk_size: int = 8
    fps: float = 1.0
    query_points: Path | None = None
    conf_threshold: float = 50.0  # percentile
    exports: tuple[str, ...] = EXPORTS
    max_colmap_points: int = 100_000
    ba: BundleAdjustmentOptions | None = None
    overwrite: bool = False
    strict: bool = False  # a frame without a usable camera is an error instead of a warning
    memory_check: bool = True  # stop before loading when the memory estimate exceeds what is free
    heads_autocast: bool = False  # camera, depth and point heads in the autocast dtype too
    offload: bool = False  # kept layers and dense outputs in host memory (VGGT.set_host_offload)


@dataclass
class PredictSummary:
    """What was written: (path relative to the output directory, description) pairs, in writing order."""

    out: Path
    written: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, description: str) -> None:
        self.written.append((name, description))

    def describe(self) -> str:
        width = max(len(name) for name, _ in self.written)
        lines = [f"wrote {self.out}/"] + [f"  {name:<{width}}  {text}" for name, text in self.written]
        return "\n".join(lines)


@dataclass
class Prediction:
    """Everything the exports read: the predictions.npz arrays and what they were computed from."""

    arrays: dict[str, np.ndarray]  # the contents of predictions.npz
    transforms: list[PreprocessTransform]
    names: list[str]
    valid: np.ndarray  # bool [S, H, W], non-padding pixels
    cloud: PointCloud  # confidence-filtered points of the frames with a usable camera
    adjusted: tuple[Any, BundleAdjustmentStats] | None = None  # --ba: (pycolmap.Reconstruction, stats)

    @property
    def camera_valid(self) -> np.ndarray:
        """bool [S]: the frames whose camera the exports may use (vggt.predict.cameras)."""
        return self.arrays["camera_valid"]


def read_query_points(path: Path) -> np.ndarray:
    """[N, 2] (x, y) pixels of the first image from a .npy array or a text file with one "x y" or "x,y" per line."""
    try:
        if path.suffix == ".npy":
            points = np.load(path, allow_pickle=False)
        else:
            points = np.loadtxt(path.read_text().replace(",", " ").splitlines(), ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read --query-points {path} ({err}); pass a .npy [N, 2] or lines of 'x y'") from err
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or not len(points) or not np.isfinite(points).all():
        raise ValueError(f"--query-points {path} must hold N >= 1 finite (x, y) rows, got shape {points.shape}")
    return points


def _query_points_in_model(points: np.ndarray, transform: PreprocessTransform, source: Path) -> torch.Tensor:
    """Original pixel indices of frame 0 -> model pixel indices, refusing points the model does not see."""
    model_points = original_index_to_model(points, transform)
    x0, y0, x1, y1 = transform.content
    outside = ~(
        (model_points[:, 0] >= x0 - 0.5)
        & (model_points[:, 0] <= x1 - 0.5)
        & (model_points[:, 1] >= y0 - 0.5)
        & (model_points[:, 1] <= y1 - 0.5)
    )
    if outside.any():
        raise ValueError(
            f"--query-points {source}: point {points[outside][0].tolist()} lies outside the part of the first image "
            "the model sees (crop mode cuts the top and bottom of tall images; try --mode pad)"
        )
    return torch.from_numpy(model_points.astype(np.float32))


def _check_options(options: PredictOptions) -> None:
    """Every argument problem that needs no model or image, raised before anything is loaded or written."""
    if "glb" in options.exports:
        import_trimesh()
    if "colmap" in options.exports or options.ba is not None:
        import_pycolmap()
    if options.ba is not None and "colmap" not in options.exports:
        raise ValueError("--ba refines the COLMAP export; add colmap to --export")
    if not 0 <= options.conf_threshold <= 100:
        raise ValueError(f"--conf-threshold is a percentile from 0 to 100, got {options.conf_threshold}")
    if options.frames_chunk_size < 1 or options.max_colmap_points < 1:
        raise ValueError("--frames-chunk-size and --max-colmap-points must be at least 1")
    if options.fps <= 0:
        raise ValueError(f"--fps must be positive, got {options.fps}")
    if options.resolution <= 0 or options.resolution % PATCH_SIZE:
        raise ValueError(
            f"--resolution must be a positive multiple of {PATCH_SIZE}, got {options.resolution}; e.g. 518"
        )


def _planned_entries(options: PredictOptions, source: InputSource) -> dict[str, str]:
    """Every entry this run may write into --out -> what writes it (for the conflict message)."""
    planned = {PREDICTIONS: "always written", MANIFEST_NAME: "always written"}
    if source.video is not None:
        planned[VIDEO_FRAMES] = f"the frames of {source.video.name}"
    for export in options.exports:
        planned.update(dict.fromkeys(EXPORT_ENTRIES[export], f"--export {export}"))
    return planned


def _input_files(options: PredictOptions, source: InputSource) -> list[Path]:
    """The files the run reads, which no output may replace."""
    files = [*source.images, *([source.video] if source.video is not None else [])]
    return files + ([options.query_points] if options.query_points is not None else [])


def _dense_reconstruction(prediction: Prediction, limit: int):  # -> pycolmap.Reconstruction
    """The no-BA COLMAP model: up to `limit` cloud points, each seen once, at its own pixel of its own frame."""
    cloud = prediction.cloud
    if len(cloud) > limit:
        cloud = cloud.subset(np.sort(np.random.default_rng(SUBSAMPLE_SEED).choice(len(cloud), limit, replace=False)))
    xy = np.zeros((len(cloud), 2))
    for index, transform in enumerate(prediction.transforms):
        mine = cloud.frame == index
        xy[mine] = model_index_to_original(cloud.pixel[mine], transform)
    arrays = prediction.arrays
    return build_reconstruction(
        arrays["extrinsic"],
        arrays["intrinsic_original"],
        prediction.camera_valid,
        prediction.transforms,
        prediction.names,
        cloud.xyz,
        cloud.rgb,
        Observations(point=np.arange(len(cloud)), frame=cloud.frame, xy=xy),
    )


def _report_invalid_cameras(arrays: dict[str, np.ndarray], names: Sequence[str], strict: bool) -> None:
    """One warning naming the frames without a usable camera, or with --strict an error."""
    if arrays["camera_valid"].all():
        return
    message = describe_invalid_cameras(
        arrays["camera_valid"], arrays["pose_enc"], arrays["extrinsic"], arrays["intrinsic"], names
    )
    if strict:
        raise ValueError(f"{message} (without --strict the outputs that need no camera are written)")
    warnings.warn(f"{message} (--strict makes this an error)", stacklevel=3)


def predict(options: PredictOptions, model: VGGT | None = None) -> PredictSummary | None:
    """Run `vggt predict`: check everything cheap first (arguments, inputs, what --out holds), then model, images,
    predictions and exports, all written into a staging directory whose entries move into options.out only when
    complete (see staging.py), replacing nothing but an earlier run's recorded outputs. Helper ranks of a
    multi-process run compute their frames' share, touch nothing in --out and return None.

    `model`: one already loaded by `load_model` for these options (a server keeps it across calls); None loads
    options.model."""
    _check_options(options)
    source = resolve_inputs(options.images)

    def check() -> list[str]:
        inputs = _input_files(options, source)
        return check_output(options.out, _planned_entries(options, source), options.overwrite, inputs)

    if not is_helper_rank():  # rank 0 alone owns --out
        recover_interrupted(options.out)
        check()
    if source.video is not None:
        import_av()
    queries = None if options.query_points is None else read_query_points(options.query_points)
    device = process_device(options.device)
    configure_process(device)
    dtype = parse_dtype(options.dtype, device)

    resident = model is not None and next(model.parameters()).device == device  # its weights take no more memory

    def check_memory(paths: Sequence[Path]) -> None:
        """Print the memory estimate for these frames at the size preprocessing gives them (from their headers, on
        rank 0); too little memory stops the run (MemoryPlanError) unless disabled."""
        config = planning_config(options.config, options.model)
        height, width = preprocessed_shape(paths, options.mode, options.resolution)
        plan = check_inference_memory(
            config, len(paths), height, width, device, dtype, options.frames_chunk_size, process_count(),
            0 if queries is None else len(queries), enforce=options.memory_check, weights_resident=resident,
            offload=options.offload,
        )  # fmt: skip
        if not is_helper_rank():
            print(plan)

    def load() -> VGGT:
        loaded = model
        if loaded is None:
            if not is_helper_rank():
                print(f"loading the model from {options.model}")
            loaded = load_model(options.model, options.config, options.heads_autocast, dtype)
        if queries is not None and loaded.track_head is None:
            raise ValueError("--query-points needs the track head, and this model has none")
        loaded.set_host_offload(options.offload)
        return loaded

    if source.video is None:  # a video's frames are counted once extracted (below, on rank 0)
        check_memory(source.images)
    if is_helper_rank():  # sequence parallelism: this rank computes its frames, rank 0 reads and writes
        serve_forward(load(), device, dtype, options.frames_chunk_size)
        return None
    summary = PredictSummary(options.out)

    with staged_output(options.out, check) as stage:
        paths, names = source.images, source.names
        if source.video is not None:
            paths = extract_frames(source.video, options.fps, stage / VIDEO_FRAMES)
            names = [path.name for path in paths]
            summary.add(f"{VIDEO_FRAMES}/", f"{len(paths)} frames of {source.video.name}, {options.fps:g} per second")
            check_memory(paths)
        network = load()
        images, transforms = load_and_preprocess_images_with_transforms(
            paths, options.mode, options.resolution, progress=True
        )
        query_tensor = None if queries is None else _query_points_in_model(queries, transforms[0], options.query_points)
        precision = describe_dtype_choice(options.dtype, device)
        print(f"running VGGT on {len(images)} frames of {images.shape[-2]}x{images.shape[-1]} ({device}, {precision})")
        arrays = run_model(network, images, device, dtype, options.frames_chunk_size, query_tensor, scene_forward())
        _report_invalid_cameras(arrays, names, options.strict)
        arrays.update(_original_geometry(arrays, transforms, names))
        if query_tensor is not None:
            arrays["query_points"] = query_tensor.numpy()  # model pixels of frame 0
        np.savez(stage / PREDICTIONS, **arrays)
        summary.add(PREDICTIONS, f"{len(images)} frames: cameras, depth, points, confidences")

        valid = content_mask(transforms, *images.shape[-2:])
        seen_by_a_camera = valid & arrays["camera_valid"][:, None, None]
        cloud = confident_points(
            arrays["world_points_from_depth"],
            arrays["depth_conf"],
            arrays["images"],
            seen_by_a_camera,
            options.conf_threshold,
        )
        prediction = Prediction(arrays, transforms, names, valid, cloud)
        if options.ba is not None and prediction.camera_valid.any():
            prediction.adjusted = run_bundle_adjustment(
                network,
                images.to(device),
                arrays,
                valid,
                transforms,
                names,
                options.ba,
                dtype,
                options.frames_chunk_size,
            )
        for export in options.exports:
            if export in CAMERA_EXPORTS and not prediction.camera_valid.any():
                continue  # the warning above said so
            WRITERS[export](stage, prediction, options, summary)
    summary.add(MANIFEST_NAME, "what this run wrote: a later --overwrite replaces exactly that")
    return summary


def _original_geometry(
    arrays: dict[str, np.ndarray], transforms: Sequence[PreprocessTransform], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The predictions.npz keys that relate the model's pixels to the original images."""
    extra = transform_arrays(transforms)
    extra["image_names"] = np.array(names)
    extra["intrinsic_original"] = original_intrinsics(arrays["intrinsic"], transforms)
    if "track" in arrays:
        extra["track_original"] = np.stack(  # pixel indices of each original image, like --query-points
            [model_index_to_original(arrays["track"][f], t) - 0.5 for f, t in enumerate(transforms)]
        )
    return extra


def _write_depth(stage: Path, prediction: Prediction, options: PredictOptions, summary: PredictSummary) -> None:
    arrays, frames = prediction.arrays, len(prediction.names)
    write_depth_pngs(stage, arrays["depth"][..., 0], arrays["depth_conf"], prediction.valid, prediction.names)
    summary.add("depth/", f"{frames} colour-mapped depth PNGs (inverse depth: near is bright)")
    summary.add("confidence/", f"{frames} colour-mapped depth-confidence PNGs (log scale)")


def _write_ply(stage: Path, prediction: Prediction, options: PredictOptions, summary: PredictSummary) -> None:
    write_ply(stage / "points.ply", prediction.cloud.xyz, prediction.cloud.rgb)
    kept = f"confidence >= {options.conf_threshold:g}th percentile"
    summary.add("points.ply", f"{len(prediction.cloud)} coloured points ({kept})")


def _write_glb(stage: Path, prediction: Prediction, options: PredictOptions, summary: PredictSummary) -> None:
    arrays, cameras = prediction.arrays, int(prediction.camera_valid.sum())
    write_glb(
        stage / "scene.glb",
        prediction.cloud,
        arrays["extrinsic"],
        arrays["intrinsic"],
        prediction.camera_valid,
        prediction.valid.shape[1:],
    )
    summary.add("scene.glb", f"{len(prediction.cloud)} points, {cameras} camera frustums (glTF y-up)")


def _write_colmap(stage: Path, prediction: Prediction, options: PredictOptions, summary: PredictSummary) -> None:
    if prediction.adjusted is None:
        reconstruction = _dense_reconstruction(prediction, options.max_colmap_points)
        detail = f"{reconstruction.num_points3D()} depth points, each seen once"
    else:
        reconstruction, stats = prediction.adjusted
        detail = (
            f"bundle-adjusted, {stats.points_after} of {stats.tracks} tracked points kept, mean reprojection "
            f"error {stats.error_before:.2f} -> {stats.error_after:.2f} model px"
        )
    write_reconstruction(reconstruction, stage / "sparse")
    cameras = f"{int(prediction.camera_valid.sum())} of {len(prediction.names)} cameras"
    summary.add("sparse/", f"COLMAP model, {cameras} at original resolution; {detail}")


def _write_preview(stage: Path, prediction: Prediction, options: PredictOptions, summary: PredictSummary) -> None:
    written = write_previews(stage / "preview", prediction.cloud, prediction.arrays, prediction.valid)
    pictures = {
        "points.png": "points.png (point cloud and cameras)",
        "frames.png": "frames.png (input | depth | confidence)",
    }
    summary.add("preview/", ", ".join(pictures[path.name] for path in written))


WRITERS = {
    "depth": _write_depth,
    "ply": _write_ply,
    "glb": _write_glb,
    "colmap": _write_colmap,
    "preview": _write_preview,
}

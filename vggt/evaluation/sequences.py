"""Which frames are evaluated: the published Co3D selection rules, and the same draw on the custom layout.

Both selections draw from the global NumPy / Python random state, which the caller seeds once
(`vggt.runtime.seed_everything`) before the first category, as the published protocol does; a skipped
sequence draws nothing, so a run's frames depend only on the settings and the annotation files.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from vggt.evaluation.host import HOST_DTYPE
from vggt.evaluation.pose import co3d_opencv_extrinsics
from vggt.scenes.co3d_files import HOW_TO_GET_ANNOTATIONS, depth_paths, read_annotations, read_masked_depth
from vggt.scenes.custom_layout import CustomFrame, read_depth_file, read_scenes
from vggt.scenes.frame import DatasetError

MAX_TRANSLATION_SUM = 1e5  # a sequence with a frame whose PyTorch3D T[0] + T[1] + T[2] exceeds this is skipped
FAST_EVAL_SEQUENCES = 10  # --fast-eval: sequences drawn per category that has at least this many
CO3D_TEST_FORMAT = "PyTorch3D R, T (evaluation preprocessing)"
CO3D_TRAINING_FORMAT = "OpenCV extri (training annotations)"


@dataclass
class EvalSequence:
    """The drawn frames of one sequence, in drawn order (the first is the reference frame)."""

    group: str  # the Co3D category, or the custom scene
    name: str
    image_paths: list[Path]
    extrinsics: np.ndarray  # [K, 3, 4] ground-truth OpenCV camera-from-world, host double precision
    depth_readers: list[Callable[[], np.ndarray]] | None = None  # ground-truth depth [H, W] per frame (0 invalid)
    intrinsics: np.ndarray | None = None  # [K, 3, 3] ground-truth pixel K of the files, where the annotations have it


@dataclass
class Selection:
    sequences: list[EvalSequence] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # group -> "sequence: reason" lines
    camera_formats: set[str] = field(default_factory=set)  # CO3D_TEST_FORMAT and / or CO3D_TRAINING_FORMAT
    non_finite: list[str] = field(default_factory=list)  # "group/sequence" left out for a non-finite camera


def _co3d_intrinsics(frames: list[Any], ids: np.ndarray) -> np.ndarray | None:
    """[K, 3, 3] "intri" of the drawn frames (training annotations), or None where a frame lacks a usable one."""
    try:
        intrinsics = np.stack([np.array(frames[i]["intri"], dtype=HOST_DTYPE) for i in ids])
    except (KeyError, TypeError, ValueError):
        return None
    return intrinsics if intrinsics.shape[1:] == (3, 3) and np.isfinite(intrinsics).all() else None


def _co3d_camera(frame: Any, where: str) -> tuple[np.ndarray, float, str]:
    """(OpenCV extrinsic [3, 4], PyTorch3D T[0] + T[1] + T[2], format) of a test ("R", "T") or training frame."""
    try:
        if "R" in frame and "T" in frame:
            translation = np.array(frame["T"], dtype=HOST_DTYPE)
            return co3d_opencv_extrinsics(frame["R"], translation), float(translation.sum()), CO3D_TEST_FORMAT
        extrinsic = np.array(frame["extri"], dtype=HOST_DTYPE)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(
            f'{where}: a frame needs a camera, either PyTorch3D "R" (3x3) and "T" (3) or OpenCV "extri" (3x4) ({err})'
        ) from err
    if extrinsic.shape != (3, 4):
        raise DatasetError(f'{where}: "extri" must be 3x4, got shape {list(extrinsic.shape)}')
    translation = extrinsic[:, 3] * [-1.0, -1.0, 1.0]  # the PyTorch3D T the skipping rule is stated on
    return extrinsic, float(translation.sum()), CO3D_TRAINING_FORMAT


def _co3d_filepath(frame: Any, where: str) -> str:
    """The frame's image path relative to the Co3D root, or a DatasetError naming the file, sequence and frame."""
    filepath = frame.get("filepath") if isinstance(frame, dict) else None
    if not isinstance(filepath, str) or not filepath:
        raise DatasetError(
            f'{where}: no "filepath" (the image path relative to the Co3D root, e.g. '
            '"apple/110_13051_23361/images/frame000001.jpg"); regenerate the annotation file'
        )
    return filepath


def _check_counts(num_frames: int, min_frames: int) -> None:
    if num_frames < 2:
        raise ValueError(f"--num-frames must be at least 2 (pose errors compare frame pairs), got {num_frames}")
    if min_frames < num_frames:
        raise ValueError(f"--min-frames ({min_frames}) must be at least --num-frames ({num_frames})")


def select_co3d(
    co3d_dir: Path,
    anno_dir: Path,
    categories: Sequence[str],
    num_frames: int,
    min_frames: int,
    fast_eval: bool,
) -> Selection:
    """Per category in list order, sequences in sorted order: skip short or far-translated sequences, draw frames.

    Annotation files are `{anno_dir}/{category}_test.jgz`; frame paths are relative to co3d_dir.
    """
    _check_counts(num_frames, min_frames)
    paths = {category: anno_dir / f"{category}_test.jgz" for category in categories}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"no test annotations for {len(missing)} of {len(paths)} categories, e.g. {missing[0]}; pass the "
            f"categories you have with --categories, or get the files: {HOW_TO_GET_ANNOTATIONS}"
        )
    selection = Selection()
    for category, path in paths.items():
        annotations = read_annotations(path)
        if not isinstance(annotations, dict):
            raise DatasetError(f"{path} holds a JSON {type(annotations).__name__}, expected {{sequence: [frames]}}")
        names = sorted(annotations)
        if fast_eval and len(names) >= FAST_EVAL_SEQUENCES:
            names = sorted(random.sample(names, FAST_EVAL_SEQUENCES))
        skipped = selection.skipped.setdefault(category, [])
        for name in names:
            frames = annotations[name]
            if not isinstance(frames, list) or not frames:
                raise DatasetError(f"{path}: sequence {name!r} must be a non-empty list of frames")
            where = [f"{path} sequence {name!r} frame {i}" for i in range(len(frames))]
            cameras = [_co3d_camera(frame, at) for frame, at in zip(frames, where)]
            filepaths = [_co3d_filepath(frame, at) for frame, at in zip(frames, where)]
            if len(frames) < min_frames:
                skipped.append(f"{name}: {len(frames)} frames, fewer than {min_frames}")
                continue
            selection.camera_formats.update(camera_format for _, _, camera_format in cameras)
            bad = [i for i, (extrinsic, _, _) in enumerate(cameras) if not np.isfinite(extrinsic).all()]
            if bad:  # the published code keeps such a sequence and scores NaN; no metric can be computed from it
                skipped.append(f"{name}: the ground-truth camera of frame {bad[0]} holds non-finite numbers")
                selection.non_finite.append(f"{category}/{name}")
                warnings.warn(
                    f"{path}: sequence {name!r} left out, the ground-truth camera of frame {bad[0]} holds non-finite "
                    "numbers",
                    stacklevel=2,
                )
                continue
            if any(translation_sum > MAX_TRANSLATION_SUM for _, translation_sum, _ in cameras):
                skipped.append(f"{name}: a camera translation sum exceeds {MAX_TRANSLATION_SUM:g}")
                continue
            ids = np.random.choice(len(frames), num_frames, replace=False)
            drawn = [filepaths[i] for i in ids]
            depth_files = [depth_paths(co3d_dir, filepath) for filepath in drawn]
            has_depth = all(depth.is_file() for depth, _ in depth_files)
            selection.sequences.append(
                EvalSequence(
                    group=category,
                    name=name,
                    image_paths=[co3d_dir / PurePosixPath(filepath) for filepath in drawn],
                    extrinsics=np.stack([cameras[i][0] for i in ids]),
                    depth_readers=[functools.partial(read_masked_depth, *files) for files in depth_files]
                    if has_depth
                    else None,
                    intrinsics=_co3d_intrinsics(frames, ids),
                )
            )
    return selection


def _custom_depth(frame: CustomFrame) -> np.ndarray:
    return read_depth_file(frame.depth_path) * np.float32(frame.depth_scale)


def select_custom(root: Path, num_frames: int, min_frames: int) -> Selection:
    """Every scene of the custom layout (vggt.scenes.custom_layout) in name order, `num_frames` drawn per scene."""
    _check_counts(num_frames, min_frames)
    selection = Selection()
    for name, frames in read_scenes(root, min_frames):  # shorter scenes are dropped there, with a warning
        ids = np.random.choice(len(frames), num_frames, replace=False)
        chosen = [frames[i] for i in ids]
        selection.sequences.append(
            EvalSequence(
                group=name,
                name=name,
                image_paths=[frame.image_path for frame in chosen],
                extrinsics=np.stack([np.array(frame.extrinsic, dtype=HOST_DTYPE) for frame in chosen]),
                depth_readers=[functools.partial(_custom_depth, frame) for frame in chosen],
                intrinsics=np.stack([np.array(frame.intrinsic, dtype=HOST_DTYPE) for frame in chosen]),
            )
        )
    return selection

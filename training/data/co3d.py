"""Co3D v2 in VGGT's preprocessed annotation format as a training dataset, and the writers of its files.

The readers of these files (shared with evaluation) are in vggt.scenes.co3d_files.

Annotation files are `{annotation_dir}/{category}_{split}.jgz`: gzip-compressed JSON
`{sequence_name: [{"filepath": str, "extri": 3x4, "intri": 3x3}, ...]}` with `filepath` relative to
the Co3D root (`<category>/<sequence>/images/<frame>.jpg`), `extri` the OpenCV camera-from-world
matrix and `intri` the pixel K. Depth lives next to the images, in the Co3D v2 layout:
`<category>/<sequence>/depths/<frame>.jpg.geometric.png` (a 16-bit PNG whose uint16 values are
float16 bit patterns) with a valid-depth mask in `<category>/<sequence>/depth_masks/<frame>.png`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from training.data.augment import AugmentConfig
from training.data.base import DatasetError, Frame, MultiViewDataset
from training.data.synthetic import encode_annotations, encode_depth_png
from vggt.scenes.co3d_files import (
    HOW_TO_GET_ANNOTATIONS,
    SEEN_CATEGORIES,
    depth_paths,
    read_annotations,
    read_masked_depth,
)

logger = logging.getLogger(__name__)

FRAME_KEYS = ("filepath", "extri", "intri")


# depth PNGs ---------------------------------------------------------------------------------------
def write_depth_png(path: str | Path, depth: np.ndarray) -> None:
    """Write depth [H, W] in Co3D's encoding (see encode_depth_png)."""
    data = encode_depth_png(depth, path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)


def clip_far_depths(depth: np.ndarray, percentile: float) -> np.ndarray:
    """Zero the depths above the `percentile`-th percentile of the valid (> 0) depths of [H, W].

    Upstream calls `np.nanpercentile` on the whole map, where invalid pixels are 0 rather than NaN, so
    the threshold drifts with mask coverage (half the map masked turns the 98th percentile into the
    96th of the valid depths). We take the percentile of the valid depths only (linear interpolation,
    i.e. nanpercentile with invalid pixels as NaN), so it always removes the same share of real depths.
    """
    valid = depth > 0
    if not valid.any():
        return depth
    threshold = np.percentile(depth[valid], percentile)
    if threshold > 0:
        depth = np.where(depth > threshold, np.float32(0), depth)
    return depth


# annotation files -------------------------------------------------------------------------------
def write_annotations(path: str | Path, sequences: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Write an annotation file (.jgz, see encode_annotations)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(encode_annotations(sequences))


@dataclass(frozen=True)
class _Sequence:
    """One kept sequence as compact arrays (Frame objects for a million frames would cost far more memory)."""

    category: str
    name: str
    filepaths: tuple[str, ...]
    extrinsics: np.ndarray  # [N, 3, 4]
    intrinsics: np.ndarray  # [N, 3, 3]


def _check_frames(path: Path, sequence: str, frames: Any) -> None:
    """Every frame is a dict with the three keys and an `<...>/images/<file>` filepath."""
    if not isinstance(frames, list):
        raise DatasetError(f"{path}: sequence {sequence!r} is a {type(frames).__name__}, expected a list of frames")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DatasetError(f"{path}: sequence {sequence!r} frame {i} is not a JSON object")
        for key in FRAME_KEYS:
            if key not in frame:
                raise DatasetError(
                    f"{path}: sequence {sequence!r} frame {i} has no {key!r} key; every frame needs "
                    f"'filepath', 'extri' (3x4 OpenCV camera-from-world) and 'intri' (3x3 pixels)"
                )
        if not isinstance(frame["filepath"], str) or PurePosixPath(frame["filepath"]).parent.name != "images":
            raise DatasetError(
                f"{path}: sequence {sequence!r} frame {i} filepath {frame['filepath']!r} is not of the form "
                f"<category>/<sequence>/images/<frame>.jpg (depths and masks are found from it)"
            )


def _matrix_stack(path: Path, sequence: str, frames: list[dict], key: str, shape: tuple[int, int]) -> np.ndarray:
    """float32 [N, *shape] of `frame[key]`, or a DatasetError naming the first bad frame."""
    stack = _finite_matrix([frame[key] for frame in frames], (len(frames), *shape))
    if stack is not None:
        return stack
    bad = next(i for i, frame in enumerate(frames) if _finite_matrix(frame[key], shape) is None)
    raise DatasetError(
        f"{path}: sequence {sequence!r} frame {bad} {key!r} must be a finite {shape[0]}x{shape[1]} matrix"
    )


def _finite_matrix(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """`value` as a finite float32 array of `shape`, else None."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):  # ragged or non-numeric
        return None
    return array if array.shape == shape and np.isfinite(array).all() else None


class Co3dDataset(MultiViewDataset):
    """Co3D sequences from VGGT's annotation files; `dataset[SampleRequest(...)]` gives a training sample."""

    def __init__(
        self,
        co3d_dir: str | Path,
        annotation_dir: str | Path,
        split: str = "train",
        categories: Sequence[str] | None = None,
        min_num_images: int = 24,
        img_size: int = 518,
        patch_size: int = 14,
        augment: AugmentConfig | None = None,
        track_num: int = 0,
        allow_duplicate_img: bool = True,
        depth_percentile_clip: float | None = 98.0,
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            augment=augment,
            track_num=track_num,
            allow_duplicate_img=allow_duplicate_img,
        )
        self.co3d_dir = Path(co3d_dir)
        self.annotation_dir = Path(annotation_dir)
        self.split = split
        self.min_num_images = min_num_images
        self.depth_percentile_clip = depth_percentile_clip
        if not self.co3d_dir.is_dir():
            raise DatasetError(f"Co3D directory {self.co3d_dir} does not exist; pass the Co3D v2 root as co3d_dir")
        categories = SEEN_CATEGORIES if categories is None else tuple(categories)
        self.sequences = self._load(categories)
        self.sequences_without_masks = [
            f"{sequence.category}/{sequence.name}"
            for sequence in self.sequences
            if not depth_paths(self.co3d_dir, sequence.filepaths[0])[1].parent.is_dir()
        ]

    def _annotation_files(self, categories: Sequence[str]) -> list[tuple[str, Path]]:
        """(category, file) for the requested categories whose annotation file exists; warns about the rest."""
        if not categories:
            raise DatasetError("categories is empty; name at least one Co3D category or pass None for all 41")
        paths = {category: self.annotation_dir / f"{category}_{self.split}.jgz" for category in categories}
        missing = [category for category, path in paths.items() if not path.is_file()]
        if len(missing) == len(paths):
            names = [path.name for path in paths.values()]
            examples = ", ".join(names[:3]) + (f", ... ({len(names)} files)" if len(names) > 3 else "")
            state = "has none of the requested files" if self.annotation_dir.is_dir() else "does not exist"
            raise DatasetError(
                f"Co3D annotation directory {self.annotation_dir} {state}: expected {examples}; "
                + HOW_TO_GET_ANNOTATIONS
            )
        for category in missing:
            logger.warning("Co3D: skipping category %s, %s does not exist", category, paths[category])
        return [(category, path) for category, path in paths.items() if category not in missing]

    def _load(self, categories: Sequence[str]) -> list[_Sequence]:
        """Kept sequences of every annotation file, in file then sequence order."""
        kept: list[_Sequence] = []
        dropped = 0
        for category, path in self._annotation_files(categories):
            content = read_annotations(path)
            if not isinstance(content, dict):
                raise DatasetError(f"{path} holds a JSON {type(content).__name__}, expected {{sequence: [frames]}}")
            for name, frames in content.items():
                _check_frames(path, name, frames)
                if len(frames) < self.min_num_images:
                    dropped += 1
                    continue
                kept.append(
                    _Sequence(
                        category=category,
                        name=name,
                        filepaths=tuple(frame["filepath"] for frame in frames),
                        extrinsics=_matrix_stack(path, name, frames, "extri", (3, 4)),
                        intrinsics=_matrix_stack(path, name, frames, "intri", (3, 3)),
                    )
                )
        logger.info(
            "Co3D %s: %d sequences kept, %d dropped with fewer than %d frames",
            self.split, len(kept), dropped, self.min_num_images,
        )  # fmt: skip
        if not kept:
            raise DatasetError(
                f"no Co3D {self.split} sequence in {self.annotation_dir} has at least min_num_images="
                f"{self.min_num_images} frames ({dropped} shorter ones dropped); lower min_num_images or add data"
            )
        return kept

    def __len__(self) -> int:
        return len(self.sequences)

    def sequence_name(self, index: int) -> str:
        sequence = self.sequences[index]
        return f"co3d_{sequence.category}_{sequence.name}"

    def build_warnings(self) -> list[str]:
        """Sequences without a depth_masks folder train on unmasked depth (checked per folder at build)."""
        missing = self.sequences_without_masks
        if not missing:
            return []
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
        return [
            f"Co3D {self.split}: {len(missing)} sequence(s) have no depth_masks/ folder, so their depth maps are used "
            f"unmasked (upstream masks them): {shown}"
        ]

    def sequence_frames(self, index: int) -> list[Frame]:
        sequence = self.sequences[index]
        frames = []
        for filepath, extrinsic, intrinsic in zip(sequence.filepaths, sequence.extrinsics, sequence.intrinsics):
            depth_path, mask_path = depth_paths(self.co3d_dir, filepath)
            frames.append(
                Frame(
                    image_path=self.co3d_dir / PurePosixPath(filepath),
                    extrinsic=extrinsic,
                    intrinsic=intrinsic,
                    depth_path=depth_path,
                    mask_path=mask_path,
                )
            )
        return frames

    def read_depth(self, frame: Frame) -> np.ndarray:
        """Depth [H, W] float32: non-finite, negative and masked (mask <= 128) pixels 0, far outliers clipped."""
        if frame.depth_path is None or not frame.depth_path.is_file():
            raise DatasetError(
                f"depth map {frame.depth_path} of {frame.image_path} does not exist; Co3D depth maps live in "
                f"<category>/<sequence>/depths/<frame>.jpg.geometric.png (download Co3D with its depth archives)"
            )
        depth = read_masked_depth(frame.depth_path, frame.mask_path)
        if self.depth_percentile_clip is not None:
            depth = clip_far_depths(depth, self.depth_percentile_clip)
        return depth

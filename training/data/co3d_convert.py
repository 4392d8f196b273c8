"""Convert raw Co3D v2 annotations into VGGT's `{category}_{split}.jgz` files (OpenCV extri, pixel intri).

Raw Co3D v2 keeps one `{co3d_dir}/{category}/frame_annotations.jgz` per category: a gzip JSON list of
FrameAnnotation dicts whose `viewpoint` is a PyTorch3D camera. PyTorch3D uses row vectors,
`X_cam = X_world @ R + T`, with +X left and +Y up, and NDC intrinsics; OpenCV uses column vectors
with +X right and +Y down and pixel intrinsics. So with F = diag(-1, -1, 1):

    R_cv = F @ R.T,    t_cv = F @ T

and, for an image of H x W pixels:

    "ndc_isotropic"          s = min(H, W) / 2;  fx, fy = focal * s;  cx = W/2 - px * s,  cy = H/2 - py * s
    "ndc_norm_image_bounds"  fx = focal_x * W/2, fy = focal_y * H/2;  cx = W/2 - px * W/2, cy = H/2 - py * H/2

The image centre is W/2, not (W - 1)/2: PyTorch3D's own OpenCV conversion (and Co3D tooling built on it)
uses W/2, and matching it keeps our files identical in convention to the annotations VGGT was trained
on; the half-pixel difference is well inside Co3D's structure-from-motion pose accuracy.

Usage: python -m training.data.co3d_convert --co3d-dir D --out-dir A [--categories tv apple] [--subset fewview_dev]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.data.base import DatasetError
from training.data.co3d import write_annotations
from vggt.scenes.co3d_files import read_annotations

FLIP_XY = np.diag([-1.0, -1.0, 1.0])  # PyTorch3D (+X left, +Y up) <-> OpenCV (+X right, +Y down)
SPLITS_OF_SET_LIST = {"train": "train", "val": "test", "test": "test"}  # our trainer has train and test only


def opencv_extrinsic(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """[3, 4] OpenCV camera-from-world from PyTorch3D R [3, 3] and T [3] (X_cam = X_world @ R + T)."""
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise ValueError(f"R must be 3x3 and T of length 3, got {rotation.shape} and {translation.shape}")
    return np.concatenate([FLIP_XY @ rotation.T, (FLIP_XY @ translation)[:, None]], axis=1)


def pixel_intrinsic(
    focal_length: Sequence[float],
    principal_point: Sequence[float],
    image_size_hw: Sequence[int],
    intrinsics_format: str,
) -> np.ndarray:
    """[3, 3] pixel K from PyTorch3D NDC focal length (2) and principal point (2) of an H x W image."""
    height, width = (float(v) for v in image_size_hw)
    if intrinsics_format == "ndc_isotropic":
        scale_x = scale_y = min(height, width) / 2
    elif intrinsics_format == "ndc_norm_image_bounds":
        scale_x, scale_y = width / 2, height / 2
    else:
        raise ValueError(f"intrinsics_format {intrinsics_format!r} is not 'ndc_isotropic' or 'ndc_norm_image_bounds'")
    (focal_x, focal_y), (px, py) = focal_length, principal_point
    return np.array(
        [
            [focal_x * scale_x, 0.0, width / 2 - px * scale_x],
            [0.0, focal_y * scale_y, height / 2 - py * scale_y],
            [0.0, 0.0, 1.0],
        ]
    )


def _field(annotation: dict, dotted: str, source: Path) -> Any:
    """annotation["a"]["b"] for "a.b", or a DatasetError naming the file, the frame and the key."""
    value: Any = annotation
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            frame = f"sequence {annotation.get('sequence_name')!r} frame {annotation.get('frame_number')!r}"
            raise DatasetError(f"{source}: {frame} has no {dotted!r}; is this a Co3D v2 frame_annotations.jgz?")
        value = value[key]
    return value


def convert_frame(annotation: dict, source: Path) -> dict[str, Any]:
    """Our frame dict {filepath, extri 3x4, intri 3x3} from one raw FrameAnnotation with a viewpoint."""
    viewpoint = _field(annotation, "viewpoint", source)
    fields = [_field(annotation, f"viewpoint.{key}", source) for key in ("R", "T", "focal_length", "principal_point")]
    size, filepath = _field(annotation, "image.size", source), _field(annotation, "image.path", source)
    try:
        extrinsic = opencv_extrinsic(fields[0], fields[1])
        # a FrameAnnotation without intrinsics_format has the dataclass default, ndc_norm_image_bounds
        intrinsic = pixel_intrinsic(
            fields[2], fields[3], size, viewpoint.get("intrinsics_format", "ndc_norm_image_bounds")
        )
    except (ValueError, TypeError) as err:
        frame = f"sequence {annotation['sequence_name']!r} frame {annotation['frame_number']}"
        raise DatasetError(f"{source}: {frame} has a malformed viewpoint or image size: {err}") from err
    return {"filepath": filepath, "extri": extrinsic.tolist(), "intri": intrinsic.tolist()}


def read_set_list(path: Path) -> dict[str, set[tuple[str, int]]]:
    """Our split -> {(sequence, frame_number)} from a Co3D set list (train -> train; val and test -> test)."""
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("set_lists_*.json")) if path.parent.is_dir() else []
        raise DatasetError(f"set list {path} does not exist; available: {available or 'none'}")
    try:
        content = json.loads(path.read_text())
        splits: dict[str, set[tuple[str, int]]] = defaultdict(set)
        for name, entries in content.items():
            if name in SPLITS_OF_SET_LIST:
                splits[SPLITS_OF_SET_LIST[name]].update((entry[0], int(entry[1])) for entry in entries)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise DatasetError(f"{path} is not a Co3D set list {{split: [[sequence, frame, path], ...]}}: {err}") from err
    return splits


@dataclass
class CategoryResult:
    """Converted sequences per split (frames sorted by frame number) and the frames left out."""

    splits: dict[str, dict[str, list[dict]]]
    without_viewpoint: int = 0
    not_in_set_list: int = 0


def convert_category(co3d_dir: Path, category: str, subset: str | None = None) -> CategoryResult:
    """Convert `{co3d_dir}/{category}/frame_annotations.jgz`; with `subset`, split by its set list."""
    source = co3d_dir / category / "frame_annotations.jgz"
    if not source.is_file():
        raise DatasetError(f"{source} does not exist; is {co3d_dir} the Co3D v2 root with a {category}/ folder?")
    annotations = read_annotations(source)
    if not isinstance(annotations, list):
        raise DatasetError(f"{source} holds a JSON {type(annotations).__name__}, expected a list of frame annotations")
    set_list = None if subset is None else read_set_list(co3d_dir / category / "set_lists" / f"set_lists_{subset}.json")
    result = CategoryResult(splits={})
    numbered: dict[str, dict[str, list[tuple[int, dict]]]] = defaultdict(lambda: defaultdict(list))
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise DatasetError(f"{source} holds a {type(annotation).__name__} where a frame annotation should be")
        key = (_field(annotation, "sequence_name", source), int(_field(annotation, "frame_number", source)))
        splits = ["train"] if set_list is None else [split for split, frames in set_list.items() if key in frames]
        if not splits:
            result.not_in_set_list += 1
            continue
        if annotation.get("viewpoint") is None:
            result.without_viewpoint += 1
            continue
        frame = convert_frame(annotation, source)
        for split in splits:
            numbered[split][key[0]].append((key[1], frame))
    for split, sequences in numbered.items():
        result.splits[split] = {
            name: [frame for _, frame in sorted(frames, key=lambda item: item[0])] for name, frames in sequences.items()
        }
    return result


@dataclass
class Summary:
    """Counts per category and split, for the report printed at the end."""

    rows: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def convert(co3d_dir: Path, out_dir: Path, categories: Iterable[str], subset: str | None = None) -> Summary:
    """Write `{out_dir}/{category}_{split}.jgz` for every category and non-empty split; returns the summary."""
    summary = Summary()
    for category in tqdm(list(categories), desc="Co3D categories", unit="category"):
        result = convert_category(co3d_dir, category, subset)
        counts = []
        for split, sequences in sorted(result.splits.items()):
            path = out_dir / f"{category}_{split}.jgz"
            write_annotations(path, sequences)
            summary.files.append(path)
            counts.append(f"{split} {len(sequences)} sequences / {sum(map(len, sequences.values()))} frames")
        left_out = f"; left out: {result.without_viewpoint} without viewpoint, {result.not_in_set_list} not in set list"
        summary.rows.append(f"{category}: {', '.join(counts) or 'nothing to write'}{left_out}")
    return summary


def available_categories(co3d_dir: Path) -> list[str]:
    """Category folders of a Co3D v2 root that hold a frame_annotations.jgz, sorted."""
    return sorted(p.parent.name for p in co3d_dir.glob("*/frame_annotations.jgz"))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 success, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.data.co3d_convert",
        description="Convert raw Co3D v2 annotations (PyTorch3D cameras) into VGGT's {category}_{split}.jgz files "
        "(OpenCV camera-from-world extri 3x4, pixel intri 3x3).",
    )
    parser.add_argument("--co3d-dir", type=Path, required=True, help="Co3D v2 root with <category>/ folders")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the .jgz annotation files are written")
    parser.add_argument("--categories", nargs="+", help="categories to convert (default: every one found)")
    parser.add_argument(
        "--subset",
        help="set list to split by, e.g. fewview_dev (reads set_lists/set_lists_<subset>.json; train -> train, "
        "val and test -> test); default: every frame goes to train",
    )
    args = parser.parse_args(argv)
    try:
        categories = args.categories or available_categories(args.co3d_dir)
        if not categories:
            raise DatasetError(f"no <category>/frame_annotations.jgz under {args.co3d_dir}; pass the Co3D v2 root")
        summary = convert(args.co3d_dir, args.out_dir, categories, args.subset)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary.rows))
    print(f"wrote {len(summary.files)} annotation files to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Co3D v2 files as VGGT reads them: the seen categories, depth PNGs with their masks, annotation files.

Annotation files are `{annotation_dir}/{category}_{split}.jgz`: gzip-compressed JSON
`{sequence_name: [frame, ...]}`. Training annotations (upstream's preprocessed files) hold per frame
"filepath" (relative to the Co3D root, `<category>/<sequence>/images/<frame>.jpg`), "extri" (3x4 OpenCV
camera-from-world) and "intri" (3x3 pixels); the evaluation preprocessing writes PyTorch3D "R" and "T"
instead. Depth lives next to the images: `<category>/<sequence>/depths/<frame>.jpg.geometric.png` (a
16-bit PNG whose uint16 values are float16 bit patterns) with a valid-depth mask in
`<category>/<sequence>/depth_masks/<frame>.png`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vggt.scenes.frame import DatasetError

SEEN_CATEGORIES: tuple[str, ...] = (
    "apple", "backpack", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "bottle", "bowl",
    "broccoli", "cake", "car", "carrot", "cellphone", "chair", "cup", "donut", "hairdryer", "handbag",
    "hydrant", "keyboard", "laptop", "microwave", "motorcycle", "mouse", "orange", "parkingmeter", "pizza",
    "plant", "stopsign", "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck",
    "tv", "umbrella", "vase", "wineglass",
)  # fmt: skip

MASK_THRESHOLD = 128  # depth_masks pixels <= this are invalid (upstream's rule)
HOW_TO_GET_ANNOTATIONS = (
    "download them from upstream's Hugging Face dataset JianyuanWang/co3d_anno, or convert raw Co3D v2 with "
    "`python -m training.data.co3d_convert --co3d-dir <co3d root> --out-dir <annotation dir>`"
)


# depth PNGs ---------------------------------------------------------------------------------------
def read_depth_png(path: str | Path) -> np.ndarray:
    """Float32 [H, W] from a 16-bit PNG of float16 bit patterns; values exactly as stored (NaN / inf kept)."""
    image = load_image(path, "depth map")
    if image.mode not in ("I;16", "I"):  # Pillow < 10 opens 16-bit grayscale PNGs as "I"
        raise DatasetError(f"depth map {path} is a {image.mode!r} image; expected a 16-bit grayscale PNG")
    return np.asarray(image).astype(np.uint16).view(np.float16).astype(np.float32)


def load_image(path: str | Path, what: str) -> Image.Image:
    """The decoded PIL image at `path`, or a DatasetError naming it."""
    if not Path(path).is_file():
        raise DatasetError(f"{what} {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # PIL raises SyntaxError for some bad PNGs
        raise DatasetError(f"{what} {path} cannot be read: {err}") from err


# annotation files -------------------------------------------------------------------------------
def read_annotations(path: str | Path) -> Any:
    """The decoded JSON of a gzip-compressed JSON file (.jgz), or a DatasetError naming it."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as file:
            return json.load(file)
    except (OSError, EOFError, ValueError) as err:  # bad gzip, truncated file, bad JSON / UTF-8
        raise DatasetError(f"{path} is not gzip-compressed JSON ({err}); re-download or re-create it") from err


def depth_paths(co3d_dir: Path, filepath: str) -> tuple[Path, Path]:
    """(depth map, depth mask) paths of the frame whose image is `co3d_dir / filepath`."""
    relative = PurePosixPath(filepath)
    sequence_dir = co3d_dir / relative.parent.parent
    return (
        sequence_dir / "depths" / f"{relative.name}.geometric.png",
        sequence_dir / "depth_masks" / relative.with_suffix(".png").name,
    )


def read_masked_depth(depth_path: Path, mask_path: Path | None) -> np.ndarray:
    """Depth [H, W] float32 with non-finite, negative and masked (mask <= 128) pixels set to 0 (invalid).

    A missing mask file masks nothing.
    """
    depth = read_depth_png(depth_path)
    depth[~np.isfinite(depth) | (depth < 0)] = 0  # 0 is the one "invalid" value downstream
    if mask_path is not None and mask_path.is_file():
        mask = np.asarray(load_image(mask_path, "depth mask").convert("L"))
        if mask.shape != depth.shape:
            raise DatasetError(
                f"depth mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its depth map "
                f"{depth_path} is {depth.shape[1]}x{depth.shape[0]}"
            )
        depth[mask <= MASK_THRESHOLD] = 0
    return depth

"""What `--images` names: a folder of images, a list of image files, or one video."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vggt.utils.load_fn import check_image_header

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
MAX_LISTED = 5  # skipped names shown in a warning


@dataclass
class InputSource:
    """Either `images` (files in frame order, with the unique names the outputs use) or one `video` to sample."""

    images: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    video: Path | None = None


def _listing(paths: Sequence[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")


def _folder_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name; anything else is skipped with a warning."""
    entries = sorted(folder.iterdir())
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p for p in entries if p not in images and not p.name.startswith(".")]  # hidden files: silently
    if not images:
        raise ValueError(
            f"{folder} holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "pass a folder of images, image files or a video"
        )
    if skipped:
        warnings.warn(f"skipping {len(skipped)} non-image entries in {folder}: {_listing(skipped)}", stacklevel=3)
    return images


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """File names, which COLMAP and the per-frame outputs use as keys; two equal names are an error."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.name in seen:
            raise ValueError(
                f"{seen[path.name]} and {path} share the file name {path.name!r}, which the outputs (COLMAP image "
                "names, depth maps) use as keys; rename one or put the images in one folder"
            )
        seen[path.name] = path
    return list(seen)


def resolve_inputs(sources: Sequence[str | Path]) -> InputSource:
    """A folder (its images), one video file, or image files (taken as images whatever their suffix)."""
    paths = [Path(s).expanduser() for s in sources]
    if not paths:
        raise ValueError("--images needs a folder, image files or a video")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass a folder of images, image files or a video")
    if len(paths) == 1 and paths[0].is_dir():
        images = _folder_images(paths[0])
        return _images(images)
    folders = [p for p in paths if p.is_dir()]
    if folders:
        raise ValueError(f"{folders[0]} is a folder; pass either one folder or a list of image files, not both")
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos and len(paths) > 1:
        raise ValueError(f"{videos[0]} is a video; pass either one video or image files, not both")
    if videos:
        return InputSource(video=videos[0])
    return _images(paths)


def _images(paths: list[Path]) -> InputSource:
    """Image files, their headers checked now so that an oversized one stops the run before the model loads."""
    for path in paths:
        check_image_header(path)
    return InputSource(images=paths, names=_unique_names(paths))

"""Image loading and resizing into the [0, 1] tensors the model expects (H and W multiples of 14)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

TARGET_SIZE = 518
PATCH_SIZE = 14
_MODES = ("crop", "pad")
# Pillow >= 9.1 moved the filters into Image.Resampling; older releases only have the module-level constant.
_BICUBIC = getattr(Image, "Resampling", Image).BICUBIC


def _as_path_list(image_path_list: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """A single path is wrapped in a list (upstream would iterate over its characters instead)."""
    paths = [image_path_list] if isinstance(image_path_list, (str, os.PathLike)) else list(image_path_list)
    if not paths:
        raise ValueError("image_path_list is empty; pass at least one image path")
    return paths


def _too_large(path: str | os.PathLike, err: Image.DecompressionBombError) -> ValueError:
    """Pillow's refusal of a header claiming more than 2 * MAX_IMAGE_PIXELS pixels, naming the file."""
    return ValueError(
        f"{str(path)!r} claims too many pixels to decode ({err}); downscale it, or, if the file is trusted, raise "
        "PIL.Image.MAX_IMAGE_PIXELS before loading"
    )


def check_image_header(path: str | os.PathLike) -> None:
    """Refuse now, naming `path`, an image whose header claims more pixels than Pillow will decode (it reads the
    header only). Other problems of the file are reported when it is loaded."""
    try:
        with Image.open(path):
            pass
    except Image.DecompressionBombError as err:
        raise _too_large(path, err) from None
    except (UnidentifiedImageError, OSError):
        pass


def _open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode `path` as RGB, compositing RGBA transparency onto white."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"Image file not found: {str(path)!r}; pass paths to existing image files")
    if file.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; pass the image files inside it, not the directory")
    try:
        with Image.open(file) as opened:
            opened.load()
            image = opened.copy()
    except Image.DecompressionBombError as err:
        raise _too_large(path, err) from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(
            f"Cannot read {str(path)!r} as an image ({err}); pass a PNG, JPEG or other PIL format"
        ) from err
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return image.convert("RGB")


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 [3, H, W] in [0, 1]."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    return pixels.permute(2, 0, 1).float().div(255)


def _scaled_side(side: int, scale_num: int, scale_den: int) -> int:
    """`side * scale_num / scale_den` rounded (Python round) to a multiple of the patch size."""
    return round(side * (scale_num / scale_den) / PATCH_SIZE) * PATCH_SIZE


def _pad_centered(image: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    """Pad [3, h, w] to [3, height, width] with `value`, the extra top/left row being the smaller half."""
    pad_h = height - image.shape[-2]
    pad_w = width - image.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return image
    return F.pad(image, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)


@dataclass(frozen=True)
class PreprocessTransform:
    """Where a preprocessed image's pixels come from in its original file.

    Coordinates here are continuous: pixel edges at integers, so the centre of the top-left pixel is (0.5, 0.5)
    (COLMAP's convention). A point (x, y) of the original image lands at (x * scale_x + offset_x,
    y * scale_y + offset_y) of the preprocessed image; scale_x and scale_y differ slightly because one side is
    rounded to a multiple of the patch size. `content` = (x0, y0, x1, y1) is the box of preprocessed pixels that
    hold the original image; pixels outside it are padding. Crop mode cuts rows off tall images: those rows of the
    original are not seen by the model at all (offset_y < 0).
    """

    original_size: tuple[int, int]  # (W, H) of the file
    scale: tuple[float, float]  # (scale_x, scale_y): preprocessed pixels per original pixel
    offset: tuple[float, float]  # (offset_x, offset_y) in preprocessed pixels
    content: tuple[int, int, int, int]  # (x0, y0, x1, y1), preprocessed pixel edges

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Continuous preprocessed coordinates [..., 2] -> continuous original coordinates [..., 2]."""
        return (np.asarray(xy, dtype=np.float32) - np.array(self.offset)) / np.array(self.scale)

    def from_original(self, xy: np.ndarray) -> np.ndarray:
        """Continuous original coordinates [..., 2] -> continuous preprocessed coordinates [..., 2]."""
        return np.asarray(xy, dtype=np.float32) * np.array(self.scale) + np.array(self.offset)

    def shifted(self, dx: int, dy: int) -> PreprocessTransform:
        """The same transform after padding `dx` columns on the left and `dy` rows on top."""
        x0, y0, x1, y1 = self.content
        offset = (self.offset[0] + dx, self.offset[1] + dy)
        return replace(self, offset=offset, content=(x0 + dx, y0 + dy, x1 + dx, y1 + dy))


def _check_target_size(target_size: int) -> None:
    if not isinstance(target_size, int) or target_size <= 0 or target_size % PATCH_SIZE:
        raise ValueError(
            f"target_size must be a positive multiple of the patch size {PATCH_SIZE}, got {target_size!r}; "
            f"e.g. {TARGET_SIZE} (the model's training resolution) or 112, 224, 350"
        )


def _preprocess_crop(image: Image.Image, target: int) -> tuple[torch.Tensor, PreprocessTransform]:
    """Width -> target, height scaled to a multiple of 14, then centre-cropped to at most target. [3, H, W]"""
    width, height = image.size
    new_height = _scaled_side(height, target, width)
    tensor = _to_tensor(image.resize((target, new_height), _BICUBIC))
    start = max(new_height - target, 0) // 2
    tensor = tensor[:, start : start + target, :]
    scale = (target / width, new_height / height)
    return tensor, PreprocessTransform((width, height), scale, (0.0, -float(start)), (0, 0, target, tensor.shape[1]))


def _preprocess_pad(image: Image.Image, target: int) -> tuple[torch.Tensor, PreprocessTransform]:
    """Larger side -> target, other side scaled to a multiple of 14, then white-padded to [3, target, target]."""
    width, height = image.size
    if width >= height:
        new_width, new_height = target, _scaled_side(height, target, width)
    else:
        new_width, new_height = _scaled_side(width, target, height), target
    tensor = _to_tensor(image.resize((new_width, new_height), _BICUBIC))
    scale = (new_width / width, new_height / height)
    resized = PreprocessTransform((width, height), scale, (0.0, 0.0), (0, 0, new_width, new_height))
    padding = ((target - new_width) // 2, (target - new_height) // 2)  # the left / top halves, as _pad_centered
    return _pad_centered(tensor, target, target, value=1.0), resized.shifted(*padding)


def preprocessed_shape(
    image_path_list: str | os.PathLike | Sequence[str | os.PathLike], mode: str = "crop", target_size: int = TARGET_SIZE
) -> tuple[int, int]:
    """(H, W) of the batch that load_and_preprocess_images would make, from the files' headers only (no decoding):
    what a memory plan needs before anything is loaded. Unreadable files count as a square of `target_size`."""
    if mode not in _MODES:
        raise ValueError(f"Unknown mode {mode!r}; use 'crop' or 'pad'")
    _check_target_size(target_size)
    if mode == "pad":
        return target_size, target_size
    height = 0
    for path in _as_path_list(image_path_list):
        try:
            with Image.open(path) as image:
                width, original_height = image.size
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            return target_size, target_size  # loading will report the file
        height = max(height, min(_scaled_side(original_height, target_size, width), target_size))
    return height, target_size


def load_and_preprocess_images_with_transforms(
    image_path_list: str | os.PathLike | Sequence[str | os.PathLike],
    mode: str = "crop",
    target_size: int = TARGET_SIZE,
    progress: bool = False,
) -> tuple[torch.Tensor, list[PreprocessTransform]]:
    """`load_and_preprocess_images`, also returning each image's PreprocessTransform (with any batch padding).

    `progress` shows a tqdm bar over the files.
    """
    if mode not in _MODES:
        raise ValueError(f"Unknown mode {mode!r}; use 'crop' or 'pad'")
    _check_target_size(target_size)
    preprocess = _preprocess_crop if mode == "crop" else _preprocess_pad
    paths = _as_path_list(image_path_list)
    loaded = [
        preprocess(_open_rgb(path), target_size)
        for path in tqdm(paths, desc="loading images", unit="image", disable=not progress)
    ]
    images = [image for image, _ in loaded]
    transforms = [transform for _, transform in loaded]

    shapes = sorted({tuple(image.shape[-2:]) for image in images})
    if len(shapes) > 1:
        max_h = max(h for h, _ in shapes)
        max_w = max(w for _, w in shapes)
        warnings.warn(
            f"Images have different (H, W) after preprocessing: {shapes}; padding all to ({max_h}, {max_w}) with white",
            stacklevel=2,
        )
        transforms = [
            t.shifted((max_w - image.shape[-1]) // 2, (max_h - image.shape[-2]) // 2)
            for image, t in zip(images, transforms)
        ]
        images = [_pad_centered(image, max_h, max_w, value=1.0) for image in images]
    return torch.stack(images), transforms


def load_and_preprocess_images(
    image_path_list: str | os.PathLike | Sequence[str | os.PathLike], mode: str = "crop", target_size: int = TARGET_SIZE
) -> torch.Tensor:
    """Load images into a float32 batch [N, 3, H, W] in [0, 1] (no mean/std normalisation).

    Args:
        image_path_list: image paths; a single path is also accepted.
        mode: "crop" (width 518, height centre-cropped to <= 518) or "pad" (larger side 518, white-padded square).
        target_size: the 518 above; any positive multiple of the patch size 14.

    Images whose processed sizes differ are white-padded, centred, to the largest H and W, with a warning.
    """
    images, _ = load_and_preprocess_images_with_transforms(image_path_list, mode, target_size)
    return images


def _pad_square_black(image: Image.Image) -> tuple[Image.Image, int, int]:
    """Paste `image` centred on a black square; returns (square, left, top)."""
    width, height = image.size
    side = max(width, height)
    left, top = (side - width) // 2, (side - height) // 2
    square = Image.new("RGB", (side, side), (0, 0, 0))
    square.paste(image, (left, top))
    return square, left, top


def load_and_preprocess_images_square(
    image_path_list: str | os.PathLike | Sequence[str | os.PathLike], target_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Black-pad each image to a centred square, then resize it to `target_size`.

    Returns:
        images: float32 [N, 3, target_size, target_size] in [0, 1].
        original_coords: float32 [N, 6] = [x1, y1, x2, y2, orig_w, orig_h]; the box where the original image lies,
            in target-space pixels, followed by its original size.
    """
    if not isinstance(target_size, int) or target_size <= 0:
        raise ValueError(f"target_size must be a positive integer, got {target_size!r}")
    images = []
    coords = []
    for path in _as_path_list(image_path_list):
        image = _open_rgb(path)
        width, height = image.size
        square, left, top = _pad_square_black(image)
        scale = target_size / square.size[0]
        coords.append([left * scale, top * scale, (left + width) * scale, (top + height) * scale, width, height])
        images.append(_to_tensor(square.resize((target_size, target_size), _BICUBIC)))
    return torch.stack(images), torch.tensor(coords, dtype=torch.float32)

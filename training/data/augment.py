"""Augmentations: geometric ones that keep the intrinsics consistent, and colour ones.

Geometric (per frame): a random crop centred on the principal point, a resize with a random safety
margin, and a final crop to the target shape around the principal point; the pinhole intrinsics
follow every step, so pixels keep projecting where the world points are. Colour (per sequence or
per frame): brightness / contrast / saturation / hue jitter in random order and random grayscale,
written in torch (no torchvision dependency). All randomness comes from the caller's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_RESAMPLING = getattr(Image, "Resampling", Image)  # Pillow >= 9.1 moved the filters


@dataclass
class AugmentConfig:
    """Upstream's training augmentations; `None` / 0 disables a step. Validation uses `AugmentConfig.off()`."""

    crop_scales: tuple[float, float] | None = (0.8, 1.2)
    resize_margin: float = 0.3  # random extra resize margin, as a fraction of the target's longer side
    color_jitter_prob: float = 0.9
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.1
    grayscale_prob: float = 0.05
    cojitter_prob: float = 0.7  # chance that one colour transform is shared by all frames of a sequence

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(crop_scales=None, resize_margin=0.0, color_jitter_prob=0.0, grayscale_prob=0.0)


# geometry -----------------------------------------------------------------------------------
def target_shape(aspect_ratio: float, img_size: int = 518, patch_size: int = 14) -> tuple[int, int]:
    """(H, W) of a training sample: W = img_size, H = img_size * aspect rounded down to the patch size."""
    height = int(img_size * aspect_ratio) // patch_size * patch_size
    return max(height, patch_size), img_size


def _crop_window(center: float, size: int, full: int) -> int:
    """Start of a `size`-long window centred on `center` and kept inside [0, full)."""
    return int(np.clip(round(center - size / 2), 0, max(full - size, 0)))


def crop_around_principal_point(
    image: np.ndarray, depth: np.ndarray | None, intrinsic: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Crop [h, w, ...] arrays to at most height x width around (cx, cy); zero-pad what is missing."""
    h, w = image.shape[:2]
    top = _crop_window(intrinsic[1, 2], height, h)
    left = _crop_window(intrinsic[0, 2], width, w)
    image = image[top : top + height, left : left + width]
    depth = None if depth is None else depth[top : top + height, left : left + width]
    intrinsic = intrinsic.copy()
    intrinsic[0, 2] -= left
    intrinsic[1, 2] -= top
    if image.shape[:2] != (height, width):  # the source was smaller than the target: pad bottom / right
        pad = ((0, height - image.shape[0]), (0, width - image.shape[1]))
        image = np.pad(image, pad + ((0, 0),) * (image.ndim - 2))
        depth = None if depth is None else np.pad(depth, pad)
    return image, depth, intrinsic


def resize(
    image: np.ndarray, depth: np.ndarray | None, intrinsic: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resize to height x width: image Lanczos when shrinking else bicubic, depth nearest (no mixed depths)."""
    h, w = image.shape[:2]
    shrinking = height * width < h * w
    pil = Image.fromarray(image).resize((width, height), _RESAMPLING.LANCZOS if shrinking else _RESAMPLING.BICUBIC)
    if depth is not None:
        depth = np.asarray(
            Image.fromarray(depth.astype(np.float32), mode="F").resize((width, height), _RESAMPLING.NEAREST)
        )
    sx, sy = width / w, height / h
    intrinsic = intrinsic.copy()
    # pixel centres, not corners, scale: x' + 0.5 = (x + 0.5) * s
    intrinsic[0] *= sx
    intrinsic[1] *= sy
    intrinsic[0, 2] += 0.5 * sx - 0.5
    intrinsic[1, 2] += 0.5 * sy - 0.5
    return np.asarray(pil), depth, intrinsic


def process_frame(
    image: np.ndarray,
    depth: np.ndarray | None,
    intrinsic: np.ndarray,
    shape: tuple[int, int],
    augment: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One frame [h, w, 3] uint8 (+ depth [h, w]) -> the target `shape` with matching intrinsics [3, 3]."""
    height, width = shape
    if augment.crop_scales is not None:
        low, high = augment.crop_scales
        scale_h, scale_w = np.minimum(rng.uniform(low, high, size=2), 1.0)
        h, w = image.shape[:2]
        image, depth, intrinsic = crop_around_principal_point(
            image, depth, intrinsic, int(h * scale_h), int(w * scale_w)
        )
    margin = 4 + (rng.triangular(0, 0, augment.resize_margin) * max(shape) if augment.resize_margin > 0 else 0)
    h, w = image.shape[:2]
    scale = max((height + margin) / h, (width + margin) / w)
    image, depth, intrinsic = resize(image, depth, intrinsic, int(h * scale), int(w * scale))
    return crop_around_principal_point(image, depth, intrinsic, height, width)


# colour ---------------------------------------------------------------------------------------
def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of [..., 3, H, W] images, keeping 1 channel."""
    r, g, b = images.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _shift_hue(images: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of [..., 3, H, W] RGB images in [0, 1] by `shift` turns (through HSV)."""
    r, g, b = images.unbind(-3)
    maxc, _ = images.max(dim=-3)
    minc, _ = images.min(dim=-3)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    saturation = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    value = maxc
    # HSV -> RGB: channel n takes v - v s max(0, min(k, 4 - k, 1)) with k = (n + 6 h) mod 6
    channels = []
    for n in (5, 3, 1):
        k = (n + hue * 6) % 6
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=-3)


def color_transform(augment: AugmentConfig, rng: np.random.Generator):
    """A random colour transform (callable on [..., 3, H, W] in [0, 1]) drawn from `augment`."""
    ops = []
    if rng.random() < augment.color_jitter_prob:
        brightness = rng.uniform(max(0, 1 - augment.brightness), 1 + augment.brightness)
        contrast = rng.uniform(max(0, 1 - augment.contrast), 1 + augment.contrast)
        saturation = rng.uniform(max(0, 1 - augment.saturation), 1 + augment.saturation)
        hue = rng.uniform(-augment.hue, augment.hue)
        jitter = [
            lambda x: (x * brightness).clamp(0, 1),
            lambda x: (contrast * x + (1 - contrast) * _grayscale(x).mean(dim=(-2, -1), keepdim=True)).clamp(0, 1),
            lambda x: (saturation * x + (1 - saturation) * _grayscale(x)).clamp(0, 1),
            lambda x: _shift_hue(x, hue),
        ]
        ops.extend(jitter[i] for i in rng.permutation(len(jitter)))
    if rng.random() < augment.grayscale_prob:
        ops.append(lambda x: _grayscale(x).expand_as(x).contiguous())

    def apply(images: torch.Tensor) -> torch.Tensor:
        for op in ops:
            images = op(images)
        return images

    return apply


def augment_colors(images: torch.Tensor, augment: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """[S, 3, H, W] in [0, 1]: one shared colour transform (cojitter) or one per frame."""
    if augment.color_jitter_prob <= 0 and augment.grayscale_prob <= 0:
        return images
    if rng.random() < augment.cojitter_prob:
        return color_transform(augment, rng)(images)
    return torch.stack([color_transform(augment, rng)(frame) for frame in images])

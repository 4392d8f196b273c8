"""torchvision's ToTensor and make_grid, written for the patched tree (added by VGGT_npu.patch).

The patched tree needs no torchvision: a torchvision that does not match the installed torch (and
torch_npu) is a common way to break an Ascend environment.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A uint8 PIL image (L, RGB or RGBA) -> float32 [C, H, W] in [0, 1], as torchvision's ToTensor."""
    if image.mode not in ("L", "RGB", "RGBA"):
        raise ValueError(f"to_tensor takes L, RGB or RGBA images, got mode {image.mode!r}; convert it first")
    array = np.array(image, dtype=np.uint8, copy=True)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().float().div(255)


def make_grid(
    images: torch.Tensor | list[torch.Tensor], nrow: int = 8, padding: int = 2, pad_value: float = 0.0
) -> torch.Tensor:
    """Tile images [B, C, H, W] (or a list of [C, H, W]) into one [C, H', W'] image, as torchvision's make_grid.

    `nrow` images per row, `padding` pixels of `pad_value` around each; one-channel images become three.
    A single image comes back unpadded.
    """
    if isinstance(images, (list, tuple)):
        images = torch.stack(list(images))
    if images.dim() == 2:
        images = images.unsqueeze(0)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.shape[1] == 1:
        images = torch.cat((images, images, images), dim=1)
    if images.shape[0] == 1:
        return images.squeeze(0)
    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = int(math.ceil(count / columns))
    cell_h, cell_w = height + padding, width + padding
    grid = images.new_full((channels, cell_h * rows + padding, cell_w * columns + padding), pad_value)
    for index in range(count):
        top = (index // columns) * cell_h + padding
        left = (index % columns) * cell_w + padding
        grid[:, top : top + height, left : left + width] = images[index]
    return grid

"""Quick start: run VGGT end to end on CPU with no downloads.

Writes a few procedural images, loads them the way real photos are loaded, runs the tiny
architecture with deterministic synthetic weights (the official weights need network access:
use `VGGT.from_pretrained("facebook/VGGT-1B")` where you have it) and decodes the cameras.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vggt.config import VGGTConfig
from vggt.synthetic_weights import synthetic_model
from vggt.utils.load_fn import load_and_preprocess_images
from vggt.utils.pose_enc import pose_encoding_to_extri_intri


def write_images(folder: Path, count: int, size: tuple[int, int] = (320, 240)) -> list[Path]:
    """A textured plane seen from slowly shifting viewpoints (checkerboard + colour gradient)."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        shift = 12.0 * i
        checker = ((xs + shift) // 20 + ys // 20) % 2
        rgb = np.stack((checker, (xs + shift) / (width + shift), ys / height), axis=-1)
        path = folder / f"frame_{i:03d}.png"
        Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="number of images to generate (default 3)")
    args = parser.parse_args()

    model = synthetic_model(VGGTConfig.tiny())

    with tempfile.TemporaryDirectory() as folder:
        images = load_and_preprocess_images(write_images(Path(folder), args.frames))
    query_points = torch.tensor([[100.0, 120.0], [300.0, 200.0]])
    with torch.no_grad():
        predictions = model(images, query_points=query_points)
    extrinsics, intrinsics = pose_encoding_to_extri_intri(predictions["pose_enc"], images.shape[-2:])

    print(f"images {tuple(images.shape)} -> predictions:")
    for key, value in predictions.items():
        if isinstance(value, torch.Tensor):
            print(f"  {key:18s} {tuple(value.shape)}")
    print(f"  extrinsics         {tuple(extrinsics.shape)} (camera-from-world, OpenCV)")
    print(f"  intrinsics         {tuple(intrinsics.shape)}")
    print("synthetic weights give arbitrary values; load facebook/VGGT-1B for real predictions")


if __name__ == "__main__":
    main()

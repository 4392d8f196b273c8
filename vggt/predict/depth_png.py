"""Colour-mapped depth and confidence PNGs, one per frame, at the model's resolution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vggt.predict.colormap import colorize, robust_range


def frame_file_name(index: int, name: str) -> str:
    """`0003_IMG_0042.png` for frame 3 named IMG_0042.jpg: sorts in frame order, never collides."""
    return f"{index:04d}_{Path(name).stem}.png"


def colorized_maps(depth: np.ndarray, confidence: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """{"depth": inverse depth (near is bright), "confidence": log confidence (sure is bright)} as uint8 RGB
    [S, H, W, 3]. depth and confidence [S, H, W], valid bool [S, H, W] (padding is drawn black). One colour range
    (2nd to 98th percentile) serves all frames, so colours compare across frames."""
    with np.errstate(divide="ignore"):
        inverse = np.where(valid & (depth > 0), 1.0 / np.where(depth > 0, depth, 1.0), np.nan)
    log_conf = np.where(valid, np.log(np.maximum(confidence, 1e-12)), np.nan)
    maps = {}
    for kind, values in (("depth", inverse), ("confidence", log_conf)):
        rgb = colorize(values, *robust_range(values))
        rgb[~valid] = 0
        maps[kind] = rgb
    return maps


def write_depth_pngs(
    out_dir: Path, depth: np.ndarray, confidence: np.ndarray, valid: np.ndarray, names: Sequence[str]
) -> list[Path]:
    """depth/<frame>.png and confidence/<frame>.png (see colorized_maps) under `out_dir`; returns the paths."""
    maps = colorized_maps(depth, confidence, valid)
    written = []
    for kind in maps:
        (out_dir / kind).mkdir(parents=True, exist_ok=True)
    for frame in tqdm(range(len(depth)), desc="depth and confidence PNGs", unit="frame"):
        for kind, rgb in maps.items():
            path = out_dir / kind / frame_file_name(frame, names[frame])
            Image.fromarray(rgb[frame]).save(path)
            written.append(path)
    return written

"""Binary little-endian PLY point clouds (x, y, z float32; red, green, blue uchar), written with NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """xyz [N, 3] float, rgb [N, 3] uint8 -> `path` (15 bytes per point after a short ASCII header)."""
    if xyz.shape != rgb.shape or xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"write_ply needs xyz and rgb of shape [N, 3], got {xyz.shape} and {rgb.shape}")
    vertices = np.empty(len(xyz), dtype=VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = rgb[:, channel]
    header = "\n".join(
        [
            "ply",
            "format binary_little_endian 1.0",
            "comment written by vggt-npu (world frame = first camera, OpenCV axes: x right, y down, z forward)",
            f"element vertex {len(xyz)}",
            *(f"property float {name}" for name in "xyz"),
            *(f"property uchar {name}" for name in ("red", "green", "blue")),
            "end_header\n",
        ]
    )
    with open(path, "wb") as file:
        file.write(header.encode("ascii"))
        file.write(vertices.tobytes())

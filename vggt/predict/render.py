"""Preview images without OpenGL: a NumPy point-splat render of the cloud and cameras, and a frame grid.

points.png looks at the scene from behind and above the cameras (a z-buffered splat per point, farther points
darker, frustums drawn on top); frames.png shows up to four frames as rows of input | depth | confidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vggt.predict.colormap import colorize
from vggt.predict.depth_png import colorized_maps
from vggt.predict.frustum import FRUSTUM_EDGES, camera_centers, frustum_vertices, scene_scale
from vggt.predict.points import PointCloud

RENDER_SIZE = (640, 480)  # (W, H) of points.png
SPLAT_RADIUS = 1  # pixels around each projected point
FRAME_ROWS = 4  # frames shown in frames.png
TILE_WIDTH = 256  # frames.png tiles are shrunk to at most this width
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Image.Resampling


def _look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenCV camera-from-world [3, 4] at `eye` looking at `target`, image up along `up`."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, -up)  # OpenCV: x right, y down, z forward
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, -rotation @ eye[:, None]], axis=1)


def preview_camera(cloud: PointCloud, extrinsic: np.ndarray) -> np.ndarray:
    """A viewpoint behind and above the first camera, looking at the cloud's median: the input view pulled back
    by the scene's size, so that the cameras and the scene's depth show."""
    target = np.median(cloud.xyz, axis=0) if len(cloud) else camera_centers(extrinsic).mean(axis=0)
    rotation = extrinsic[0, :, :3]
    forward, up = rotation[2], -rotation[1]  # the first camera's viewing direction and image "up" in the world
    distance = 1.2 * scene_scale(cloud.xyz, extrinsic)
    return _look_at(target - distance * forward + 0.5 * distance * up, target, up)


def _project(
    points: np.ndarray, view: np.ndarray, focal: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] -> (pixel coordinates [N, 2], depth [N]) in the preview camera."""
    cam = points @ view[:, :3].T + view[:, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = focal * cam[:, :2] / z[:, None] + np.array(size) / 2
    return uv, z


def _fit_focal(view: np.ndarray, size: tuple[int, int], points: np.ndarray, percentile: float, near: float) -> float:
    """The focal length that puts `percentile` % of the points deeper than `near` inside the image (points beside
    the eye would ask for a focal length near 0)."""
    cam = points @ view[:, :3].T + view[:, 3]
    front = cam[cam[:, 2] > near]
    if not len(front):
        return float(size[0])
    spread = np.percentile(np.abs(front[:, :2] / front[:, 2:]), percentile, axis=0)
    return float(0.9 * min(size[0] / 2 / max(spread[0], 1e-6), size[1] / 2 / max(spread[1], 1e-6)))


def _splat(canvas: np.ndarray, uv: np.ndarray, z: np.ndarray, colors: np.ndarray) -> None:
    """Draw each point as a (2r+1)^2 square, the nearest point winning every pixel (a z-buffer by sorting)."""
    height, width = canvas.shape[:2]
    offsets = np.arange(-SPLAT_RADIUS, SPLAT_RADIUS + 1)
    dx, dy = (o.ravel() for o in np.meshgrid(offsets, offsets))
    px = (np.floor(uv[:, 0])[:, None] + dx).ravel().astype(np.int64)
    py = (np.floor(uv[:, 1])[:, None] + dy).ravel().astype(np.int64)
    depth, color = np.repeat(z, len(dx)), np.repeat(colors, len(dx), axis=0)
    inside = (px >= 0) & (px < width) & (py >= 0) & (py < height) & (depth > 1e-6)
    pixel = py[inside] * width + px[inside]
    order = np.lexsort((depth[inside], pixel))  # by pixel, nearest first
    first = np.unique(pixel[order], return_index=True)[1]
    winners = order[first]
    canvas.reshape(-1, 3)[pixel[winners]] = color[inside][winners]


def _draw_segment(canvas: np.ndarray, start: np.ndarray, end: np.ndarray, color: np.ndarray) -> None:
    """A 2-pixel-wide line from `start` to `end` (pixel coordinates), clipped to the canvas."""
    height, width = canvas.shape[:2]
    steps = int(np.ceil(np.abs(end - start).max())) + 1
    if not np.isfinite(steps) or steps > 20 * (width + height):
        return  # an endpoint near the camera plane would smear across the image
    t = np.linspace(0, 1, steps)[:, None]
    line = start + t * (end - start)
    for shift in (0, 1):
        x, y = np.floor(line[:, 0]).astype(np.int64) + shift, np.floor(line[:, 1]).astype(np.int64)
        ok = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        canvas[y[ok], x[ok]] = color


def render_points(
    cloud: PointCloud, extrinsic: np.ndarray, intrinsic: np.ndarray, image_hw: tuple[int, int]
) -> np.ndarray:
    """uint8 [H, W, 3] (RENDER_SIZE) picture of the point cloud and the camera frustums on white."""
    size = RENDER_SIZE
    view = preview_camera(cloud, extrinsic)
    frustums = frustum_vertices(extrinsic, intrinsic, image_hw, 0.05 * scene_scale(cloud.xyz, extrinsic))
    corners = frustums.reshape(-1, 3)
    near = 0.1 * float(np.median((cloud.xyz if len(cloud) else corners) @ view[2, :3] + view[2, 3]))
    focal = min(_fit_focal(view, size, cloud.xyz, 98, near), _fit_focal(view, size, corners, 100, near))
    canvas = np.full((size[1], size[0], 3), 255, dtype=np.uint8)
    if len(cloud):
        uv, z = _project(cloud.xyz, view, focal, size)
        near, far = np.percentile(z[z > 0], [2, 98]) if (z > 0).any() else (0.0, 1.0)
        shade = 1.0 - 0.45 * np.clip((z - near) / max(far - near, 1e-9), 0, 1)  # depth cue: far is darker
        _splat(canvas, uv, z, (cloud.rgb * shade[:, None]).astype(np.uint8))
    colors = colorize(np.arange(len(frustums)), 0, max(len(frustums) - 1, 1))
    for frame, vertices in enumerate(frustums):
        uv, z = _project(vertices, view, focal, size)
        for a, b in FRUSTUM_EDGES:
            if z[a] > 1e-6 and z[b] > 1e-6:
                _draw_segment(canvas, uv[a], uv[b], colors[frame])
    return canvas


def frame_grid(images: np.ndarray, depth: np.ndarray, confidence: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 grid: up to FRAME_ROWS evenly spaced frames as rows of input | depth | confidence tiles.

    images [S, 3, H, W] in [0, 1], depth and confidence [S, H, W], valid bool [S, H, W].
    """
    maps = colorized_maps(depth, confidence, valid)
    frames = np.unique(np.linspace(0, len(images) - 1, min(FRAME_ROWS, len(images))).round().astype(int))
    height, width = depth.shape[1:]
    tile = (min(width, TILE_WIDTH), max(1, round(height * min(width, TILE_WIDTH) / width)))
    rows = []
    for frame in frames:
        rgb = (images[frame].transpose(1, 2, 0) * 255 + 0.5).clip(0, 255).astype(np.uint8)
        tiles = [rgb, maps["depth"][frame], maps["confidence"][frame]]
        rows.append(np.concatenate([np.asarray(Image.fromarray(t).resize(tile, _BILINEAR)) for t in tiles], 1))
    return np.concatenate(rows, axis=0)


def write_previews(
    out_dir: Path, cloud: PointCloud, predictions: dict[str, np.ndarray], valid: np.ndarray
) -> list[Path]:
    """preview/points.png (the frames with a usable camera; none: no points.png) and preview/frames.png under
    `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    depth = predictions["depth"][..., 0]
    cameras = predictions["camera_valid"]
    pictures = {}
    if cameras.any():
        extrinsic, intrinsic = predictions["extrinsic"][cameras], predictions["intrinsic"][cameras]
        pictures["points.png"] = render_points(cloud, extrinsic, intrinsic, depth.shape[1:])
    pictures["frames.png"] = frame_grid(predictions["images"], depth, predictions["depth_conf"], valid)
    for name, picture in pictures.items():
        Image.fromarray(picture).save(out_dir / name, optimize=True)
    return [out_dir / name for name in pictures]

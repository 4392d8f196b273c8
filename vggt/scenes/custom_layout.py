"""Your own posed RGB-D scenes on disk: a simple JSON layout or a COLMAP sparse model (training and `vggt eval custom`).

Every sub-directory of a root is one scene (one sequence of frames); the root may also be a single
scene directory. Each scene is in one of two layouts, detected per scene (`scene_layout`).

(a) JSON layout: a `cameras.json` next to the images and depth maps.

    my_data/                              <- root
      kitchen/                            <- one scene; its name is the sequence name
        cameras.json
        images/0001.jpg  0002.jpg ...
        depths/0001.npy  0002.npy ...     (or 16-bit PNGs in millimetres: 0001.png ...)
      garden/
        ...

    cameras.json:
    {
      "depth_scale": 1.0,                 optional (default 1): multiplies every depth of the scene
      "frames": [
        {
          "image": "images/0001.jpg",     path relative to the scene directory
          "depth": "depths/0001.npy",     .npy or .png, relative to the scene directory
          "extrinsic": [[r11, r12, r13, t1], [r21, r22, r23, t2], [r31, r32, r33, t3]],   3x4, or 4x4
          "intrinsic": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        },
        ...
      ]
    }

(b) COLMAP layout: a sparse reconstruction plus one depth map per image.

    my_data/
      courtyard/
        sparse/0/cameras.bin  images.bin  (points3D is not read)   or cameras.txt  images.txt
        images/IMG_0001.JPG ...           image names as registered in the model
        depths/IMG_0001.npy ...           <image name with its extension replaced by .npy or .png>

Conventions (both layouts):
  * extrinsic: OpenCV camera-from-world [R | t], x_cam = R x_world + t, camera axes x right, y down,
    z forward. A NeRF / Blender camera-to-world matrix (OpenGL axes) converts as
    `np.linalg.inv(c2w @ np.diag([1, -1, -1, 1]))`. COLMAP's world-to-camera pose (qw, qx, qy, qz, t) is
    exactly this convention.
  * intrinsic: pixels of the image as stored on disk, with pixel centres at integer coordinates (the
    top-left pixel's centre is (0, 0), as in OpenCV). COLMAP puts that centre at (0.5, 0.5), so its
    principal point is shifted by -0.5 on reading.
  * depth: z-depth along the optical axis (not the distance along the ray), at the image's resolution;
    0, negative or non-finite values mark invalid pixels. A .npy holds a float [H, W] array in scene
    units; a .png is a 16-bit unsigned PNG in millimetres (1000 = 1 m, 0 = invalid), read as metres.
    JSON scenes then multiply by "depth_scale". COLMAP models have an arbitrary scale: depth maps must be
    in the model's units (a .png in millimetres only fits a model in metres).
  * COLMAP camera models SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV are read; VGGT assumes
    a pinhole camera, so radial / tangential distortion is ignored with a warning (undistort the images
    with `colmap image_undistorter` for exact geometry). Fisheye and other models are rejected.
  * A JSON frame must name an existing image and depth map: anything missing is an error, since the file
    lists them explicitly. A COLMAP image without a depth map is skipped with a warning, since SfM often
    registers more images than have depth. A scene left with fewer than `min_num_images` frames is
    dropped with a warning.
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from vggt.scenes.frame import DatasetError, Frame
from vggt.utils.rotation import quat_to_mat

CAMERAS_JSON = "cameras.json"
COLMAP_MODEL = Path("sparse") / "0"
DEPTH_SUFFIXES = (".npy", ".png")
FRAME_KEYS = ("image", "depth", "extrinsic", "intrinsic")
LAYOUTS = (
    "<root>/<scene>/cameras.json with images and depths it names, "
    "or <root>/<scene>/sparse/0/{cameras,images}.{bin,txt} with <scene>/images/ and <scene>/depths/ "
    "(see the vggt.scenes.custom_layout docstring)"
)


@dataclass
class CustomFrame(Frame):
    depth_scale: float = 1.0  # multiplies the depth read from depth_path


# COLMAP models --------------------------------------------------------------------------------
# model id -> (name, number of parameters); the table covers every model so that a binary file with an
# unsupported camera can still be parsed up to the point of a clear error
COLMAP_CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
SINGLE_FOCAL_MODELS = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")  # params f, cx, cy, [distortion]
TWO_FOCAL_MODELS = ("PINHOLE", "OPENCV")  # params fx, fy, cx, cy, [distortion]
PINHOLE_PARAMS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 3, "RADIAL": 3, "OPENCV": 4}


@dataclass
class ColmapCamera:
    model: str
    width: int
    height: int
    params: np.ndarray  # [num_params] doubles as stored, COLMAP order


@dataclass
class ColmapImage:
    name: str  # path relative to the images directory
    camera_id: int
    qvec: np.ndarray  # [4] (qw, qx, qy, qz), world-to-camera rotation
    tvec: np.ndarray  # [3] world-to-camera translation


def _read(fid: BinaryIO, fmt: str) -> tuple:
    """Unpack little-endian `fmt` from the file; struct.error when the file ends early."""
    size = struct.calcsize("<" + fmt)
    return struct.unpack("<" + fmt, fid.read(size))


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    """cameras.bin -> {camera_id: camera}."""
    cameras = {}
    with open(path, "rb") as fid:
        try:
            for _ in range(_read(fid, "Q")[0]):
                camera_id, model_id, width, height = _read(fid, "iiQQ")
                if model_id not in COLMAP_CAMERA_MODELS:
                    raise DatasetError(
                        f"{path}: camera {camera_id} has unknown model id {model_id}; undistort the images to "
                        "PINHOLE cameras with `colmap image_undistorter` and point the scene at its output"
                    )
                name, num_params = COLMAP_CAMERA_MODELS[model_id]
                cameras[camera_id] = ColmapCamera(name, width, height, np.array(_read(fid, "d" * num_params)))
        except struct.error as err:
            raise DatasetError(f"{path} is truncated or not a COLMAP cameras.bin ({err})") from err
    return cameras


def read_images_binary(path: Path) -> list[ColmapImage]:
    """images.bin -> registered images (their 2-D observations are skipped)."""
    images = []
    with open(path, "rb") as fid:
        try:
            for _ in range(_read(fid, "Q")[0]):
                values = _read(fid, "idddddddi")
                name = b""
                while (char := fid.read(1)) != b"\x00":  # null-terminated name
                    if not char:
                        raise struct.error("file ends inside an image name")
                    name += char
                num_points = _read(fid, "Q")[0]
                fid.seek(num_points * 24, 1)  # x, y (double) and point3D_id (int64) per observation
                images.append(ColmapImage(name.decode(), values[8], np.array(values[1:5]), np.array(values[5:8])))
        except struct.error as err:
            raise DatasetError(f"{path} is truncated or not a COLMAP images.bin ({err})") from err
    return images


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line of a COLMAP text file, comments excluded, blank lines kept."""
    return [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1) if not line.startswith("#")]


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    """cameras.txt (CAMERA_ID MODEL WIDTH HEIGHT PARAMS...) -> {camera_id: camera}."""
    cameras = {}
    known = dict(COLMAP_CAMERA_MODELS.values())
    for number, line in _data_lines(path):
        if not line:
            continue
        fields = line.split()
        try:
            camera_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            params = np.array([float(x) for x in fields[4:]])
        except (IndexError, ValueError) as err:
            raise DatasetError(
                f"{path}:{number}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {line!r}"
            ) from err
        if model not in known or len(params) != known[model]:
            raise DatasetError(
                f"{path}:{number}: camera model {model} with {len(params)} parameters is not a COLMAP model "
                f"this reader knows ({', '.join(known)})"
            )
        cameras[camera_id] = ColmapCamera(model, width, height, params)
    return cameras


def read_images_text(path: Path) -> list[ColmapImage]:
    """images.txt: per image a line IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a (maybe empty) points line."""
    images = []
    lines = iter(_data_lines(path))
    for number, line in lines:
        if not line:
            continue
        fields = line.split(maxsplit=9)  # the name is the rest of the line
        try:
            qt = np.array([float(x) for x in fields[1:8]])
            images.append(ColmapImage(fields[9], int(fields[8]), qt[:4], qt[4:]))
        except (IndexError, ValueError) as err:
            raise DatasetError(
                f"{path}:{number}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {line!r}"
            ) from err
        next(lines, None)  # the image's 2-D points, not needed
    return images


def read_colmap_model(model_dir: Path) -> tuple[dict[int, ColmapCamera], list[ColmapImage], Path]:
    """(cameras, images, images file) of a sparse model directory, binary files preferred over text ones."""
    for suffix, read_cameras, read_images in (
        (".bin", read_cameras_binary, read_images_binary),
        (".txt", read_cameras_text, read_images_text),
    ):
        cameras_path, images_path = model_dir / f"cameras{suffix}", model_dir / f"images{suffix}"
        if cameras_path.is_file() and images_path.is_file():
            return read_cameras(cameras_path), read_images(images_path), images_path
    raise DatasetError(f"{model_dir} has neither cameras.bin + images.bin nor cameras.txt + images.txt")


def colmap_intrinsic(camera: ColmapCamera, where: str) -> np.ndarray:
    """Pinhole K [3, 3] in our pixel convention (pixel centres at integers) from a COLMAP camera."""
    p = camera.params
    if camera.model in SINGLE_FOCAL_MODELS:
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif camera.model in TWO_FOCAL_MODELS:
        fx, fy, cx, cy = p[:4]
    else:
        raise DatasetError(
            f"{where}: COLMAP camera model {camera.model} is not supported (only SIMPLE_PINHOLE, PINHOLE, "
            "SIMPLE_RADIAL, RADIAL, OPENCV); undistort the images to PINHOLE with `colmap image_undistorter`"
        )
    if np.any(p[PINHOLE_PARAMS[camera.model] :] != 0):
        warnings.warn(
            f"{where}: {camera.model} camera has distortion {p[PINHOLE_PARAMS[camera.model] :].tolist()}, which is "
            "ignored (VGGT assumes pinhole cameras); undistort with `colmap image_undistorter` for exact geometry",
            stacklevel=2,
        )
    return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])  # COLMAP's centres sit at +0.5


# JSON scenes ----------------------------------------------------------------------------------
def _matrix(value: Any, where: str, key: str, shapes: Sequence[tuple[int, int]]) -> np.ndarray:
    """A finite float matrix of one of `shapes`, or a DatasetError naming the frame and key."""
    expected = " or ".join(f"{r}x{c}" for r, c in shapes)
    try:
        matrix = np.asarray(value, dtype=float)  # host parsing keeps the file's double precision
    except (TypeError, ValueError) as err:
        raise DatasetError(f'{where} "{key}": must be a {expected} matrix (a list of rows of numbers)') from err
    if matrix.shape not in shapes:
        raise DatasetError(f'{where} "{key}": must be a {expected} matrix, got shape {list(matrix.shape)}')
    if not np.isfinite(matrix).all():
        raise DatasetError(f'{where} "{key}": holds non-finite numbers')
    return matrix


def parse_extrinsic(value: Any, where: str) -> np.ndarray:
    """3x4 or 4x4 OpenCV camera-from-world -> [3, 4], checking that the left 3x3 block is a rotation."""
    matrix = _matrix(value, where, "extrinsic", [(3, 4), (4, 4)])
    if matrix.shape == (4, 4) and not np.allclose(matrix[3], [0, 0, 0, 1], atol=1e-6):
        raise DatasetError(f'{where} "extrinsic": the last row of a 4x4 extrinsic must be [0, 0, 0, 1]')
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        raise DatasetError(
            f'{where} "extrinsic": the left 3x3 block is not a rotation; it must be an OpenCV camera-from-world '
            "[R | t] without scale (see the vggt.scenes.custom_layout docstring for converting camera-to-world)"
        )
    return matrix[:3]


def parse_intrinsic(value: Any, where: str) -> np.ndarray:
    """3x3 pixel K with positive focal lengths and last row [0, 0, 1]."""
    matrix = _matrix(value, where, "intrinsic", [(3, 3)])
    if not np.allclose(matrix[2], [0, 0, 1]) or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise DatasetError(
            f'{where} "intrinsic": must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels with fx, fy > 0'
        )
    return matrix


def _existing_file(scene_dir: Path, value: Any, where: str, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise DatasetError(f'{where} "{key}": must be a path relative to {scene_dir}, got {value!r}')
    path = scene_dir / value
    if not path.is_file():
        raise DatasetError(f'{where} "{key}": {path} does not exist')
    return path


def load_json_scene(scene_dir: Path) -> list[CustomFrame]:
    """The frames a scene's cameras.json lists, validated; errors name the file, frame index and key."""
    path = scene_dir / CAMERAS_JSON
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise DatasetError(
            f'{path}: expected an object with a "frames" list (see the vggt.scenes.custom_layout docstring)'
        )
    scale = data.get("depth_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise DatasetError(f'{path} "depth_scale": must be a positive number, got {scale!r}')
    frames = []
    for index, entry in enumerate(data["frames"]):
        where = f"{path} frames[{index}]"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where}: must be an object with keys {', '.join(FRAME_KEYS)}")
        missing = [key for key in FRAME_KEYS if key not in entry]
        if missing:
            raise DatasetError(f"{where}: missing key {', '.join(missing)}; every frame needs {', '.join(FRAME_KEYS)}")
        depth_path = _existing_file(scene_dir, entry["depth"], where, "depth")
        if depth_path.suffix.lower() not in DEPTH_SUFFIXES:
            raise DatasetError(f'{where} "depth": {depth_path} must be a .npy or a 16-bit .png (millimetres)')
        frames.append(
            CustomFrame(
                image_path=_existing_file(scene_dir, entry["image"], where, "image"),
                extrinsic=parse_extrinsic(entry["extrinsic"], where),
                intrinsic=parse_intrinsic(entry["intrinsic"], where),
                depth_path=depth_path,
                depth_scale=float(scale),
            )
        )
    return frames


# COLMAP scenes --------------------------------------------------------------------------------
def _find_depth(depth_dir: Path, image_name: str) -> Path | None:
    """depths/<image name with .npy or .png for its extension>, or None when neither exists."""
    stem = Path(image_name).with_suffix("")
    candidates = [depth_dir / f"{stem}{suffix}" for suffix in DEPTH_SUFFIXES]
    return next((path for path in candidates if path.is_file()), None)


def load_colmap_scene(scene_dir: Path) -> list[CustomFrame]:
    """Frames of a COLMAP scene in image-name order; images without a depth map are skipped with a warning."""
    cameras, images, images_path = read_colmap_model(scene_dir / COLMAP_MODEL)
    intrinsics: dict[int, np.ndarray] = {}
    frames, without_depth = [], []
    for image in sorted(images, key=lambda im: im.name):
        if image.camera_id not in cameras:
            raise DatasetError(f"{images_path}: image {image.name} uses camera {image.camera_id}, which is not defined")
        if image.camera_id not in intrinsics:  # once per camera, so a distortion warning is not repeated
            intrinsics[image.camera_id] = colmap_intrinsic(
                cameras[image.camera_id], f"{images_path.parent} camera {image.camera_id}"
            )
        image_path = scene_dir / "images" / image.name
        if not image_path.is_file():
            raise DatasetError(f"{image_path} does not exist but {images_path} registers it")
        depth_path = _find_depth(scene_dir / "depths", image.name)
        if depth_path is None:
            without_depth.append(image.name)
            continue
        rotation = quat_to_mat(torch.from_numpy(np.roll(image.qvec, -1))).numpy()  # COLMAP's (w, x, y, z) -> XYZW
        frames.append(
            CustomFrame(
                image_path=image_path,
                extrinsic=np.concatenate([rotation, image.tvec[:, None]], axis=1),
                intrinsic=intrinsics[image.camera_id],
                depth_path=depth_path,
            )
        )
    if without_depth:
        warnings.warn(
            f"{scene_dir}: skipping {len(without_depth)} of {len(images)} images without a depth map in "
            f"{scene_dir / 'depths'} (looked for <image name>.npy / .png, e.g. for {without_depth[0]})",
            stacklevel=2,
        )
    return frames


# depth ------------------------------------------------------------------------------------------
def read_depth_file(path: Path) -> np.ndarray:
    """Depth [H, W] float32 from a .npy (as stored) or a 16-bit PNG (millimetres -> metres); 0 where invalid."""
    is_npy = path.suffix.lower() == ".npy"
    try:
        if is_npy:
            depth, mode = np.load(path, allow_pickle=False), None
        else:
            with Image.open(path) as image:
                depth, mode = np.asarray(image), image.mode
    except (OSError, ValueError, UnidentifiedImageError) as err:
        raise DatasetError(f"depth {path} cannot be read: {err}") from err
    if is_npy:
        depth = depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise DatasetError(f"depth {path} must hold a numeric [H, W] array, got {depth.dtype} {depth.shape}")
        depth = depth.astype(np.float32)
    elif mode in ("I;16", "I;16B", "I;16L", "I"):  # Pillow opens 16-bit PNGs as I;16 (newer) or I (older)
        depth = depth.astype(np.float32) / 1000.0
    else:
        raise DatasetError(f"depth {path} is a {mode} PNG; it must be a 16-bit PNG in millimetres")
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


# scenes under a root ----------------------------------------------------------------------------
def scene_layout(directory: Path) -> str | None:
    """ "json", "colmap" or None (not a scene directory)."""
    if (directory / CAMERAS_JSON).is_file():
        return "json"
    if (directory / COLMAP_MODEL).is_dir():
        return "colmap"
    return None


def read_scenes(root: Path, min_num_images: int) -> list[tuple[str, list[CustomFrame]]]:
    """(scene name, frames) of every scene under `root` (or of `root` itself), in name order.

    Directories in neither layout and scenes with fewer than `min_num_images` usable frames are skipped with a
    warning; a root without any usable scene is a DatasetError.
    """
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a directory; expected {LAYOUTS}")
    if scene_layout(root):  # the root is itself one scene
        candidates = [root]
    else:
        candidates = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    scenes = []
    # a bar only for large roots: each scene stats all of its files
    for scene_dir in tqdm(candidates, desc="reading scenes", unit="scene", disable=len(candidates) < 50):
        layout = scene_layout(scene_dir)
        if layout is None:
            warnings.warn(f"skipping {scene_dir}: it has neither {CAMERAS_JSON} nor {COLMAP_MODEL}/", stacklevel=2)
            continue
        frames = load_json_scene(scene_dir) if layout == "json" else load_colmap_scene(scene_dir)
        if len(frames) < min_num_images:
            warnings.warn(
                f"dropping scene {scene_dir}: {len(frames)} usable frames, fewer than min_num_images={min_num_images}",
                stacklevel=2,
            )
            continue
        scenes.append((scene_dir.name, frames))
    if not scenes:
        raise DatasetError(f"no usable scene under {root}; expected {LAYOUTS}")
    return scenes

"""Procedural synthetic multi-view scenes, written in the Co3D layout so the Co3D dataset reads them unchanged.

Each sequence is one random scene: a textured ground square on the world plane z = 0 (world z points up)
with 1-3 textured boxes and spheres resting on it, lit by a fixed directional light (view-independent
shading, so a surface point has the same colour in every frame). A pinhole camera (horizontal field of
view 45-70 degrees, principal point near the image centre, square pixels) orbits the scene centre at a
varying radius and elevation, like a Co3D turntable video. Frames are rendered by vectorised NumPy ray
casting; depth is the exact z-depth along the camera axis at each integer pixel centre (the convention
of `training.data.base.unproject`), colour is 2x2 supersampled. Rays that hit nothing see the sky:
depth 0 and depth mask 0. Everything is a pure function of the seed; sequence i depends only on
(seed, i), so adding sequences leaves the existing ones unchanged.

Written under OUT (for category "synthetic", 2 sequences, 24 frames):

    OUT/manifest.json                                   parameters; a second call with the same ones is a no-op
    OUT/co3d/synthetic/seq0000/images/frame000001.jpg   RGB, JPEG quality 95
    OUT/co3d/synthetic/seq0000/depths/frame000001.jpg.geometric.png   16-bit PNG holding float16 depth bits
    OUT/co3d/synthetic/seq0000/depth_masks/frame000001.png            8-bit, 255 where depth is valid
    ...
    OUT/co3d_annotations/synthetic_train.jgz            gzip JSON {sequence: [{"filepath", "extri", "intri"}]}
    OUT/co3d_annotations/synthetic_test.jgz

"filepath" is relative to OUT/co3d, "extri" is the 3x4 OpenCV camera-from-world matrix, "intri" the 3x3
pixel intrinsics. Generate from the command line with `python -m training.data.synthetic --out DIR`.

This module imports nothing of this repository (numpy, Pillow and tqdm only): VGGT_npu.patch adds it byte for
byte to upstream's tree, where it runs as `python data/synthetic.py --out DIR` from upstream's training/.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from PIL import Image
from tqdm import tqdm

GENERATOR_VERSION = 1  # bump when the rendered output changes, so old caches are not mistaken for new ones
MANIFEST = "manifest.json"
TEMPORARY_PREFIX = ".partial-"  # files being written; renamed into place when complete
SUPERSAMPLE = 2  # colour rays per pixel side (anti-aliasing); depth comes from the pixel-centre ray
GROUND_HALF_SIZE = 5.0
FLOAT16_MAX = float(np.finfo(np.float16).max)
DEFAULT_SPLITS: Mapping[str, float] = {"train": 0.75, "test": 0.25}


# textures ---------------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


@dataclass
class ValueNoise:
    """Smooth 3-D lattice noise in [0, 1] from a seeded permutation table (Perlin-style hashing)."""

    perm: np.ndarray  # [256] uint8 permutation; uint8 sums wrap modulo 256 for free
    values: np.ndarray  # [256] float32 lattice values in [0, 1]

    @classmethod
    def random(cls, rng: np.random.Generator) -> ValueNoise:
        return cls(rng.permutation(256).astype(np.uint8), rng.random(256).astype(np.float32))

    def lattice(self, cells: np.ndarray) -> np.ndarray:
        """Integer lattice cells [N, 3] -> their values [N]."""
        c = cells.astype(np.uint8)  # wraps modulo 256, like the table
        p = self.perm
        return self.values[p[p[p[c[:, 0]] + c[:, 1]] + c[:, 2]]]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Points [N, 3] -> noise [N], trilinear between lattice values with smoothstep weights."""
        cell = np.floor(points)
        frac = (points - cell).astype(np.float32)
        weight = _smoothstep(frac)
        x, y, z = cell.astype(np.int64).astype(np.uint8).T
        p = self.perm
        out = np.zeros(len(points), np.float32)
        for dx in (0, 1):  # hash the x and y levels once and reuse them for the inner corners
            hx, wx = p[x + np.uint8(dx)], weight[:, 0] if dx else 1 - weight[:, 0]
            for dy in (0, 1):
                hy, wxy = p[hx + y + np.uint8(dy)], wx * (weight[:, 1] if dy else 1 - weight[:, 1])
                for dz in (0, 1):
                    wz = weight[:, 2] if dz else 1 - weight[:, 2]
                    out += wxy * wz * self.values[p[hy + z + np.uint8(dz)]]
        return out

    def fbm(self, points: np.ndarray, octaves: int = 3) -> np.ndarray:
        """Fractal sum of `octaves` noise layers, each twice the frequency and half the weight; in [0, 1]."""
        total, weight, norm = np.zeros(len(points), np.float32), 1.0, 0.0
        for octave in range(octaves):
            total += weight * self(points * 2.0**octave + 17.0 * octave)  # offset decorrelates the octaves
            norm += weight
            weight *= 0.5
        return total / norm


TEXTURE_KINDS = ("checker", "stripes", "noise", "cells")


@dataclass
class Texture:
    """A solid (3-D) texture: colour as a function of the surface point in the object's local frame."""

    kind: str  # one of TEXTURE_KINDS
    colors: np.ndarray  # [K, 3] palette in [0, 1]
    scale: float  # pattern period in scene units
    offset: np.ndarray  # [3] keeps cell borders off the faces of boxes
    axis: np.ndarray  # [3] unit stripe direction
    noise: ValueNoise

    @classmethod
    def random(cls, rng: np.random.Generator, kind: str | None = None) -> Texture:
        kind = kind or str(rng.choice(TEXTURE_KINDS))
        axis = rng.normal(size=3)
        return cls(
            kind=kind,
            colors=rng.uniform(0.05, 0.95, size=(8, 3)),
            scale=float(rng.uniform(0.15, 0.45)),
            offset=rng.uniform(0, 1, size=3),
            axis=axis / np.linalg.norm(axis),
            noise=ValueNoise.random(rng),
        )

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Points [N, 3] -> RGB [N, 3] in [0, 1]."""
        p = points / self.scale + self.offset
        c = self.colors
        if self.kind == "checker":
            odd = (np.floor(p).astype(np.int64).sum(axis=1) % 2)[:, None]
            rgb = np.where(odd == 1, c[0], c[1])
        elif self.kind == "stripes":
            w = 0.5 + 0.5 * np.tanh(3.0 * np.sin(np.pi * (p @ self.axis)))[:, None]
            rgb = w * c[0] + (1 - w) * c[1]
        elif self.kind == "noise":
            n = self.noise.fbm(p * 0.7)[:, None]
            rgb = np.where(n < 0.5, c[0] + (c[1] - c[0]) * 2 * n, c[1] + (c[2] - c[1]) * (2 * n - 1))
        else:  # cells: one palette colour per lattice cell, picked by the noise hash
            rgb = c[(self.noise.lattice(np.floor(p).astype(np.int64)) * len(c)).astype(np.int64) % len(c)]
        # fine noise everywhere breaks the periodicity, so features are unique and trackable
        return rgb * (0.75 + 0.5 * self.noise.fbm(points * 9.0, octaves=2))[:, None]


# primitives -------------------------------------------------------------------------------------
# Every `intersect` takes one ray origin [3] and directions [N, 3] whose camera-frame z component is 1,
# so the ray parameter t of a hit IS its z-depth; it returns (t [N] with inf for a miss, unit world
# normal [N, 3], texture-frame point [N, 3]).
Hit = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Ground:
    """The square |x|, |y| <= half_size on the plane z = 0."""

    half_size: float
    texture: Texture

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        with np.errstate(divide="ignore", invalid="ignore"):  # rays parallel to the ground never hit it
            t = -origin[2] / dirs[:, 2]
            points = origin + t[:, None] * dirs
            hit = (t > 0) & (np.abs(points[:, 0]) <= self.half_size) & (np.abs(points[:, 1]) <= self.half_size)
        normal = np.broadcast_to(np.array([0.0, 0.0, 1.0]), dirs.shape)
        return np.where(hit, t, np.inf), normal, points


@dataclass
class Sphere:
    center: np.ndarray  # [3]
    radius: float
    texture: Texture

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        oc = origin - self.center
        a = np.einsum("nk,nk->n", dirs, dirs)
        b = dirs @ oc
        disc = b * b - a * (oc @ oc - self.radius**2)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a  # nearer root; the camera is outside every sphere
        hit = (disc >= 0) & (t > 0)
        local = oc + t[:, None] * dirs
        return np.where(hit, t, np.inf), local / self.radius, local


@dataclass
class Box:
    """A box resting on the ground, rotated by `yaw` about the world z axis."""

    center: np.ndarray  # [3]
    half_extents: np.ndarray  # [3]
    yaw: float
    texture: Texture
    rotation: np.ndarray = field(init=False)  # [3, 3] local-from-world

    def __post_init__(self) -> None:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        self.rotation = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> Hit:
        o = self.rotation @ (origin - self.center)
        d = self.rotation @ dirs.T  # [3, N]: one contiguous row per axis (reductions over 3 columns are slow)
        d = np.where(np.abs(d) < 1e-12, 1e-12, d)  # axis-parallel rays: a huge slab parameter, not nan
        h = self.half_extents[:, None]
        t0, t1 = (-h - o[:, None]) / d, (h - o[:, None]) / d
        t_low, t_high = np.minimum(t0, t1), np.maximum(t0, t1)
        t_near = np.maximum(np.maximum(t_low[0], t_low[1]), t_low[2])
        t_far = np.minimum(np.minimum(t_high[0], t_high[1]), t_high[2])
        hit = (t_near <= t_far) & (t_near > 0)
        normal_local = np.where(t_low == t_near, -np.sign(d), 0.0)  # the slab entered last is the face hit
        local = o[:, None] + t_near * d
        return np.where(hit, t_near, np.inf), normal_local.T @ self.rotation, local.T


@dataclass
class Scene:
    primitives: list[Ground | Sphere | Box]
    light: np.ndarray  # [3] unit direction towards the light
    sky_horizon: np.ndarray  # [3]
    sky_zenith: np.ndarray  # [3]


def random_scene(rng: np.random.Generator) -> Scene:
    """A ground square and 1-3 boxes / spheres placed near the centre, each with a random texture."""
    primitives: list[Ground | Sphere | Box] = [Ground(GROUND_HALF_SIZE, Texture.random(rng))]
    for _ in range(int(rng.integers(1, 4))):
        radius, angle = rng.uniform(0.0, 1.2), rng.uniform(0, 2 * np.pi)
        x, y = radius * math.cos(angle), radius * math.sin(angle)
        if rng.random() < 0.5:
            r = float(rng.uniform(0.35, 0.75))
            primitives.append(Sphere(np.array([x, y, r]), r, Texture.random(rng)))
        else:
            half = rng.uniform(0.25, 0.6, size=3)
            primitives.append(Box(np.array([x, y, half[2]]), half, float(rng.uniform(0, np.pi)), Texture.random(rng)))
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
    return Scene(
        primitives=primitives,
        light=light / np.linalg.norm(light),
        sky_horizon=rng.uniform([0.75, 0.8, 0.85], [0.9, 0.92, 0.98]),
        sky_zenith=rng.uniform([0.25, 0.4, 0.7], [0.45, 0.6, 0.95]),
    )


# cameras ----------------------------------------------------------------------------------------
def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-from-world [3, 4] of a camera at `center` looking at `target`, image up = world +z."""
    forward = target - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera x (right), y (down), z (forward) in world
    return np.concatenate([rotation, -rotation @ center[:, None]], axis=1)


def orbit_cameras(rng: np.random.Generator, num_frames: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A turntable-like orbit: (extrinsics [M, 3, 4], shared intrinsic [3, 3])."""
    fov = math.radians(rng.uniform(45, 70))  # horizontal
    focal = (width / 2) / math.tan(fov / 2)
    cx = (width - 1) / 2 + rng.uniform(-0.02, 0.02) * width
    cy = (height - 1) / 2 + rng.uniform(-0.02, 0.02) * height
    intrinsic = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])

    start, sweep = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.0) * 2 * np.pi * rng.choice([-1, 1])
    elev_mid, elev_amp = rng.uniform(15, 35), rng.uniform(0, 10)
    rad_mid, rad_amp = rng.uniform(3.8, 5.0), rng.uniform(0, 0.6)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    extrinsics = []
    for k in range(num_frames):
        s = k / num_frames
        azimuth = start + sweep * s
        elevation = math.radians(elev_mid + elev_amp * math.sin(2 * np.pi * s + phase[0]))
        radius = rad_mid + rad_amp * math.sin(2 * np.pi * s + phase[1])
        center = radius * np.array(
            [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
        )
        target = np.array([0.0, 0.0, 0.3]) + rng.normal(0, 0.1, size=3)  # hand-held wobble
        extrinsics.append(look_at(center, target))
    return np.stack(extrinsics), intrinsic


# rendering --------------------------------------------------------------------------------------
def _cast(scene: Scene, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Hit]]:
    """Nearest hit per ray: (t [N], primitive index [N] or -1, every primitive's hits)."""
    hits = [p.intersect(origin, dirs) for p in scene.primitives]
    ts = np.stack([h[0] for h in hits])
    nearest = ts.argmin(axis=0)
    t = ts[nearest, np.arange(len(dirs))]
    return t, np.where(np.isfinite(t), nearest, -1), hits


def render(
    scene: Scene, extrinsic: np.ndarray, intrinsic: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 [H, W, 3], z-depth float32 [H, W] with 0 where the ray sees the sky)."""
    rotation, translation = extrinsic[:, :3], extrinsic[:, 3]
    origin = -rotation.T @ translation
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]

    def rays(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)  # camera z = 1: t is z-depth
        return cam.reshape(-1, 3) @ rotation  # R^T d, row-vector form

    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    depth, _, _ = _cast(scene, origin, rays(u, v))
    depth = np.where(np.isfinite(depth), depth, 0.0).reshape(height, width)

    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    ou, ov = np.meshgrid(offsets, offsets)
    sub_u = (u[..., None] + ou.ravel()).ravel()  # [H * W * S^2], pixel-major
    sub_v = (v[..., None] + ov.ravel()).ravel()
    dirs = rays(sub_u, sub_v)
    t, which, hits = _cast(scene, origin, dirs)

    up = dirs[:, 2] / np.sqrt(np.einsum("nk,nk->n", dirs, dirs))
    sky = np.clip(up, 0, 1)[:, None]
    rgb = (1 - sky) * scene.sky_horizon + sky * scene.sky_zenith
    for index, primitive in enumerate(scene.primitives):
        sel = np.flatnonzero(which == index)
        _, normal, local = hits[index]
        shade = 0.35 + 0.65 * np.clip(normal[sel] @ scene.light, 0, 1)  # ambient + Lambert: view-independent
        rgb[sel] = primitive.texture(local[sel]) * shade[:, None]
    rgb = rgb.reshape(height, width, SUPERSAMPLE**2, 3).transpose(2, 0, 1, 3).mean(axis=0)  # box filter
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), depth.astype(np.float32)


# Co3D file encodings (read back by training.data.co3d) -------------------------------------------
def encode_depth_png(depth: np.ndarray, name: str | Path = "depth") -> bytes:
    """Depth [H, W] as the bytes of a 16-bit PNG holding its float16 bit patterns (Co3D's depth encoding)."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth for {name} must be [H, W], got shape {depth.shape}")
    finite = depth[np.isfinite(depth)]
    if finite.size and np.abs(finite).max() > FLOAT16_MAX:
        raise ValueError(f"depth for {name} reaches {np.abs(finite).max():g}, beyond float16's {FLOAT16_MAX:g}")
    bits = depth.astype(np.float16).view(np.uint16).astype("<u2")
    height, width = bits.shape
    buffer = io.BytesIO()
    Image.frombytes("I;16", (width, height), bits.tobytes()).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_annotations(sequences: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """`{sequence: [frame dict]}` as gzip-compressed JSON with a zero timestamp (bytes depend only on the data)."""
    payload = {
        name: [
            {key: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for key, v in f.items()} for f in frames
        ]
        for name, frames in sequences.items()
    }
    return gzip.compress(json.dumps(payload).encode("utf-8"), mtime=0)


# writing ----------------------------------------------------------------------------------------
def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a per-process temporary file renamed into place: processes generating the same
    directory at once (e.g. DDP ranks) write identical bytes and never expose a half-written file."""
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _encode(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def _manifest_json(params: dict, complete: bool) -> bytes:
    return json.dumps({"params": params, "complete": complete}, indent=2).encode()


def _split_counts(num_sequences: int, splits: Mapping[str, float]) -> dict[str, int]:
    """Sequences per split by rounding the cumulative fractions (so the counts always sum up)."""
    bounds = np.rint(np.cumsum(list(splits.values())) * num_sequences).astype(int)
    return dict(zip(splits, np.diff(bounds, prepend=0).tolist()))


def _check_parameters(
    num_sequences: int, frames_per_sequence: int, image_size: Sequence[int], category: str, splits: Mapping
) -> None:
    if num_sequences < 1 or frames_per_sequence < 1:
        raise ValueError(f"need at least 1 sequence and 1 frame, got {num_sequences} and {frames_per_sequence}")
    if len(image_size) != 2 or min(image_size) < 8:
        raise ValueError(f"image_size must be (width, height) with both >= 8, got {tuple(image_size)}")
    if not category or "/" in category:
        raise ValueError(f"category {category!r} must be a non-empty name without '/'")
    if not splits or min(splits.values()) < 0 or abs(sum(splits.values()) - 1) > 1e-6:
        raise ValueError(f"splits must map split names to fractions >= 0 that sum to 1, got {dict(splits)}")


class SyntheticScenes(TypedDict):
    co3d_dir: Path  # the Co3D root (CO3D_DIR)
    annotation_dir: Path  # holds {category}_{split}.jgz (CO3D_ANNOTATION_DIR)
    manifest: Path
    category: str
    sequences: dict[str, list[str]]  # split -> sequence names
    generated: bool  # False when an identical earlier run was reused


def generate_scenes(
    out_dir: str | Path,
    num_sequences: int = 8,
    frames_per_sequence: int = 24,
    image_size: tuple[int, int] = (160, 120),
    seed: int = 0,
    category: str = "synthetic",
    splits: Mapping[str, float] | None = None,
    progress: bool = False,
) -> SyntheticScenes:
    """Render `num_sequences` scenes of `frames_per_sequence` frames at `image_size` (W, H) into `out_dir`.

    `splits` maps split names to fractions of the sequences (default 75 % train, 25 % test); sequences are
    assigned in order. Reuses `out_dir` when its manifest records the same parameters; refuses a
    directory that holds anything else. Every file is renamed into place once written, so processes
    generating the same directory at once (DDP ranks) are safe, if redundant.
    """
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    _check_parameters(num_sequences, frames_per_sequence, image_size, category, splits)
    out_dir = Path(out_dir)
    width, height = int(image_size[0]), int(image_size[1])
    params = {
        "version": GENERATOR_VERSION,
        "num_sequences": num_sequences,
        "frames_per_sequence": frames_per_sequence,
        "image_size": [width, height],
        "seed": seed,
        "category": category,
        "splits": splits,
    }
    co3d_dir, annotation_dir, manifest = out_dir / "co3d", out_dir / "co3d_annotations", out_dir / MANIFEST
    names = [f"seq{i:04d}" for i in range(num_sequences)]
    bounds = np.cumsum([0, *_split_counts(num_sequences, splits).values()])
    sequences = {split: names[bounds[k] : bounds[k + 1]] for k, split in enumerate(splits)}
    result = SyntheticScenes(
        co3d_dir=co3d_dir,
        annotation_dir=annotation_dir,
        manifest=manifest,
        category=category,
        sequences=sequences,
        generated=False,
    )

    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded.get("params") == json.loads(json.dumps(params)):
            if recorded.get("complete"):
                return result
        else:
            raise FileExistsError(
                f"{out_dir} holds synthetic scenes generated with other parameters ({manifest}: "
                f"{recorded.get('params')}); pass another output directory or delete this one"
            )
    elif out_dir.exists() and any(not p.name.startswith(TEMPORARY_PREFIX) for p in out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and has no {MANIFEST}; pass an empty or new directory")

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(manifest, _manifest_json(params, complete=False))
    annotation_dir.mkdir(exist_ok=True)
    annotations: dict[str, list[dict]] = {}
    bar = tqdm(total=num_sequences * frames_per_sequence, desc="rendering", unit="frame", disable=not progress)
    for index, name in enumerate(names):
        rng = np.random.default_rng([seed, index])  # per sequence: independent of num_sequences
        scene = random_scene(rng)
        extrinsics, intrinsic = orbit_cameras(rng, frames_per_sequence, width, height)
        seq_dir = co3d_dir / category / name
        for sub in ("images", "depths", "depth_masks"):
            (seq_dir / sub).mkdir(parents=True, exist_ok=True)
        frames = []
        for k, extrinsic in enumerate(extrinsics, start=1):
            rgb, depth = render(scene, extrinsic, intrinsic, width, height)
            stem = f"frame{k:06d}"
            mask = Image.fromarray(np.where(depth > 0, 255, 0).astype(np.uint8))
            _write_atomically(
                seq_dir / "images" / f"{stem}.jpg", _encode(Image.fromarray(rgb), format="JPEG", quality=95)
            )
            _write_atomically(seq_dir / "depths" / f"{stem}.jpg.geometric.png", encode_depth_png(depth))
            _write_atomically(seq_dir / "depth_masks" / f"{stem}.png", _encode(mask, format="PNG"))
            frames.append(
                {
                    "filepath": f"{category}/{name}/images/{stem}.jpg",
                    "extri": extrinsic.tolist(),
                    "intri": intrinsic.tolist(),
                }
            )
            bar.update()
        annotations[name] = frames
    bar.close()
    for split, split_names in sequences.items():
        split_annotations = {n: annotations[n] for n in split_names}
        _write_atomically(annotation_dir / f"{category}_{split}.jgz", encode_annotations(split_annotations))
    _write_atomically(manifest, _manifest_json(params, complete=True))  # last: marks the run complete
    result["generated"] = True
    return result


# command line -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.synthetic",
        description=(
            "Render procedural multi-view scenes (textured ground, boxes and spheres seen by an orbiting\n"
            "pinhole camera, with exact depth) in the Co3D layout, for tests, demos and smoke training.\n"
            "Writes OUT/co3d (the Co3D root), OUT/co3d_annotations ({category}_{split}.jgz) and\n"
            "OUT/manifest.json. Running again with the same arguments reuses OUT and does nothing.\n"
            "Read them with training.data.co3d.Co3dDataset(OUT/co3d, OUT/co3d_annotations,\n"
            "categories=[CATEGORY], min_num_images=M or fewer)."
        ),
        epilog=(
            "examples:\n"
            "  python -m training.data.synthetic --out data/synthetic\n"
            "  python -m training.data.synthetic --out /tmp/syn --sequences 2 --frames 8 --size 96 72 --seed 1"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory: new, empty, or an earlier run's")
    parser.add_argument("--sequences", type=int, default=8, metavar="N", help="number of scenes (default 8)")
    parser.add_argument("--frames", type=int, default=24, metavar="M", help="frames per scene (default 24)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"), help="image size (default 160 120)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    parser.add_argument("--category", default="synthetic", help="Co3D category name (default synthetic)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_SPLITS["test"],
        metavar="F",
        help="fraction of the sequences in the test split, the rest is train (default 0.25)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the generator CLI with `argv` (default: sys.argv[1:]) and return the exit status."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        result = generate_scenes(
            args.out,
            num_sequences=args.sequences,
            frames_per_sequence=args.frames,
            image_size=tuple(args.size),
            seed=args.seed,
            category=args.category,
            splits={"train": 1 - args.test_fraction, "test": args.test_fraction},
            progress=True,
        )
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    if result["generated"]:
        print(f"rendered {args.sequences} x {args.frames} frames at {args.size[0]}x{args.size[1]} in {seconds:.1f} s")
    else:
        print(f"{args.out} already holds these scenes ({result['manifest']}); nothing to do")
    counts = ", ".join(f"{split} {len(names)}" for split, names in result["sequences"].items())
    print(f"sequences: {counts}")
    print(f"CO3D_DIR            = {result['co3d_dir']}")
    print(f"CO3D_ANNOTATION_DIR = {result['annotation_dir']}")
    print(f"category {result['category']!r}; pass min_num_images <= {args.frames} to the Co3D dataset")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The contract every training dataset follows, and the sample it produces.

A dataset is a list of sequences of posed frames (image, optional depth, OpenCV camera-from-world
extrinsic, pixel intrinsic). Subclasses say where the frames are and how depth is stored;
`MultiViewDataset.__getitem__` turns a `SampleRequest` (sequence, frame count, aspect ratio, seed)
into a training sample. Everything random in a sample comes from the request's seed, so a sample
is a pure function of the request: resumed runs and any number of workers see the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from training.data.augment import AugmentConfig, augment_colors, process_frame, target_shape
from training.data.tracks import build_tracks
from vggt.scenes.frame import DatasetError, Frame
from vggt.utils.geometry import depth_to_camera_points

MIN_VALID_DEPTH = 1e-8


@dataclass(frozen=True)
class SampleRequest:
    """What the batch sampler asks a dataset for."""

    index: int  # sequence index in [0, len(dataset))
    num_frames: int
    aspect_ratio: float  # target H / W
    seed: int  # seeds every random choice of this sample


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]."""
    if not Path(path).is_file():
        raise DatasetError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"image {path} cannot be read: {err}") from err


def unproject(depth: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth [H, W] -> (camera points, world points) [H, W, 3] at integer pixel coordinates."""
    cam = depth_to_camera_points(depth[None], intrinsic[None])[0].astype(np.float32)
    rotation, translation = extrinsic[:, :3], extrinsic[:, 3]
    world = (cam - translation) @ rotation  # R^T (x - t), row-vector form
    return cam, world.astype(np.float32)


class MultiViewDataset(Dataset):
    """Base class: subclasses implement `__len__`, `sequence_name`, `sequence_frames` and `read_depth`."""

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        augment: AugmentConfig | None = None,
        track_num: int = 0,
        allow_duplicate_img: bool = True,
    ):
        self.img_size = img_size
        self.patch_size = patch_size
        self.augment = augment or AugmentConfig.off()
        self.track_num = track_num
        self.allow_duplicate_img = allow_duplicate_img

    # subclass API ---------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def sequence_name(self, index: int) -> str:
        raise NotImplementedError

    def sequence_frames(self, index: int) -> Sequence[Frame]:
        raise NotImplementedError

    def read_depth(self, frame: Frame) -> np.ndarray:
        """Depth [H, W] float32 in scene units; 0 where invalid."""
        raise NotImplementedError

    def build_warnings(self) -> list[str]:
        """What the user should know about the data found at build time (logged once, by rank 0)."""
        return []

    # sampling -------------------------------------------------------------------------------
    def choose_frames(self, num_available: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Frames drawn with replacement when allow_duplicate_img (upstream's default), else distinct ones
        (repeats only when the sequence has fewer frames than asked for)."""
        replace = self.allow_duplicate_img or num_available < num_frames
        return rng.choice(num_available, num_frames, replace=replace)

    def __getitem__(self, request: SampleRequest) -> dict[str, Any]:
        rng = np.random.default_rng(request.seed)
        frames = self.sequence_frames(request.index)
        ids = self.choose_frames(len(frames), request.num_frames, rng)
        shape = target_shape(request.aspect_ratio, self.img_size, self.patch_size)

        images, depths, extrinsics, intrinsics = [], [], [], []
        for i in ids:
            frame = frames[i]
            image = read_image(frame.image_path)
            depth = self.read_depth(frame)
            if depth.shape != image.shape[:2]:
                raise DatasetError(
                    f"depth of {frame.image_path} is {depth.shape[1]}x{depth.shape[0]} but the image is "
                    f"{image.shape[1]}x{image.shape[0]}; depth maps must have the image's resolution"
                )
            image, depth, intrinsic = process_frame(
                image, depth, np.asarray(frame.intrinsic, np.float32), shape, self.augment, rng
            )
            images.append(image)
            depths.append(depth)
            extrinsics.append(np.asarray(frame.extrinsic, np.float32))
            intrinsics.append(intrinsic.astype(np.float32))

        points = [unproject(d, e, k) for d, e, k in zip(depths, extrinsics, intrinsics)]
        depth_stack = np.stack(depths).astype(np.float32)
        images_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        sample = {
            "seq_name": self.sequence_name(request.index),
            "ids": torch.from_numpy(ids.astype(np.int64)),
            "images": augment_colors(images_t, self.augment, rng),
            "depths": torch.from_numpy(depth_stack),
            "extrinsics": torch.from_numpy(np.stack(extrinsics)),
            "intrinsics": torch.from_numpy(np.stack(intrinsics)),
            "cam_points": torch.from_numpy(np.stack([p[0] for p in points])),
            "world_points": torch.from_numpy(np.stack([p[1] for p in points])),
            "point_masks": torch.from_numpy(depth_stack > MIN_VALID_DEPTH),
        }
        if self.track_num > 0:
            sample.update(build_tracks(sample, self.track_num, rng))
        return sample

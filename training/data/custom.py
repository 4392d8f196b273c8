"""Your own posed RGB-D scenes as a training dataset (the JSON and COLMAP layouts of vggt.scenes.custom_layout).

`CustomSceneDataset(root)` treats every sub-directory of `root` as one scene (one sequence of frames);
`root` may also be a single scene directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data.augment import AugmentConfig
from training.data.base import MultiViewDataset
from vggt.scenes.custom_layout import CustomFrame, read_depth_file, read_scenes


class CustomSceneDataset(MultiViewDataset):
    """Scenes under `root` in the JSON or COLMAP layout (vggt.scenes.custom_layout); one scene = one sequence."""

    def __init__(
        self,
        root: str | Path,
        min_num_images: int = 2,
        img_size: int = 518,
        patch_size: int = 14,
        augment: AugmentConfig | None = None,
        track_num: int = 0,
        allow_duplicate_img: bool = True,
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            augment=augment,
            track_num=track_num,
            allow_duplicate_img=allow_duplicate_img,
        )
        self.root = Path(root)
        scenes = read_scenes(self.root, min_num_images)
        self.names: list[str] = [name for name, _ in scenes]
        self.frames: list[list[CustomFrame]] = [frames for _, frames in scenes]

    def __len__(self) -> int:
        return len(self.frames)

    def sequence_name(self, index: int) -> str:
        return self.names[index]

    def sequence_frames(self, index: int) -> Sequence[CustomFrame]:
        return self.frames[index]

    def read_depth(self, frame: CustomFrame) -> np.ndarray:
        return read_depth_file(frame.depth_path) * np.float32(frame.depth_scale)

"""build_dataset: the dataset a split config (data.train / data.val) names, by its kind."""

from __future__ import annotations

from omegaconf import DictConfig

from training.data.augment import AugmentConfig
from training.data.base import MultiViewDataset
from training.data.co3d import Co3dDataset
from training.data.custom import CustomSceneDataset
from training.data.synthetic import generate_scenes

DATASET_KINDS = ("co3d", "custom", "synthetic")


def build_dataset(split: DictConfig, data: DictConfig) -> MultiViewDataset:
    """The dataset of one split config (data.train / data.val); `data` holds the shared image settings."""
    common = {
        "img_size": data.img_size,
        "patch_size": data.patch_size,
        "augment": AugmentConfig() if split.get("augment", False) else AugmentConfig.off(),
        "track_num": split.get("track_num", 0),
        "allow_duplicate_img": split.get("allow_duplicate_img", True),
    }
    if split.kind == "co3d":
        return Co3dDataset(
            split.co3d_dir,
            split.annotation_dir,
            split=split.split,
            categories=list(split.categories) if split.get("categories") else None,
            min_num_images=split.min_num_images,
            **common,
        )
    if split.kind == "custom":
        return CustomSceneDataset(split.root, min_num_images=split.min_num_images, **common)
    if split.kind == "synthetic":
        scenes = generate_scenes(
            split.cache_dir,
            num_sequences=split.num_sequences,
            frames_per_sequence=split.frames_per_sequence,
            image_size=tuple(split.scene_size),
            seed=split.scene_seed,
            progress=True,
        )
        return Co3dDataset(
            scenes["co3d_dir"],
            scenes["annotation_dir"],
            split=split.split,
            categories=[scenes["category"]],
            min_num_images=split.min_num_images,
            depth_percentile_clip=None,  # rendered depth is exact: nothing to clip
            **common,
        )
    raise ValueError(f"data kind {split.kind!r} is not one of {DATASET_KINDS}")

"""Augmentations: target shapes, intrinsics that follow crops and resizes, colour ops against references."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from training.data.augment import AugmentConfig, _shift_hue, augment_colors, process_frame, target_shape
from training.data.base import unproject

H, W = 48, 64
K = np.array([[50.0, 0.0, 30.3], [0.0, 52.0, 22.7], [0.0, 0.0, 1.0]], np.float32)  # principal point off centre


def pixel_id_depth(height: int = H, width: int = W) -> np.ndarray:
    """[h, w] depth 1 + (v * w + u) / (h * w): every value names the pixel it sits on."""
    v, u = np.mgrid[:height, :width]
    return (1 + (v * width + u) / (height * width)).astype(np.float32)


def random_image(height: int = H, width: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("aspect", "expected"), [(1.0, (518, 518)), (0.33, (168, 518)), (0.5, (252, 518))])
def test_target_shape_rounds_the_height_down_to_the_patch_size(aspect: float, expected: tuple[int, int]) -> None:
    # 518 * 0.33 = 170.94 -> 170 -> 12 patches of 14 = 168; 518 * 0.5 = 259 -> 18 patches = 252
    assert target_shape(aspect) == expected


@pytest.mark.parametrize("size", [(H, W), (W, H), (20, 16)])  # landscape, portrait, smaller than the target
@pytest.mark.parametrize("augment", [AugmentConfig(), AugmentConfig.off()], ids=["train", "off"])
def test_process_frame_output_has_the_target_shape(size: tuple[int, int], augment: AugmentConfig) -> None:
    for seed, aspect in enumerate([0.33, 0.6, 1.0]):
        shape = target_shape(aspect, img_size=56)
        image, depth, intrinsic = process_frame(
            random_image(*size), pixel_id_depth(*size), K, shape, augment, np.random.default_rng(seed)
        )
        assert image.shape == (*shape, 3) and image.dtype == np.uint8
        assert depth.shape == shape and intrinsic.shape == (3, 3)


@pytest.mark.parametrize("img_size", [42, 112])  # shrinking and enlarging resizes
def test_processed_pixels_project_back_onto_the_original_pixel_their_depth_came_from(img_size: int) -> None:
    for seed in range(6):
        shape = target_shape([0.33, 0.7, 1.0][seed % 3], img_size=img_size)
        _, depth, intrinsic = process_frame(
            random_image(), pixel_id_depth(), K, shape, AugmentConfig(), np.random.default_rng(seed)
        )
        cam, _ = unproject(depth, np.eye(3, 4, dtype=np.float32), intrinsic)
        valid = depth > 0
        assert valid.all()  # no padding needed at these sizes
        # independent pinhole projection into the original camera
        u = K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2]
        v = K[1, 1] * cam[..., 1] / cam[..., 2] + K[1, 2]
        src_v, src_u = np.divmod(np.rint((depth - 1) * H * W).astype(np.int64), W)
        np.testing.assert_array_equal(pixel_id_depth()[src_v, src_u], depth)  # depths are copied, never mixed
        # nearest-neighbour resampling: the source pixel is the nearest one (ties at exactly half a pixel)
        assert np.abs(u - src_u).max() <= 0.5 + 1e-3 and np.abs(v - src_v).max() <= 0.5 + 1e-3


def test_hue_shift_matches_colorsys() -> None:
    pixels = [(0.9, 0.2, 0.1), (0.1, 0.8, 0.3), (0.2, 0.3, 0.95), (0.5, 0.5, 0.5), (1.0, 0.0, 1.0), (0.0, 0.0, 0.0)]
    images = torch.tensor(pixels, dtype=torch.float32).T.reshape(3, 1, len(pixels))
    for shift in (0.07, -0.1, 0.5):
        shifted = _shift_hue(images, shift).reshape(3, -1).T
        for pixel, result in zip(pixels, shifted):
            h, s, v = colorsys.rgb_to_hsv(*pixel)
            expected = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
            np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)


def test_grayscale_gives_equal_channels_holding_the_luma() -> None:
    images = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    augment = AugmentConfig(color_jitter_prob=0.0, grayscale_prob=1.0)
    for seed in range(4):  # covers the shared (cojitter) and the per-frame transform
        gray = augment_colors(images, augment, np.random.default_rng(seed))
        luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
        for channel in range(3):
            torch.testing.assert_close(gray[:, channel], luma, atol=1e-6, rtol=0)


def test_augment_off_leaves_colours_unchanged() -> None:
    images = torch.rand(3, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(augment_colors(images, AugmentConfig.off(), np.random.default_rng(0)), images)


def run_augmentations(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    image, depth, intrinsic = process_frame(random_image(), pixel_id_depth(), K, (28, 56), AugmentConfig(), rng)
    colours = augment_colors(torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255, AugmentConfig(), rng)
    return image, depth, intrinsic, colours


def test_same_rng_seed_gives_identical_outputs() -> None:
    first, second = run_augmentations(5), run_augmentations(5)
    for a, b in zip(first[:3], second[:3]):
        np.testing.assert_array_equal(a, b)
    assert torch.equal(first[3], second[3])
    assert not np.array_equal(run_augmentations(6)[2], first[2])  # and the seed matters

"""The pieces of `vggt predict` that carry geometry: preprocessing maps, query selection, colours, the render."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vggt.predict.colormap import colorize
from vggt.predict.geometry import model_index_to_original, original_index_to_model
from vggt.predict.points import PointCloud
from vggt.predict.render import RENDER_SIZE, preview_camera, render_points
from vggt.predict.tracks import select_query_frames, select_query_pixels
from vggt.utils.load_fn import load_and_preprocess_images_with_transforms


def dot_image(path: Path, size: tuple[int, int], dot: tuple[int, int], radius: int = 6) -> np.ndarray:
    """A black image with a red square of side 2*radius centred on continuous point `dot`; returns the dot."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    x, y = dot
    pixels[y - radius : y + radius, x - radius : x + radius, 0] = 255
    Image.fromarray(pixels).save(path)
    return np.array(dot, dtype=np.float64)  # the square covers [x - r, x + r): its centre is x in continuous coords


def red_centroid(image: np.ndarray) -> np.ndarray:
    """Redness-weighted (u, v) pixel-index centroid of a [3, H, W] image (white padding is not red)."""
    weight = np.clip(image[0] - image[1] - 0.5, 0, None)
    v, u = np.nonzero(weight)
    return np.array([np.average(u, weights=weight[v, u]), np.average(v, weights=weight[v, u])])


@pytest.mark.parametrize(
    ("mode", "size", "dot"),
    [
        ("crop", (400, 700), (130, 300)),  # tall: rescaled to 518 wide, 504 rows cropped off the centre
        ("crop", (640, 300), (500, 90)),  # wide: nothing cropped
        ("pad", (300, 640), (70, 500)),  # portrait: padded left and right
    ],
)
def test_a_dot_lands_where_the_transform_says_and_maps_back(tmp_path: Path, mode, size, dot) -> None:
    expected = dot_image(tmp_path / "dot.png", size, dot)
    images, (transform,) = load_and_preprocess_images_with_transforms([tmp_path / "dot.png"], mode=mode)
    found = red_centroid(images[0].numpy())
    np.testing.assert_allclose(found, original_index_to_model(expected - 0.5, transform), atol=0.15)
    np.testing.assert_allclose(model_index_to_original(found, transform), expected, atol=0.2 / min(transform.scale))


def test_batch_padding_of_mixed_sizes_shifts_the_transform(tmp_path: Path) -> None:
    wide = dot_image(tmp_path / "a.png", (640, 320), (100, 100))
    square = dot_image(tmp_path / "b.png", (300, 300), (150, 150))
    with pytest.warns(UserWarning, match="different"):
        images, transforms = load_and_preprocess_images_with_transforms([tmp_path / "a.png", tmp_path / "b.png"])
    assert images.shape[-2:] == (518, 518)
    assert transforms[0].content == (0, 133, 518, 385)  # 518x252 centred vertically in 518 rows
    for image, transform, dot in zip(images, transforms, (wide, square)):
        np.testing.assert_allclose(model_index_to_original(red_centroid(image.numpy()), transform), dot, atol=0.3)


def test_query_pixels_are_the_most_confident_valid_pixel_of_each_cell() -> None:
    confidence = np.zeros((8, 8))
    confidence[1, 2], confidence[6, 5], confidence[2, 6] = 5.0, 3.0, 9.0
    valid = np.ones((8, 8), dtype=bool)
    valid[2, 6] = False  # the best pixel is padding

    pixels = select_query_pixels(confidence, valid, count=4)  # 4 cells of 4x4

    assert pixels[:2].tolist() == [[2, 1], [5, 6]]  # (u, v), most confident first
    assert [6, 2] not in pixels.tolist() and len(pixels) == 4


def test_query_frames_start_at_frame_0_and_spread_out() -> None:
    centers = np.array([[0.0, 0, 0], [0.1, 0, 0], [5, 0, 0], [2.4, 0, 0], [5.1, 0, 0]])
    extrinsic = np.concatenate([np.tile(np.eye(3), (5, 1, 1)), -centers[:, :, None]], axis=2)  # R = I, t = -C
    assert select_query_frames(extrinsic, 3) == [0, 4, 3]


def test_colormap_brightness_rises_with_the_value() -> None:
    rgb = colorize(np.linspace(0, 1, 256), 0, 1).astype(np.float64)
    luminance = rgb @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(luminance) >= 0) and luminance[-1] - luminance[0] > 180


def test_render_puts_the_cloud_centre_mid_image_and_draws_the_cameras() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.normal([0, 0, 5], 0.05, size=(500, 3)).astype(np.float32)
    cloud = PointCloud(
        xyz, np.tile([[255, 0, 0]], (500, 1)).astype(np.uint8), np.ones(500), np.zeros(500), np.zeros((500, 2))
    )
    extrinsic = np.stack([np.eye(3, 4), np.hstack([np.eye(3), [[-1.0], [0], [0]]])])
    intrinsic = np.stack([np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])] * 2)

    picture = render_points(cloud, extrinsic, intrinsic, (48, 64))

    assert picture.shape == (RENDER_SIZE[1], RENDER_SIZE[0], 3)
    red = (picture[..., 0] > 100) & (picture[..., 1] < 60) & (picture[..., 2] < 60)
    centroid = np.argwhere(red).mean(axis=0)
    np.testing.assert_allclose(centroid, [RENDER_SIZE[1] / 2, RENDER_SIZE[0] / 2], atol=4)
    frustum_pixels = ~red & (picture.min(axis=-1) < 250)
    assert frustum_pixels.sum() > 100
    view = preview_camera(cloud, extrinsic)
    assert (view[:, :3] @ np.zeros(3) + view[:, 3])[2] > 0  # the first camera is in front of the preview camera

"""Image loading and preprocessing against upstream outputs and hand-made images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import write_png_claiming_size
from vggt.utils.load_fn import load_and_preprocess_images, load_and_preprocess_images_square, preprocessed_shape

FIXTURES = Path(__file__).parent / "fixtures"
PREPROCESS = FIXTURES / "preprocess"
MAX_TOL = 2 / 255
MEAN_TOL = 1e-3
FILES = [str(PREPROCESS / name) for name in json.loads((PREPROCESS / "files.json").read_text())]


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(PREPROCESS / "expected.npz") as data:
        return {key: data[key] for key in data.files}


def _assert_close_to_reference(actual: torch.Tensor, reference: np.ndarray) -> None:
    assert actual.dtype == torch.float32
    assert tuple(actual.shape) == reference.shape
    diff = np.abs(actual.numpy() - reference)
    assert diff.max() <= MAX_TOL and diff.mean() <= MEAN_TOL


def _save(tmp_path: Path, name: str, pixels: np.ndarray) -> str:
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return str(path)


def _solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("index", range(len(FILES)))
def test_single_image_matches_upstream(expected, mode, index):
    _assert_close_to_reference(
        load_and_preprocess_images([FILES[index]], mode=mode), expected[f"single_{mode}/{index}"]
    )


def test_mixed_crop_sizes_match_upstream_and_warn_naming_the_shapes(expected):
    with pytest.warns(UserWarning, match=r"different \(H, W\).*\(294, 518\).*\(518, 518\)"):
        images = load_and_preprocess_images(FILES, mode="crop")
    _assert_close_to_reference(images, expected["all_crop"])


def test_pad_mode_batch_matches_upstream_without_warning(expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = load_and_preprocess_images(FILES, mode="pad")
    _assert_close_to_reference(images, expected["all_pad"])


def test_crop_mode_fixes_width_and_rounds_height_to_patch_multiple(tmp_path):
    # 300 * 518 / 1000 / 14 = 11.1 -> 11 patches -> 154 rows; short images are not padded.
    images = load_and_preprocess_images([_save(tmp_path, "wide.png", _solid(300, 1000, (10, 200, 30)))])
    assert images.shape == (1, 3, 154, 518)
    np.testing.assert_allclose(images[0, :, 77, 259].numpy(), np.array([10, 200, 30]) / 255, atol=1e-6)


def test_crop_mode_keeps_the_vertical_centre_of_tall_images(tmp_path):
    pixels = np.concatenate(
        [_solid(100, 100, (255, 0, 0)), _solid(100, 100, (0, 255, 0)), _solid(100, 100, (0, 0, 255))]
    )
    # Resized to 518 x 1554, the centred 518-row window is exactly the green middle third.
    images = load_and_preprocess_images([_save(tmp_path, "tall.png", pixels)])
    assert images.shape == (1, 3, 518, 518)
    np.testing.assert_allclose(images[0, :, 10:-10].mean(dim=(1, 2)).numpy(), [0.0, 1.0, 0.0], atol=1e-6)


def test_pad_mode_fits_larger_side_and_pads_white_symmetrically(tmp_path):
    # Portrait 280 x 400: height -> 518, width round(280 * 518 / 400 / 14) * 14 = 364, padded 77 + 77.
    images = load_and_preprocess_images([_save(tmp_path, "portrait.png", _solid(400, 280, (0, 0, 0)))], mode="pad")
    assert images.shape == (1, 3, 518, 518)
    assert torch.all(images[0, :, :, :77] == 1.0) and torch.all(images[0, :, :, -77:] == 1.0)
    assert torch.all(images[0, :, :, 80:-80] == 0.0)


def test_mixed_sizes_are_padded_white_and_centred(tmp_path):
    landscape = _save(tmp_path, "landscape.png", _solid(588, 1036, (0, 0, 0)))
    square = _save(tmp_path, "square.png", _solid(518, 518, (0, 0, 0)))
    with pytest.warns(UserWarning, match=r"\(294, 518\).*padding all to \(518, 518\)"):
        images = load_and_preprocess_images([landscape, square])
    assert images.shape == (2, 3, 518, 518)
    # 518 - 294 = 224 rows of white, 112 above and 112 below.
    assert torch.all(images[0, :, :112] == 1.0) and torch.all(images[0, :, -112:] == 1.0)
    assert torch.all(images[0, :, 115:-115] == 0.0) and torch.all(images[1] == 0.0)


def test_transparent_rgba_pixels_become_white(tmp_path):
    rgba = np.zeros((100, 200, 4), np.uint8)
    rgba[:, :, 0] = 255  # hidden red under the transparent half
    rgba[:, 100:] = (0, 0, 255, 255)
    images = load_and_preprocess_images([_save(tmp_path, "alpha.png", rgba)])
    np.testing.assert_allclose(images[0, :, :, :250].mean(dim=(1, 2)).numpy(), [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(images[0, :, :, 270:].mean(dim=(1, 2)).numpy(), [0.0, 0.0, 1.0], atol=1e-6)


def test_a_single_path_is_treated_as_a_one_image_list():
    as_list = load_and_preprocess_images([FILES[0]])
    torch.testing.assert_close(load_and_preprocess_images(FILES[0]), as_list, rtol=0, atol=0)
    torch.testing.assert_close(load_and_preprocess_images(Path(FILES[0])), as_list, rtol=0, atol=0)


def test_square_loader_pads_black_and_reports_the_image_box(tmp_path):
    path = _save(tmp_path, "wide.png", _solid(20, 40, (200, 100, 50)))
    images, coords = load_and_preprocess_images_square([path], target_size=64)
    assert images.shape == (1, 3, 64, 64) and images.dtype == torch.float32
    assert coords.dtype == torch.float32
    # 40 x 20 sits at rows 10..30 of a 40 x 40 square; scaled by 64 / 40 that is rows 16..48.
    torch.testing.assert_close(coords, torch.tensor([[0.0, 16.0, 64.0, 48.0, 40.0, 20.0]]))
    assert torch.all(images[0, :, :12] == 0.0) and torch.all(images[0, :, -12:] == 0.0)
    np.testing.assert_allclose(images[0, :, 22:42].mean(dim=(1, 2)).numpy(), np.array([200, 100, 50]) / 255, atol=1e-6)


def test_square_loader_centres_portrait_images_horizontally(tmp_path):
    paths = [
        _save(tmp_path, "tall.png", _solid(30, 10, (255, 255, 255))),
        _save(tmp_path, "sq.png", _solid(8, 8, (0, 0, 0))),
    ]
    images, coords = load_and_preprocess_images_square(paths, target_size=60)
    assert images.shape == (2, 3, 60, 60)
    torch.testing.assert_close(coords[0], torch.tensor([20.0, 0.0, 40.0, 60.0, 10.0, 30.0]))
    torch.testing.assert_close(coords[1], torch.tensor([0.0, 0.0, 60.0, 60.0, 8.0, 8.0]))


def test_empty_image_list_is_rejected():
    with pytest.raises(ValueError, match="image_path_list is empty"):
        load_and_preprocess_images([])
    with pytest.raises(ValueError, match="image_path_list is empty"):
        load_and_preprocess_images_square([])


def test_unknown_mode_is_rejected_listing_valid_modes():
    with pytest.raises(ValueError, match="Unknown mode 'resize'; use 'crop' or 'pad'"):
        load_and_preprocess_images(FILES, mode="resize")


def test_missing_file_is_reported_by_name(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="not found: .*nope.png"):
        load_and_preprocess_images([FILES[0], str(missing)])


def test_non_image_file_is_reported_by_name(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="Cannot read .*notes.png.* as an image"):
        load_and_preprocess_images([str(text)])


def test_directory_is_rejected_by_name(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path.name}.* is a directory"):
        load_and_preprocess_images([str(tmp_path)])


def test_square_loader_rejects_a_non_positive_target_size():
    with pytest.raises(ValueError, match="target_size must be a positive integer, got 0"):
        load_and_preprocess_images_square(FILES[:1], target_size=0)


def test_an_image_claiming_too_many_pixels_is_refused_naming_it(tmp_path):
    bomb = write_png_claiming_size(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ValueError, match="huge.png' claims too many pixels") as caught:
        load_and_preprocess_images([str(bomb)])
    assert "400000000 pixels" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_preprocessed_shape_from_headers_is_the_loaded_batch_shape(tmp_path, mode):
    sizes = [(320, 180), (200, 600), (640, 480), (37, 91)]  # wide, tall (cropped), 4:3, odd
    paths = []
    for index, size in enumerate(sizes):
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", size, (index * 40, 0, 0)).save(paths[-1])
    for subset in (paths[:1], paths[:2], paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mixed sizes warn
            loaded = load_and_preprocess_images([str(p) for p in subset], mode, 224)
        assert preprocessed_shape(subset, mode, 224) == tuple(loaded.shape[-2:]), (mode, len(subset))

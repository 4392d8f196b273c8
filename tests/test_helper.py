"""vggt.utils.helper: upstream's drop-in pixel grid and random mask thinning, checked against NumPy done by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vggt.utils.helper import create_pixel_coordinate_grid, randomly_limit_trues


def test_pixel_grid_holds_column_row_and_frame_of_every_pixel() -> None:
    frames, height, width = 3, 4, 5
    grid = create_pixel_coordinate_grid(frames, height, width)
    assert grid.shape == (frames, height, width, 3) and grid.dtype == np.float32
    frame, row, column = np.indices((frames, height, width))
    np.testing.assert_array_equal(grid[..., 0], column)
    np.testing.assert_array_equal(grid[..., 1], row)
    np.testing.assert_array_equal(grid[..., 2], frame)
    np.testing.assert_array_equal(grid[2, 3, 1], [1.0, 3.0, 2.0])  # x = column 1, y = row 3, frame 2


@pytest.mark.parametrize(("frames", "height", "width"), [(-1, 2, 2), (1, 2.5, 2)])
def test_pixel_grid_rejects_negative_or_fractional_sizes(frames, height, width) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        create_pixel_coordinate_grid(frames, height, width)


def _mask(shape: tuple[int, ...], density: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < density


def test_a_mask_at_or_under_the_limit_comes_back_unchanged() -> None:
    mask = _mask((6, 7), 0.3, seed=0)
    state = np.random.get_state()
    assert randomly_limit_trues(mask, int(mask.sum())) is mask
    assert randomly_limit_trues(mask, int(mask.sum()) + 10) is mask
    assert np.array_equal(np.random.get_state()[1], state[1])  # no random draw was spent


def test_limited_mask_keeps_the_numpy_global_random_choice_of_true_positions() -> None:
    mask = _mask((2, 9, 11), 0.5, seed=1)
    true_positions = [i for i, value in enumerate(mask.ravel().tolist()) if value]
    np.random.seed(123)
    expected_kept = np.random.choice(true_positions, size=17, replace=False)
    np.random.seed(123)
    limited = randomly_limit_trues(mask, 17)
    assert limited.shape == mask.shape and limited.dtype == np.bool_
    assert sorted(np.flatnonzero(limited).tolist()) == sorted(expected_kept.tolist())
    assert int(limited.sum()) == 17 and not (limited & ~mask).any()  # a subset of the original Trues
    assert int(mask.sum()) > 17  # the input itself was not modified


def test_every_true_position_is_kept_about_equally_often() -> None:
    mask = np.zeros(20, dtype=bool)
    mask[::2] = True  # 10 Trues, keep 3: each is kept with probability 0.3
    np.random.seed(0)
    counts = sum(randomly_limit_trues(mask, 3).astype(int) for _ in range(4000))
    assert counts[1::2].sum() == 0
    kept_rate = counts[::2] / 4000
    assert np.all(np.abs(kept_rate - 0.3) < 0.04)  # 5 standard deviations of a binomial(4000, 0.3) rate


def test_limit_zero_keeps_nothing() -> None:
    assert not randomly_limit_trues(np.ones((3, 3), dtype=bool), 0).any()


def test_limit_rejects_negative_limits() -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        randomly_limit_trues(np.ones(3, dtype=bool), -1)


def test_limit_counts_the_non_zero_entries_of_a_numeric_mask_as_true() -> None:
    mask = np.array([[0, 2, 0], [1, 0, 5]], dtype=np.int64)
    assert randomly_limit_trues(mask, 3) is mask  # at most 3 non-zero entries: unchanged
    np.random.seed(3)
    limited = randomly_limit_trues(mask, 2)
    np.random.seed(3)
    expected = np.zeros(6, dtype=bool)
    expected[np.random.choice(np.array([1, 3, 5]), size=2, replace=False)] = True
    assert limited.dtype == np.bool_ and limited.tolist() == expected.reshape(2, 3).tolist()

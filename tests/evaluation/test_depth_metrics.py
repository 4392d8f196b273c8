"""AbsRel and delta < 1.25 after per-frame median scaling, on hand-built depth maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggt.evaluation import depth_metrics


def test_a_depth_map_off_by_a_scale_is_perfect():
    gt = np.random.default_rng(0).uniform(1, 5, size=(3, 4, 5))
    metrics = depth_metrics(gt * 7.5, gt)
    assert metrics.abs_rel == pytest.approx(0.0, abs=1e-12)
    assert metrics.delta_1_25 == 1.0


def test_hand_computed_frame():
    # medians: gt [1, 2, 4, 8] -> 3, pred 10 x [1, 2, 4, 16] -> 30; scaled pred = [1, 2, 4, 16]
    # AbsRel = (0 + 0 + 0 + 8 / 8) / 4 = 0.25; ratios [1, 1, 1, 2] -> delta = 3 / 4
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    pred = 10 * np.array([[1.0, 2.0], [4.0, 16.0]])
    metrics = depth_metrics(pred, gt)
    assert metrics.abs_rel == pytest.approx(0.25)
    assert metrics.delta_1_25 == pytest.approx(0.75)


def test_invalid_pixels_are_left_out_of_medians_and_metrics():
    gt = np.array([[[1.0, 2.0, 0.0], [4.0, np.nan, 8.0]]])
    pred = np.array([[[1.0, 2.0, 1e6], [4.0, 1e6, 16.0]]])  # wild values only where gt is invalid
    mask = np.array([[[True, True, True], [True, True, True]]])
    metrics = depth_metrics(pred, gt, valid_mask=mask)
    assert metrics.abs_rel == pytest.approx(0.25)
    mask[0, 1, 2] = False  # masking the one bad pixel leaves a perfect frame
    assert depth_metrics(pred, gt, valid_mask=mask).abs_rel == pytest.approx(0.0)


def test_metrics_are_means_over_frames_each_scaled_by_its_own_median():
    gt = np.array([[[1.0, 2.0], [4.0, 8.0]], [[1.0, 1.0], [1.0, 1.0]]])
    pred = np.array([[[1.0, 2.0], [4.0, 16.0]], [[5.0, 5.0], [5.0, 5.0]]])  # frame 1 is perfect after scaling
    metrics = depth_metrics(torch.from_numpy(pred)[..., None], gt[..., None])
    np.testing.assert_allclose(metrics.per_frame_abs_rel, [0.25, 0.0])
    assert metrics.abs_rel == pytest.approx(0.125)
    assert metrics.delta_1_25 == pytest.approx((0.75 + 1.0) / 2)


def test_frames_without_valid_pixels_are_skipped_and_all_invalid_is_an_error():
    gt = np.stack([np.array([[1.0, 2.0], [4.0, 8.0]]), np.zeros((2, 2))])
    pred = np.ones((2, 2, 2))
    metrics = depth_metrics(pred, gt)
    assert np.isnan(metrics.per_frame_abs_rel[1])
    assert np.isfinite(metrics.abs_rel)
    with pytest.raises(ValueError, match="no frame has a valid"):
        depth_metrics(pred, np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(pred, gt[:1])

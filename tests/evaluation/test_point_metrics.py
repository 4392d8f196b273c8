"""Accuracy / completeness / overall after Umeyama alignment, against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggt.evaluation import point_metrics, umeyama_alignment

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation


def similarity(points: np.ndarray, scale: float, rotation: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return scale * points @ rotation.T + shift


def brute_force_mean_nearest(queries: np.ndarray, reference: np.ndarray) -> float:
    distances = np.linalg.norm(queries[:, None, :] - reference[None, :, :], axis=-1)
    return float(distances.min(axis=1).mean())


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(50, 3))
    rotation = Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix()
    target = similarity(source, 0.4, rotation, np.array([1.0, -2.0, 3.0]))
    found = umeyama_alignment(source, target)
    assert found.scale == pytest.approx(0.4)
    np.testing.assert_allclose(found.rotation, rotation, atol=1e-10)
    np.testing.assert_allclose(found.translation, [1.0, -2.0, 3.0], atol=1e-10)


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 3))
    mirrored = source * [1, 1, -1]  # the best orthogonal fit is a mirror; a rotation must be returned
    assert np.linalg.det(umeyama_alignment(source, mirrored).rotation) == pytest.approx(1.0)


def test_a_similarity_transformed_prediction_scores_zero():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(2, 6, 5, 3))
    pred = similarity(gt, 2.5, Rotation.from_rotvec([1.0, 0.2, -0.4]).as_matrix(), np.array([4.0, 0, 1]))
    metrics = point_metrics(pred, gt)
    assert metrics.accuracy == pytest.approx(0.0, abs=1e-9)
    assert metrics.completeness == pytest.approx(0.0, abs=1e-9)
    assert metrics.overall == pytest.approx(0.0, abs=1e-9)


def test_noisy_prediction_matches_an_independent_alignment_and_brute_force_distances():
    rng = np.random.default_rng(3)
    gt = rng.uniform(-1, 1, size=(200, 3))
    rotation = Rotation.from_rotvec([0.1, 0.7, -0.3]).as_matrix()
    pred = similarity(gt, 0.5, rotation, np.array([0.0, 3.0, 1.0])) + rng.normal(scale=0.02, size=gt.shape)
    pred[:20] += rng.normal(scale=0.5, size=(20, 3))  # some badly wrong points
    # independent alignment: scipy's Kabsch on centred points, then the least-squares scale
    pred_c, gt_c = pred - pred.mean(0), gt - gt.mean(0)
    best, _ = Rotation.align_vectors(gt_c, pred_c)
    turned = best.apply(pred_c)
    scale = np.sum(turned * gt_c) / np.sum(pred_c**2)
    aligned = scale * turned + gt.mean(0)
    metrics = point_metrics(pred, gt)
    assert metrics.accuracy == pytest.approx(brute_force_mean_nearest(aligned, gt), rel=1e-6)
    assert metrics.completeness == pytest.approx(brute_force_mean_nearest(gt, aligned), rel=1e-6)
    assert metrics.overall == pytest.approx((metrics.accuracy + metrics.completeness) / 2)
    assert metrics.accuracy != pytest.approx(metrics.completeness)  # the two directions differ


def test_pixels_with_invalid_or_masked_ground_truth_are_left_out():
    # pred equals gt on a unit square, with a wild prediction where gt is NaN (or masked)
    square = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    gt = np.concatenate([square, [[np.nan, np.nan, np.nan]]])
    pred = np.concatenate([square, [[50.0, 50, 50]]])
    metrics = point_metrics(pred, gt)  # the invalid gt pixel drops out of both directions
    assert metrics.overall == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(metrics.alignment.scale, 1.0)
    pred[3] = [9.0, 9, 9]
    mask = np.array([True, True, True, False, True])
    assert point_metrics(pred, gt, valid_mask=mask).overall == pytest.approx(0.0, abs=1e-12)
    assert point_metrics(pred, gt).overall > 0.1

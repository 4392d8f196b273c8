"""An independent float64 NumPy statement of upstream's depth / point loss semantics (spec 4.7), for the tests.

Written from the specification, not from training/loss.py: boolean indexing, Python branches on counts, and
`check_and_fix_inf_nan` applied where upstream applies it (GT, residual, confidence term, after the filter).
Sums and quantiles are float64; the confidence product is float32, as upstream's, since its overflow matters.
"""

from __future__ import annotations

import numpy as np

HARD_MAX = 100.0
MIN_FILTER_ELEMENTS = 1000
MIN_MASK_POINTS = 100
GRADIENT_SCALES = 4


def check_and_fix_inf_nan(values: np.ndarray, hard_max: float | None = HARD_MAX) -> np.ndarray:
    """NaN / +-inf -> 0, then clamp to [-hard_max, hard_max]."""
    values = np.where(np.isfinite(values), values, 0.0)
    return values if hard_max is None else np.clip(values, -hard_max, hard_max)


def filter_by_quantile(values: np.ndarray, quantile: float) -> np.ndarray:
    """1-D values: unchanged when 1000 or fewer; else clamp at 100 and keep those below the nearest-rank quantile
    (capped at 100) when more than 1000 remain."""
    if values.size <= MIN_FILTER_ELEMENTS:
        return values
    values = np.minimum(values, HARD_MAX)
    threshold = min(float(np.quantile(values, quantile, method="nearest")), HARD_MAX)
    kept = values[values < threshold]
    return kept if kept.size > MIN_FILTER_ELEMENTS else values


def gradient_term(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Multi-scale image-gradient matching: pred, gt [N, H, W, C], mask [N, H, W] -> mean over 4 scales."""
    total = 0.0
    for scale in range(GRADIENT_SCALES):
        step = 2**scale
        p, g = pred[:, ::step, ::step], gt[:, ::step, ::step]
        m = np.broadcast_to(mask[:, ::step, ::step, None], p.shape).astype(np.float64)
        diff = m * (p - g)
        grad_x = np.minimum(np.abs(diff[:, :, 1:] - diff[:, :, :-1]) * m[:, :, 1:] * m[:, :, :-1], HARD_MAX)
        grad_y = np.minimum(np.abs(diff[:, 1:] - diff[:, :-1]) * m[:, 1:] * m[:, :-1], HARD_MAX)
        divisor = m.sum()
        total += 0.0 if divisor == 0 else (grad_x.sum() + grad_y.sum()) / divisor
    return total / GRADIENT_SCALES


def dense_losses(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    conf: np.ndarray,
    quantile: float,
    with_gradient: bool,
    gamma: float = 1.0,
    alpha: float = 0.2,
) -> tuple[float, float, float]:
    """(loss_conf, loss_reg, loss_grad) of a depth or point map: pred, gt [B, S, H, W, C], mask, conf [B, S, H, W]."""
    pred, gt, conf = (np.asarray(a, dtype=np.float64) for a in (pred, gt, conf))
    gt = check_and_fix_inf_nan(gt)
    if mask.sum() < MIN_MASK_POINTS:
        return 0.0, 0.0, 0.0
    residual = check_and_fix_inf_nan(np.linalg.norm(gt[mask] - pred[mask], axis=-1))
    with np.errstate(all="ignore"):  # in float32 as upstream: r * c overflows to inf where float64 would not
        r32, c32 = residual.astype(np.float32), conf[mask].astype(np.float32)
        product = np.float32(gamma) * r32 * c32 - np.float32(alpha) * np.log(c32)
    conf_term = check_and_fix_inf_nan(product.astype(np.float64))
    loss_conf = check_and_fix_inf_nan(filter_by_quantile(conf_term, quantile)).mean()
    loss_reg = check_and_fix_inf_nan(filter_by_quantile(residual, quantile)).mean()
    frames = pred.shape[0] * pred.shape[1]
    loss_grad = 0.0
    if with_gradient:
        loss_grad = gradient_term(
            pred.reshape(frames, *pred.shape[2:]),
            gt.reshape(frames, *gt.shape[2:]),
            mask.reshape(frames, *mask.shape[2:]),
        )
    return float(loss_conf), float(loss_reg), float(loss_grad)

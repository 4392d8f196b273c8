"""A small perceptually ordered colormap (navy -> purple -> red -> orange -> pale yellow), no matplotlib needed."""

from __future__ import annotations

import numpy as np

# Anchor colours at 0, 0.25, 0.5, 0.75, 1, interpolated linearly; brightness rises monotonically.
ANCHORS = np.array([[0.05, 0.03, 0.25], [0.38, 0.06, 0.55], [0.76, 0.21, 0.40], [0.98, 0.55, 0.16], [0.99, 0.94, 0.58]])


def colorize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """values [...] -> uint8 RGB [..., 3]; `low` maps to the first anchor, `high` to the last, clipped outside.

    NaN and infinite values get the first anchor (callers paint them over)."""
    span = high - low if high > low else 1.0
    t = np.clip((np.asarray(values, dtype=np.float32) - low) / span, 0.0, 1.0) * (len(ANCHORS) - 1)
    t = np.where(np.isfinite(t), t, 0.0)
    lower = np.minimum(t.astype(np.int64), len(ANCHORS) - 2)
    frac = (t - lower)[..., None]
    rgb = ANCHORS[lower] * (1 - frac) + ANCHORS[lower + 1] * frac
    return (rgb * 255 + 0.5).astype(np.uint8)


def robust_range(values: np.ndarray, low_pct: float = 2.0, high_pct: float = 98.0) -> tuple[float, float]:
    """Percentile bounds of the finite values, so a few outliers do not wash out the colours; (0, 1) if none."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    return float(np.percentile(finite, low_pct)), float(np.percentile(finite, high_pct))

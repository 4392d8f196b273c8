"""Which frames have a usable predicted camera, and the one warning that names the others.

A frame's camera is unusable when its field of view is not positive (the camera head's ReLU floor gives 0, an
infinite focal length) or any entry of its extrinsic or intrinsic is not finite. Like an image COLMAP cannot
register, such a frame stays in every output that needs no camera (depth, confidence, the point head's points)
and is left out of every output that does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_NAMED = 5  # frames named in the warning
CAMERA_OUTPUTS = (
    "the depth-unprojected points (points.ply, scene.glb, preview/points.png), the frustums, sparse/ and --ba"
)


def camera_validity(pose_enc: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray) -> np.ndarray:
    """bool [S]: pose_enc [S, 9] (field of view h, w in its last two entries), extrinsic [S, 3, 4], intrinsic
    [S, 3, 3]."""
    fov_positive = (pose_enc[:, 7:9] > 0).all(axis=1)  # NaN compares False
    finite = np.isfinite(extrinsic).all(axis=(1, 2)) & np.isfinite(intrinsic).all(axis=(1, 2))
    return fov_positive & finite


def _reason(pose_enc: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray) -> str:
    """Why one frame's camera is unusable."""
    fov = pose_enc[7:9]
    if not (fov > 0).all():
        return f"field of view (h, w) = ({np.degrees(fov[0]):.3g}, {np.degrees(fov[1]):.3g}) degrees"
    return "non-finite extrinsic" if not np.isfinite(extrinsic).all() else "non-finite intrinsic"


def describe_invalid_cameras(
    valid: np.ndarray, pose_enc: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray, names: Sequence[str]
) -> str:
    """One message naming the frames without a usable camera (valid bool [S] has at least one False) and why."""
    bad = np.flatnonzero(~valid)
    listed = "; ".join(
        f"{frame} ({names[frame]}: {_reason(pose_enc[frame], extrinsic[frame], intrinsic[frame])})"
        for frame in bad[:MAX_NAMED]
    )
    more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
    if valid.any():
        consequence = f"they are left out of {CAMERA_OUTPUTS.replace(' and ', ', ')} and vggt view"
    else:
        consequence = f"no frame has one, so {CAMERA_OUTPUTS} are skipped"
    label = "frames" if len(bad) > 1 else "frame"
    return (
        f"{len(bad)} of {len(valid)} frames have no usable camera: {label} {listed}{more}. As COLMAP does with an "
        f"image it cannot register, {consequence}; predictions.npz (camera_valid [S] marks them), depth/, confidence/ "
        "and preview/frames.png still cover every frame. Are the weights trained for these images?"
    )

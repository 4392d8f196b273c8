"""Rotation matrix <-> unit quaternion conversions, quaternions stored scalar-last (XYZW)."""

from __future__ import annotations

import torch

# Smallest denominator when dividing by a candidate's |component|; only the best-conditioned candidate is kept.
_CANDIDATE_FLOOR = 0.1


def quat_to_mat(quaternions: torch.Tensor) -> torch.Tensor:
    """Quaternions [..., 4] in XYZW order -> rotation matrices [..., 3, 3].

    Non-unit quaternions are accepted: the 2/|q|^2 factor normalises them implicitly.
    """
    i, j, k, r = torch.unbind(quaternions, dim=-1)
    two_s = 2.0 / (quaternions * quaternions).sum(dim=-1)
    entries = (
        1 - two_s * (j * j + k * k),
        two_s * (i * j - k * r),
        two_s * (i * k + j * r),
        two_s * (i * j + k * r),
        1 - two_s * (i * i + k * k),
        two_s * (j * k - i * r),
        two_s * (i * k - j * r),
        two_s * (j * k + i * r),
        1 - two_s * (i * i + j * j),
    )
    return torch.stack(entries, dim=-1).reshape(quaternions.shape[:-1] + (3, 3))


def _sqrt_positive_part(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient where x <= 0."""
    positive = x > 0
    # The inner where keeps sqrt's backward away from zero so the outer where can discard it cleanly.
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def _standardize(quaternions: torch.Tensor) -> torch.Tensor:
    """Flip XYZW quaternions [..., 4] so the real part w is non-negative."""
    return torch.where(quaternions[..., 3:4] < 0, -quaternions, quaternions)


def mat_to_quat(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] in XYZW order with w >= 0.

    Builds the four classical candidates (one per largest component) and keeps the best-conditioned one with
    a gather, so the selection runs on any device without a host synchronisation.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"mat_to_quat expects matrices of shape [..., 3, 3], got {tuple(matrix.shape)}")
    batch_shape = matrix.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(matrix.reshape(batch_shape + (9,)), dim=-1)

    # |2w|, |2x|, |2y|, |2z| from the diagonal (scalar-first order while building).
    q_abs = _sqrt_positive_part(
        torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1)
    )
    # Row c is 4 * q_c * (w, x, y, z); dividing by 2|q_c| recovers q up to sign.
    candidates = torch.stack(
        (
            torch.stack((q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2), dim=-1),
        ),
        dim=-2,
    )
    candidates = candidates / (2.0 * q_abs.clamp(min=_CANDIDATE_FLOOR)).unsqueeze(-1)

    best = q_abs.argmax(dim=-1, keepdim=True).unsqueeze(-1).expand(batch_shape + (1, 4))
    wxyz = torch.gather(candidates, dim=-2, index=best).squeeze(-2)
    return _standardize(torch.roll(wxyz, shifts=-1, dims=-1))

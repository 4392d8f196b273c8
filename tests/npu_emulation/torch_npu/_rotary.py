"""Emulation of `torch_npu.npu_rotary_mul`: out = x * r1 + rotate(x) * r2 (r1 = cos, r2 = sin)."""

from __future__ import annotations

import torch

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_HEAD_DIM = 896  # D must be below this
_MAX_BATCH_OR_HEADS = 1000  # 'half': B and N below this; 'interleave': B * N below this (forward)
_MAX_BACKWARD_BN = 1024  # the backward, which always computes dcos / dsin, needs B * N <= 1024
# the documented r1/r2 layouts per x layout; a "1" is a broadcast dim, a letter must equal x's size there
_R_LAYOUTS = {
    "BNSD": ("11SD", "B1SD", "BNSD"),
    "BSND": ("1S1D", "BS1D", "BSND"),
    "SBND": ("S11D", "SB1D", "SBND"),
    "TND": ("T1D", "TND"),
}
_INTERLEAVE_R_LAYOUTS = {"BNSD": ("11SD",), "BSND": ("1S1D",), "SBND": ("S11D",), "TND": ("T1D",)}


def _fits(r_shape: torch.Size, x_shape: torch.Size, r_layout: str) -> bool:
    """Whether an r1/r2 of `r_shape` has layout `r_layout` relative to an x of `x_shape` (same ndim)."""
    return len(r_shape) == len(x_shape) == len(r_layout) and all(
        r == 1 if c == "1" else r == n for r, n, c in zip(r_shape, x_shape, r_layout)
    )


def _check_inputs(x: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, rotary_mode: str) -> None:
    """The documented mode, dtype, head-dim and r1/r2 layout constraints; ValueError / TypeError when broken."""
    if rotary_mode not in ("half", "interleave"):
        raise ValueError(f"npu_rotary_mul: rotary_mode must be 'half' or 'interleave', got {rotary_mode!r}")
    if x.dtype not in _DTYPES or r1.dtype != x.dtype or r2.dtype != x.dtype:
        raise TypeError(
            f"npu_rotary_mul: input, r1 and r2 must share fp16, bf16 or fp32, got {x.dtype}, {r1.dtype}, {r2.dtype}"
        )
    if x.dim() not in (3, 4):
        raise ValueError(f"npu_rotary_mul: input must be 3-D or 4-D, got shape {tuple(x.shape)}")
    head_dim = x.shape[-1]
    if head_dim % 2 or head_dim >= _MAX_HEAD_DIM:
        raise ValueError(f"npu_rotary_mul: the last dim D must be even and < {_MAX_HEAD_DIM}, got {head_dim}")
    if x.dim() == 4:
        batch, heads = _batch_and_heads(x, r1, rotary_mode)
        if rotary_mode == "half" and (batch >= _MAX_BATCH_OR_HEADS or heads >= _MAX_BATCH_OR_HEADS):
            raise ValueError(f"npu_rotary_mul: 'half' needs B and N below {_MAX_BATCH_OR_HEADS}, got {batch}, {heads}")
        if rotary_mode == "interleave" and batch * heads >= _MAX_BATCH_OR_HEADS:
            raise ValueError(
                f"npu_rotary_mul: 'interleave' needs B * N below {_MAX_BATCH_OR_HEADS}, got {batch * heads}"
            )
    if r1.shape != r2.shape:
        raise ValueError(f"npu_rotary_mul: r1 and r2 shapes differ: {tuple(r1.shape)} vs {tuple(r2.shape)}")
    table = _R_LAYOUTS if rotary_mode == "half" else _INTERLEAVE_R_LAYOUTS
    allowed = {x_layout: r_layouts for x_layout, r_layouts in table.items() if len(x_layout) == x.dim()}
    if not any(_fits(r1.shape, x.shape, r) for r_layouts in allowed.values() for r in r_layouts):
        raise ValueError(
            f"npu_rotary_mul: r1/r2 shape {tuple(r1.shape)} fits no documented {rotary_mode} layout for input "
            f"{tuple(x.shape)}; allowed (x layout: r layouts): {allowed}"
        )
    if (r1.abs() > 1).any() or (r2.abs() > 1).any():
        raise ValueError("npu_rotary_mul: r1 and r2 must lie in [-1, 1] (they are cos and sin tables)")


def _batch_and_heads(x: torch.Tensor, r1: torch.Tensor, rotary_mode: str) -> tuple[int, int]:
    """B and N of a 4-D input, read in the first layout (BNSD, BSND, SBND) whose r1 layouts r1 fits."""
    table = _R_LAYOUTS if rotary_mode == "half" else _INTERLEAVE_R_LAYOUTS
    layout = next(
        (x_layout for x_layout, r_layouts in table.items() if any(_fits(r1.shape, x.shape, r) for r in r_layouts)),
        "BNSD",
    )
    return x.shape[layout.index("B")], x.shape[layout.index("N")]


def _refuse_large_backward(out: torch.Tensor, batch_times_heads: int) -> None:
    """Make the backward of `out` fail as the real kernel's does beyond B * N = 1024."""

    def refuse(grad: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"npu_rotary_mul backward: B * N must be <= {_MAX_BACKWARD_BN}, got {batch_times_heads}")

    out.register_hook(refuse)


def npu_rotary_mul(
    input: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    rotary_mode: str = "half",
    rotate: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotary embedding of `input` (BNSD / BSND / SBND 4-D or TND 3-D, D even and < 896), same shape and dtype out.

    Documented limits enforced: 'half' B, N < 1000 and 'interleave' B * N < 1000 (forward); a backward with
    B * N > 1024 fails when it runs.

    'half' rotates element j with j + D/2 (rotate(x) = cat(-x2, x1), GPT-NeoX style); 'interleave' rotates 2i
    with 2i + 1 (pairs (x[2i], x[2i+1]) -> (-x[2i+1], x[2i]), GPT-J style). r1 / r2 (same shape) follow the
    documented broadcast layouts, e.g. 11SD / B1SD / BNSD for a BNSD input; interleave allows only the
    sequence-only ones (11SD / 1S1D / S11D / T1D). Computed in fp32 and rounded once to the input dtype.
    """
    if rotate is not None:
        raise NotImplementedError("npu_rotary_mul emulation: the `rotate` matrix form is not emulated")
    _check_inputs(input, r1, r2, rotary_mode)
    x = input.float()
    if rotary_mode == "half":
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat((-x2, x1), dim=-1)
    else:
        rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    out = (x * r1.float() + rotated * r2.float()).to(input.dtype)
    if input.dim() == 4 and out.requires_grad:
        batch, heads = _batch_and_heads(input, r1, rotary_mode)
        if batch * heads > _MAX_BACKWARD_BN:
            _refuse_large_backward(out, batch * heads)
    return out

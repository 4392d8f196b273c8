"""The torch_npu CPU emulation matches the documented formulas, written out independently here, and installs cleanly."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.npu_emulation import torch_npu as emulation
from tests.npu_emulation.install import install_torch_npu_emulation

LAYOUTS = ("BNSD", "BSND", "BSH", "SBH")
B, N, S1, S2, D = 2, 4, 5, 7, 8  # all distinct, so a wrong permute or reshape cannot go unnoticed


def to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """A (B, N, S, D) tensor in `layout`: BNSD, BSND, BSH (B, S, N*D) or SBH (S, B, N*D)."""
    b, n, s, d = x.shape
    if layout == "BNSD":
        return x
    if layout == "BSND":
        return x.permute(0, 2, 1, 3).contiguous()
    if layout == "BSH":
        return x.permute(0, 2, 1, 3).reshape(b, s, n * d)
    return x.permute(2, 0, 1, 3).reshape(s, b, n * d)


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, masked_out: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale + additive mask) v in float64 on (B, N, S, D) inputs; masked_out True adds -inf."""
    scores = torch.einsum("bnsd,bntd->bnst", q.double(), k.double()) * scale
    if masked_out is not None:
        scores = scores + torch.where(masked_out, float("-inf"), 0.0).double()
    return torch.einsum("bnst,bntd->bnsd", torch.softmax(scores, dim=-1), v.double())


def qkv(kv_heads: int = N, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded q (B, N, S1, D) and k, v (B, kv_heads, S2, D)."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, N, S1, D, generator=gen)
    k = torch.randn(B, kv_heads, S2, D, generator=gen)
    v = torch.randn(B, kv_heads, S2, D, generator=gen)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def random_mask(shape: tuple[int, ...]) -> torch.Tensor:
    """A seeded bool mask (True = masked out) that leaves key 0 free in every row."""
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.5
    mask[..., 0] = False
    return mask


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fusion_attention_matches_explicit_softmax_attention_in_every_layout(layout: str) -> None:
    q, k, v = qkv()
    out = emulation.npu_fusion_attention(
        to_layout(q, layout), to_layout(k, layout), to_layout(v, layout), N, layout, scale=1 / math.sqrt(D)
    )[0]
    expected = to_layout(reference_attention(q, k, v, 1 / math.sqrt(D)), layout)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_fusion_attention_default_scale_is_one_not_inverse_sqrt_head_dim() -> None:
    q, k, v = qkv()
    out = emulation.npu_fusion_attention(q, k, v, N, "BNSD")[0].double()
    torch.testing.assert_close(out, reference_attention(q, k, v, 1.0), atol=1e-5, rtol=1e-5)
    assert (out - reference_attention(q, k, v, 1 / math.sqrt(D))).abs().max() > 0.1


@pytest.mark.parametrize("mask_shape", [(B, N, S1, S2), (B, 1, S1, S2), (1, 1, S1, S2), (S1, S2)])
def test_fusion_attention_bool_mask_true_means_masked_out(mask_shape: tuple[int, ...]) -> None:
    q, k, v = qkv()
    mask = random_mask(mask_shape)
    out = emulation.npu_fusion_attention(q, k, v, N, "BNSD", atten_mask=mask, scale=0.3)[0]
    torch.testing.assert_close(out.double(), reference_attention(q, k, v, 0.3, mask), atol=1e-5, rtol=1e-5)


def test_fusion_attention_uint8_mask_one_means_masked_out() -> None:
    q, k, v = qkv()
    mask = random_mask((B, N, S1, S2))
    out = emulation.npu_fusion_attention(q, k, v, N, "BNSD", atten_mask=mask.to(torch.uint8), scale=0.3)[0]
    torch.testing.assert_close(out.double(), reference_attention(q, k, v, 0.3, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("mask", "error"),
    [
        (torch.zeros(B, N, S1, S2 + 1, dtype=torch.bool), ValueError),
        (torch.zeros(1, N, S1, S2, dtype=torch.bool), ValueError),
        (torch.zeros(B, N, S1, S2), TypeError),
        (torch.ones(S1, S2, dtype=torch.bool), ValueError),
    ],
    ids=["wrong-S2", "1NSS", "float-mask", "fully-masked-rows"],
)
def test_fusion_attention_rejects_undocumented_masks(mask: torch.Tensor, error: type[Exception]) -> None:
    q, k, v = qkv()
    with pytest.raises(error):
        emulation.npu_fusion_attention(q, k, v, N, "BNSD", atten_mask=mask)


def test_fusion_attention_gqa_query_head_h_reads_kv_head_h_over_group() -> None:
    q, k, v = qkv(kv_heads=2)
    kv_head = torch.arange(N) // (N // 2)
    out = emulation.npu_fusion_attention(q, k, v, N, "BNSD", scale=0.3)[0]
    expected = reference_attention(q, k[:, kv_head], v[:, kv_head], 0.3)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_fusion_attention_softmax_stats_are_row_max_and_exp_sum_repeated_eight_times() -> None:
    q, k, v = qkv()
    mask = random_mask((B, 1, S1, S2))
    _, softmax_max, softmax_sum, *_ = emulation.npu_fusion_attention(q, k, v, N, "BNSD", atten_mask=mask, scale=0.3)
    scores = (torch.einsum("bnsd,bntd->bnst", q.double(), k.double()) * 0.3).masked_fill(mask, float("-inf"))
    row_max = scores.max(dim=-1).values
    row_sum = torch.exp(scores - row_max[..., None]).sum(dim=-1)
    for stat, expected in ((softmax_max, row_max), (softmax_sum, row_sum)):
        assert stat.dtype == torch.float32 and stat.shape == (B, N, S1, 8)
        torch.testing.assert_close(stat.double(), expected[..., None].expand(B, N, S1, 8), atol=1e-5, rtol=1e-5)


def test_fusion_attention_returns_empty_reserved_tensor_and_three_ints() -> None:
    q, k, v = qkv()
    result = emulation.npu_fusion_attention(to_layout(q, "BSH"), to_layout(k, "BSH"), to_layout(v, "BSH"), N, "BSH")
    assert len(result) == 7
    assert isinstance(result[3], torch.Tensor) and result[3].numel() == 0
    assert result[4:] == (0, 0, B * N * S1 * S2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fusion_attention_keeps_half_precision_dtype(dtype: torch.dtype) -> None:
    q, k, v = qkv(dtype=dtype)
    out = emulation.npu_fusion_attention(q, k, v, N, "BNSD", scale=1 / math.sqrt(D))[0]
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference_attention(q, k, v, 1 / math.sqrt(D)), atol=2e-2, rtol=2e-2)


def test_fusion_attention_dropout_zeroes_or_rescales_each_probability_by_one_over_keep_prob() -> None:
    keep_prob, s1, s2 = 0.7, 64, 32
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(B, N, s1, s2, generator=gen), torch.randn(B, N, s2, s2, generator=gen)
    identity = torch.eye(s2).expand(B, N, s2, s2)  # with V = I the output rows are the (dropped) probabilities
    torch.manual_seed(3)
    out = emulation.npu_fusion_attention(q, k, identity, N, "BNSD", scale=0.2, keep_prob=keep_prob)[0]
    probs = reference_attention(q, k, identity, 0.2)
    kept = out != 0
    torch.testing.assert_close(out[kept].double(), probs[kept] / keep_prob, atol=1e-6, rtol=1e-5)
    sigma = math.sqrt(keep_prob * (1 - keep_prob) / out.numel())
    assert abs(kept.double().mean().item() - keep_prob) < 5 * sigma
    torch.manual_seed(3)
    again = emulation.npu_fusion_attention(q, k, identity, N, "BNSD", scale=0.2, keep_prob=keep_prob)[0]
    assert torch.equal(out, again)


def test_fusion_attention_without_dropout_draws_no_random_numbers() -> None:
    q, k, v = qkv()
    state = torch.get_rng_state()
    emulation.npu_fusion_attention(q, k, v, N, "BNSD", keep_prob=1.0)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("layout", ["BNSD", "SBH"])
def test_fusion_attention_gradients_match_autograd_of_explicit_formula(layout: str) -> None:
    q, k, v = (t.requires_grad_() for t in qkv())
    mask = random_mask((S1, S2))
    weight = torch.randn(to_layout(torch.empty(B, N, S1, D), layout).shape, generator=torch.Generator().manual_seed(4))
    out = emulation.npu_fusion_attention(
        to_layout(q, layout), to_layout(k, layout), to_layout(v, layout), N, layout, atten_mask=mask, scale=0.3
    )[0]
    (out * weight).sum().backward()
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    (to_layout(reference_attention(q64, k64, v64, 0.3, mask), layout) * weight.double()).sum().backward()
    for ours, expected in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
        torch.testing.assert_close(ours.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"padding_mask": torch.zeros(1)}, ValueError, "padding_mask"),
        ({"sparse_mode": 2}, NotImplementedError, "sparse_mode 2"),
        ({"input_layout": "TND"}, NotImplementedError, "TND"),
        ({"input_layout": "NSD"}, ValueError, "input_layout"),
        ({"keep_prob": 0.0}, ValueError, "keep_prob"),
        ({"pse": torch.zeros(B, N, S1, S2)}, NotImplementedError, "pse"),
        ({"head_num": 2}, ValueError, "head_num"),
    ],
)
def test_fusion_attention_rejects_unsupported_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    q, k, v = qkv()
    call = {"head_num": N, "input_layout": "BNSD", **kwargs}
    with pytest.raises(error, match=match):
        emulation.npu_fusion_attention(q, k, v, **call)


def test_fusion_attention_rejects_inconsistent_dtypes_and_shapes() -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match="share a dtype"):
        emulation.npu_fusion_attention(q, k.half(), v, N, "BNSD")
    with pytest.raises(TypeError, match="fp16, bf16 or fp32"):
        emulation.npu_fusion_attention(q.double(), k.double(), v.double(), N, "BNSD")
    with pytest.raises(ValueError, match="key and value"):
        emulation.npu_fusion_attention(q, k, v[:, :, :-1], N, "BNSD")
    with pytest.raises(ValueError, match="4-D"):
        emulation.npu_fusion_attention(to_layout(q, "BSH"), k, v, N, "BNSD")
    with pytest.raises(ValueError, match="not divisible"):
        emulation.npu_fusion_attention(to_layout(q, "BSH"), to_layout(k, "BSH"), to_layout(v, "BSH"), 3, "BSH")
    with pytest.raises(ValueError, match="multiple"):
        emulation.npu_fusion_attention(q, k[:, :3], v[:, :3], N, "BNSD")


def reference_rotary(x: torch.Tensor, theta: torch.Tensor, rotary_mode: str) -> torch.Tensor:
    """x (..., D) rotated as complex numbers by e^{i theta}, theta (..., D/2) broadcastable; float64.

    'half' pairs element j (real part) with j + D/2 (imaginary part); 'interleave' pairs 2i with 2i + 1.
    """
    x = x.double()
    half = x.shape[-1] // 2
    turn = torch.polar(torch.ones_like(theta.double()), theta.double())
    if rotary_mode == "half":
        z = torch.complex(x[..., :half], x[..., half:]) * turn
        return torch.cat((z.real, z.imag), dim=-1)
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], half, 2).contiguous()) * turn
    return torch.view_as_real(z).flatten(-2)


def rotary_tables(theta: torch.Tensor, rotary_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) laid out per element of x: angle of pair j at j and j + D/2 (half), or at 2i and 2i + 1."""
    per_element = torch.cat((theta, theta), -1) if rotary_mode == "half" else theta.repeat_interleave(2, -1)
    return torch.cos(per_element), torch.sin(per_element)


ROTARY_LAYOUTS = {  # x shape -> documented r shapes (BNSD, BSND, TND), with B=2, N=3, S=5, D=8
    (2, 3, 5, 8): [(1, 1, 5, 8), (2, 1, 5, 8), (2, 3, 5, 8)],
    (2, 5, 3, 8): [(1, 5, 1, 8), (2, 5, 1, 8)],
    (5, 3, 8): [(5, 1, 8), (5, 3, 8)],
}
INTERLEAVE_LAYOUTS = {(2, 3, 5, 8): [(1, 1, 5, 8)], (2, 5, 3, 8): [(1, 5, 1, 8)], (5, 3, 8): [(5, 1, 8)]}


def rotary_case(x_shape: tuple[int, ...], r_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded x of x_shape and angles theta of r_shape[:-1] + (D/2,)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(x_shape, generator=gen)
    theta = torch.rand((*r_shape[:-1], r_shape[-1] // 2), generator=gen) * 2 * math.pi
    return x, theta


@pytest.mark.parametrize(
    ("rotary_mode", "x_shape", "r_shape"),
    [("half", x, r) for x, rs in ROTARY_LAYOUTS.items() for r in rs]
    + [("interleave", x, r) for x, rs in INTERLEAVE_LAYOUTS.items() for r in rs],
)
def test_rotary_mul_is_a_complex_rotation_of_the_documented_pairs(
    rotary_mode: str, x_shape: tuple[int, ...], r_shape: tuple[int, ...]
) -> None:
    x, theta = rotary_case(x_shape, r_shape)
    cos, sin = rotary_tables(theta, rotary_mode)
    out = emulation.npu_rotary_mul(x, cos, sin, rotary_mode=rotary_mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out.double(), reference_rotary(x, theta, rotary_mode), atol=1e-5, rtol=1e-5)


def test_rotary_mul_half_and_interleave_pair_different_elements() -> None:
    x, theta = rotary_case((2, 3, 5, 8), (1, 1, 5, 8))
    half = emulation.npu_rotary_mul(x, *rotary_tables(theta, "half"), rotary_mode="half")
    interleave = emulation.npu_rotary_mul(x, *rotary_tables(theta, "interleave"), rotary_mode="interleave")
    assert (half - interleave).abs().max() > 0.1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rotary_mul_keeps_half_precision_dtype(dtype: torch.dtype) -> None:
    x, theta = rotary_case((2, 3, 5, 8), (1, 1, 5, 8))
    cos, sin = rotary_tables(theta, "half")
    out = emulation.npu_rotary_mul(x.to(dtype), cos.to(dtype), sin.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference_rotary(x, theta, "half"), atol=3e-2, rtol=3e-2)


def test_rotary_mul_input_gradient_matches_complex_rotation_gradient() -> None:
    x, theta = rotary_case((2, 3, 5, 8), (2, 1, 5, 8))
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    x.requires_grad_()
    (emulation.npu_rotary_mul(x, *rotary_tables(theta, "half")) * weight).sum().backward()
    x64 = x.detach().double().requires_grad_()
    (reference_rotary(x64, theta, "half") * weight.double()).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    ("rotary_mode", "x_shape", "r1_shape", "r2_shape", "error"),
    [
        ("half", (2, 3, 5, 8), (1, 3, 5, 8), (1, 3, 5, 8), ValueError),  # 1NSD is in no layout's table
        ("half", (2, 3, 5, 8), (1, 1, 1, 8), (1, 1, 1, 8), ValueError),
        ("half", (2, 3, 5, 8), (1, 1, 4, 8), (1, 1, 4, 8), ValueError),
        ("half", (2, 3, 5, 8), (1, 5, 8), (1, 5, 8), ValueError),
        ("half", (2, 3, 5, 8), (1, 1, 5, 8), (2, 1, 5, 8), ValueError),
        ("interleave", (2, 3, 5, 8), (2, 1, 5, 8), (2, 1, 5, 8), ValueError),  # interleave allows 11SD only
        ("half", (2, 3, 5, 7), (1, 1, 5, 7), (1, 1, 5, 7), ValueError),
        ("half", (1, 1, 2, 896), (1, 1, 2, 896), (1, 1, 2, 896), ValueError),
        ("half", (5, 8), (5, 8), (5, 8), ValueError),
        ("sideways", (2, 3, 5, 8), (1, 1, 5, 8), (1, 1, 5, 8), ValueError),
    ],
    ids=["1NSD", "111D", "wrong-S", "ndim", "r1-r2-differ", "interleave-B1SD", "odd-D", "D-896", "2-D", "mode"],
)
def test_rotary_mul_rejects_undocumented_shapes_and_modes(
    rotary_mode: str,
    x_shape: tuple[int, ...],
    r1_shape: tuple[int, ...],
    r2_shape: tuple[int, ...],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        emulation.npu_rotary_mul(torch.ones(x_shape), torch.zeros(r1_shape), torch.zeros(r2_shape), rotary_mode)


def test_rotary_mul_rejects_mixed_or_unsupported_dtypes_and_out_of_range_tables() -> None:
    x, r = torch.ones(2, 3, 5, 8), torch.zeros(1, 1, 5, 8)
    with pytest.raises(TypeError):
        emulation.npu_rotary_mul(x, r.half(), r.half())
    with pytest.raises(TypeError):
        emulation.npu_rotary_mul(x.double(), r.double(), r.double())
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        emulation.npu_rotary_mul(x, r + 2, r)


def test_gelu_none_is_the_erf_formula() -> None:
    x = torch.linspace(-6, 6, 241)
    expected = 0.5 * x.double() * (1 + torch.erf(x.double() / math.sqrt(2)))
    torch.testing.assert_close(emulation.npu_gelu(x).double(), expected, atol=1e-6, rtol=1e-6)


def test_gelu_tanh_is_the_tanh_formula() -> None:
    x = torch.linspace(-6, 6, 241).double()
    expected = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    out = emulation.npu_gelu(x.float(), approximate="tanh")
    torch.testing.assert_close(out.double(), expected, atol=1e-6, rtol=1e-6)


def test_gelu_rejects_unknown_approximate() -> None:
    with pytest.raises(ValueError, match="approximate"):
        emulation.npu_gelu(torch.ones(3), approximate="sigmoid")


def two_param_sets(dtype: torch.dtype = torch.float32) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """Two identical, independent lists of seeded params (a 3x4 matrix and a 4-vector)."""
    gen = torch.Generator().manual_seed(7)
    values = [torch.randn(3, 4, generator=gen), torch.randn(4, generator=gen)]
    return [torch.nn.Parameter(t.to(dtype)) for t in values], [torch.nn.Parameter(t.to(dtype)) for t in values]


def quadratic_loss(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """A fixed smooth loss of both params."""
    return (params[0] ** 2).sum() + (params[0].sum(dim=0) * params[1]).sum()


def test_fused_adamw_follows_torch_adamw_trajectory_up_to_rounding() -> None:
    """The real update is exp_avg.mul_(beta1).add_(grad) where torch's AdamW uses lerp_: equal up to rounding."""
    fused_params, plain_params = two_param_sets()
    fused = emulation.optim.NpuFusedAdamW(fused_params, lr=0.05, weight_decay=0.1)
    plain = torch.optim.AdamW(plain_params, lr=0.05, weight_decay=0.1)
    for _ in range(5):
        fused.zero_grad()
        plain.zero_grad()
        quadratic_loss(fused_params).backward()
        quadratic_loss(plain_params).backward()
        fused.step()
        plain.step()
    for ours, expected in zip(fused_params, plain_params):
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)


def test_fused_adamw_rejects_bf16_params_when_it_flattens_them_and_accepts_fp16_and_fp32() -> None:
    """As the real optimizer: construction accepts any dtype; building the flat buffers (first step) rejects bf16."""
    fp16, _ = two_param_sets(torch.float16)
    fp32, _ = two_param_sets(torch.float32)
    optimizer = emulation.optim.NpuFusedAdamW([{"params": fp16}, {"params": fp32}])
    for params in (fp16, fp32):
        quadratic_loss(params).float().backward()
    optimizer.step()
    assert [flat.dtype for flat in optimizer.get_combined_params()] == [torch.float32, torch.float16]
    bf16, _ = two_param_sets(torch.bfloat16)
    rejecting = emulation.optim.NpuFusedAdamW(bf16)
    quadratic_loss(bf16).backward()
    with pytest.raises(TypeError, match="bfloat16"):
        rejecting.step()


def test_fused_adamw_zero_grad_rejects_set_to_none_and_zeroes_grads_in_place() -> None:
    params, _ = two_param_sets()
    optimizer = emulation.optim.NpuFusedAdamW(params)
    quadratic_loss(params).backward()
    grads = [p.grad for p in params]
    with pytest.raises(ValueError, match="set_to_none"):
        optimizer.zero_grad(set_to_none=True)
    optimizer.zero_grad()
    for param, grad in zip(params, grads):
        assert param.grad is grad and not grad.any()


def test_clip_grad_norm_fused_scales_every_grad_by_one_global_norm() -> None:
    params, _ = two_param_sets()
    optimizer = emulation.optim.NpuFusedAdamW([{"params": params[:1]}, {"params": params[1:]}])
    quadratic_loss(params).backward()
    grads = [p.grad.double().clone() for p in params]
    total = math.sqrt(sum(float((g**2).sum()) for g in grads))
    assert total > 1.0  # so max_norm=1 must clip
    returned = optimizer.clip_grad_norm_fused_(1.0)
    assert returned.item() == pytest.approx(total, rel=1e-6)
    for param, grad in zip(params, grads):
        torch.testing.assert_close(param.grad.double(), grad * 1.0 / (total + 1e-6), atol=1e-6, rtol=1e-6)


def test_clip_grad_norm_fused_leaves_grads_below_max_norm_unchanged() -> None:
    params, _ = two_param_sets()
    optimizer = emulation.optim.NpuFusedAdamW(params)
    quadratic_loss(params).backward()
    grads = [p.grad.clone() for p in params]
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    returned = optimizer.clip_grad_norm_fused_(max_norm=2 * total)
    assert returned.item() == pytest.approx(total, rel=1e-6)
    for param, grad in zip(params, grads):
        assert torch.equal(param.grad, grad)


def test_clip_grad_norm_fused_adds_1e_minus_6_to_the_norm_before_dividing() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = emulation.optim.NpuFusedAdamW([param])
    param.grad = torch.tensor([3e-7, 4e-7])  # norm 5e-7, comparable to the 1e-6 guard
    optimizer.clip_grad_norm_fused_(max_norm=5e-7)
    torch.testing.assert_close(param.grad, torch.tensor([3e-7, 4e-7]) * (5e-7 / (5e-7 + 1e-6)), atol=0, rtol=1e-5)


def test_npu_shims_report_a_910b_with_no_card_visible(torch_npu_emulation: ModuleType) -> None:
    npu = torch_npu_emulation.npu
    assert npu.is_available() is False and npu.device_count() == 0
    assert npu.is_bf16_supported() is True
    assert npu.get_device_name() == "Ascend910B (CPU emulation)"
    assert npu.memory_allocated() == 0 and npu.max_memory_allocated(0) == 0
    assert npu.synchronize() is None and npu.reset_peak_memory_stats() is None
    state = torch.get_rng_state()
    npu.manual_seed(1)
    npu.manual_seed_all(1)
    assert torch.equal(torch.get_rng_state(), state)


def test_npu_runtime_flags_start_at_atlas_a2_defaults(torch_npu_emulation: ModuleType) -> None:
    npu = torch_npu_emulation.npu
    assert npu.is_jit_compile_false() is True
    assert npu.config.allow_internal_format is False
    assert npu.matmul.allow_hf32 is False and npu.conv.allow_hf32 is True
    assert npu.get_deterministic_level() == 0


def test_npu_set_compile_mode_records_jit_compile(torch_npu_emulation: ModuleType) -> None:
    torch_npu_emulation.npu.set_compile_mode(jit_compile=True)
    assert torch_npu_emulation.npu.is_jit_compile_false() is False
    torch_npu_emulation.npu.set_compile_mode(jit_compile=False)
    assert torch_npu_emulation.npu.is_jit_compile_false() is True
    torch_npu_emulation.npu.set_compile_mode(jit_compile="false")  # the real option is its truthiness: "enable"
    assert torch_npu_emulation.npu.is_jit_compile_false() is False


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_npu_set_deterministic_level_records_levels_zero_to_three(torch_npu_emulation: ModuleType, level: int) -> None:
    torch_npu_emulation.npu.set_deterministic_level(level)
    assert torch_npu_emulation.npu.get_deterministic_level() == level


@pytest.mark.parametrize("level", [-1, 4])
def test_npu_set_deterministic_level_rejects_other_levels(torch_npu_emulation: ModuleType, level: int) -> None:
    with pytest.raises(ValueError):
        torch_npu_emulation.npu.set_deterministic_level(level)


def test_install_makes_torch_npu_importable_until_the_test_ends() -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        installed = install_torch_npu_emulation(monkeypatch)
        import torch_npu
        from torch_npu.optim import NpuFusedAdamW

        assert torch_npu is installed is emulation
        assert importlib.import_module("torch_npu.npu") is torch_npu.npu is torch.npu
        assert NpuFusedAdamW is emulation.optim.NpuFusedAdamW
    for name in ("torch_npu", "torch_npu.npu", "torch_npu.optim", "torch.npu"):
        assert name not in sys.modules
    assert not hasattr(torch, "npu")


def test_install_resets_runtime_flags_left_by_an_earlier_test() -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        npu = install_torch_npu_emulation(monkeypatch).npu
        npu.set_compile_mode(jit_compile=True)
        npu.set_deterministic_level(2)
        npu.config.allow_internal_format = True
        npu.conv.allow_hf32 = False
    with pytest.MonkeyPatch.context() as monkeypatch:
        npu = install_torch_npu_emulation(monkeypatch).npu
        assert npu.is_jit_compile_false() and npu.get_deterministic_level() == 0
        assert npu.config.allow_internal_format is False and npu.conv.allow_hf32 is True


def test_install_skips_rather_than_shadow_an_importable_real_torch_npu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "torch_npu"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('libhccl.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="real torch_npu installed"):
        install_torch_npu_emulation(monkeypatch)
    assert "torch_npu" not in sys.modules


def test_install_skips_when_another_torch_npu_is_already_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_npu", ModuleType("torch_npu"))
    with pytest.raises(pytest.skip.Exception, match="real torch_npu installed"):
        install_torch_npu_emulation(monkeypatch)

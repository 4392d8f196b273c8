"""The documented limits of the fused NPU ops (torch_npu 2.1.0.post17 and 2.14.0) and how vggt.runtime.npu meets them:
attention S <= 1M split exactly, rotary backward B * N <= 1024 split over B, dense inputs to the fused attention."""

from __future__ import annotations

import math

import pytest
import torch

from vggt.runtime import kernels, npu


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v in float32, one matrix of scores (the unsplit reference)."""
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v.float())


def infer_attention_double(calls: list[tuple[int, int]]):
    """npu_fused_infer_attention_score as documented (BNSD, softmax_lse = log sum exp(scaled qk)), recording (Sq, Skv).

    Like the real op it rejects non-contiguous tensors and float32 queries.
    """

    def op(query, key, value, *, num_heads, input_layout, scale, softmax_lse_flag=False, **unused):
        assert input_layout == "BNSD" and softmax_lse_flag and num_heads == query.shape[1] and not unused
        if not all(t.is_contiguous() for t in (query, key, value)):
            raise ValueError("npu_fused_infer_attention_score: non-contiguous tensors are not supported")
        if query.dtype not in (torch.float16, torch.bfloat16):
            raise TypeError(f"npu_fused_infer_attention_score: query must be fp16 / bf16 / int8, got {query.dtype}")
        calls.append((query.shape[2], key.shape[2]))
        scores = torch.einsum("bhqd,bhkd->bhqk", query.float(), key.float()) * scale
        out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), value.float())
        return out.to(query.dtype), torch.logsumexp(scores, dim=-1, keepdim=True)

    return op


@pytest.fixture
def infer_calls(npu_kernels, monkeypatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(npu_kernels, "npu_fused_infer_attention_score", infer_attention_double(calls), raising=False)
    return calls


def qkv(tokens: int, queries: int | None = None, dtype: torch.dtype = torch.bfloat16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 2, queries or tokens, 16), (1, 2, tokens, 16), (1, 2, tokens, 16)]
    return [(2 * torch.randn(shape, generator=g)).to(dtype) for shape in shapes]


# attention: S <= 1M ---------------------------------------------------------------------------------
def test_merging_key_chunks_through_their_log_sum_exp_gives_the_unsplit_attention_in_float32():
    q, k, v = qkv(300, queries=50, dtype=torch.float32)
    total, lse = None, None
    for keys in (slice(0, 120), slice(120, 250), slice(250, 300)):  # independent per-chunk attention and lse
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k[:, :, keys]) / 4.0
        part, part_lse = scores.softmax(-1) @ v[:, :, keys], torch.logsumexp(scores, -1, keepdim=True)
        total, lse = (part, part_lse) if total is None else npu.merge_attention(total, lse, part, part_lse)
    torch.testing.assert_close(total, explicit_attention(q, k, v), rtol=1e-5, atol=1e-6)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / 4.0
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1, keepdim=True), rtol=1e-6, atol=1e-5)


def test_attention_longer_than_the_limit_is_split_exactly_into_calls_within_it(infer_calls, monkeypatch):
    monkeypatch.setenv(npu.ATTENTION_MAX_SEQ_ENV, "128")
    fused_calls = []
    monkeypatch.setattr(npu.torch_npu(), "npu_fusion_attention", lambda *a, **k: fused_calls.append(a))
    q, k, v = qkv(300)
    with torch.no_grad():
        out = kernels.attention(q, k, v)
    assert fused_calls == [] and len(infer_calls) == 3 * 3
    assert all(sq <= 128 and skv <= 128 for sq, skv in infer_calls)
    assert sum(skv for _, skv in infer_calls[:3]) == 300 and sum(sq for sq, _ in infer_calls[::3]) == 300
    assert out.dtype == torch.bfloat16 and out.shape == q.shape
    # bf16 inputs: the chunk outputs are rounded to bf16 before the float32 merge, the result once more
    torch.testing.assert_close(out.float(), explicit_attention(q, k, v), rtol=1e-2, atol=1e-2)


def test_attention_within_the_limit_is_one_fused_call(infer_calls, monkeypatch):
    monkeypatch.setenv(npu.ATTENTION_MAX_SEQ_ENV, "300")
    q, k, v = qkv(300)
    torch.testing.assert_close(kernels.attention(q, k, v).float(), explicit_attention(q, k, v), rtol=1e-2, atol=1e-2)
    assert infer_calls == []


def test_attention_beyond_the_limit_with_autograd_or_in_float32_is_a_clear_error(infer_calls, monkeypatch):
    monkeypatch.setenv(npu.ATTENTION_MAX_SEQ_ENV, "128")
    q, k, v = qkv(300)
    with pytest.raises(ValueError, match="with autograd.*VGGT_NPU_ATTENTION_MAX_SEQ.*fewer frames"):
        kernels.attention(q.requires_grad_(), k, v)
    with torch.no_grad(), pytest.raises(ValueError, match="bfloat16 or float16.*--dtype bfloat16"):
        kernels.attention(*qkv(300, dtype=torch.float32))
    assert infer_calls == []


def test_the_attention_limit_must_be_a_positive_integer(monkeypatch):
    monkeypatch.setenv(npu.ATTENTION_MAX_SEQ_ENV, "1M")
    with pytest.raises(ValueError, match="VGGT_NPU_ATTENTION_MAX_SEQ='1M' must be a positive integer"):
        npu.attention_max_seq()
    monkeypatch.delenv(npu.ATTENTION_MAX_SEQ_ENV)
    assert npu.attention_max_seq() == 1024 * 1024


def test_emulated_fusion_attention_refuses_sequences_beyond_one_million(torch_npu_emulation):
    q = torch.zeros(1, 1, 1, 8)
    k = torch.zeros(1, 1, 1024 * 1024 + 1, 1).expand(1, 1, 1024 * 1024 + 1, 8)  # no memory for the long key
    with pytest.raises(ValueError, match=r"S must be in 1..1048576"):
        torch_npu_emulation.npu_fusion_attention(q, k, k, 1, "BNSD")


# dense inputs ----------------------------------------------------------------------------------------
def test_fused_attention_receives_contiguous_tensors_from_permuted_views(npu_kernels, monkeypatch):
    seen = []
    op = npu_kernels.npu_fusion_attention
    monkeypatch.setattr(
        npu_kernels, "npu_fusion_attention", lambda q, k, v, *a, **kw: seen.append((q, k, v)) or op(q, k, v, *a, **kw)
    )
    qkv_packed = torch.randn(1, 10, 3, 2, 8)  # [B, N, 3, H, D] as the qkv projection leaves it
    q, k, v = qkv_packed.permute(2, 0, 3, 1, 4).unbind(0)
    assert not q.is_contiguous()
    out = kernels.attention(q, k, v)
    assert seen and all(t.is_contiguous() for t in seen[0])
    torch.testing.assert_close(out, explicit_attention(q, k, v), rtol=1e-5, atol=1e-5)


# rotary: backward B * N <= 1024 ------------------------------------------------------------------------
def rope_tables(tokens: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.rand(tokens, dim // 2, generator=torch.Generator().manual_seed(1))
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
    return cos[None, None], sin[None, None]


def test_rotary_backward_beyond_the_documented_batch_times_heads_is_split_and_gives_torchs_gradient(npu_kernels):
    x = torch.randn(72, 16, 3, 8, requires_grad=True)  # B * N = 1152 > 1024
    cos, sin = rope_tables(3, 8)
    weight = torch.randn(72, 16, 3, 8)
    (kernels.rotary_mul(x, cos, sin) * weight).sum().backward()
    reference = x.detach().clone().requires_grad_()
    (npu.reference.rotary_mul(reference, cos, sin) * weight).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-6, atol=1e-6)


def test_rotary_split_follows_the_lowered_limit(npu_kernels, monkeypatch):
    monkeypatch.setenv(npu.ROTARY_MAX_BN_ENV, "8")
    batches = []
    op = npu_kernels.npu_rotary_mul
    monkeypatch.setattr(npu_kernels, "npu_rotary_mul", lambda x, *a: batches.append(x.shape[0]) or op(x, *a))
    x = torch.randn(5, 2, 3, 8, requires_grad=True)
    cos, sin = rope_tables(3, 8)
    kernels.rotary_mul(x, cos, sin).sum().backward()
    assert batches == [4, 1] and x.grad is not None
    batches.clear()
    with torch.no_grad():
        kernels.rotary_mul(x, cos, sin)  # no backward: one call
    assert batches == [5]


def test_emulated_rotary_refuses_a_backward_beyond_1024_and_a_forward_with_1000_heads(torch_npu_emulation):
    cos, sin = rope_tables(2, 8)
    x = torch.randn(65, 16, 2, 8, requires_grad=True)  # B * N = 1040
    out = torch_npu_emulation.npu_rotary_mul(x, cos, sin, "half")
    with pytest.raises(RuntimeError, match=r"B \* N must be <= 1024, got 1040"):
        out.sum().backward()
    with pytest.raises(ValueError, match="'half' needs B and N below 1000"):
        torch_npu_emulation.npu_rotary_mul(torch.zeros(1, 1000, 2, 8), cos, sin, "half")

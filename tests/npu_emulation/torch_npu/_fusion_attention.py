"""Emulation of `torch_npu.npu_fusion_attention` (sparse_mode 0, layouts BNSD / BSND / BSH / SBH).

Documented formula: out = Dropout(Softmax(Mask(scale * Q K^T, atten_mask)), keep_prob) V, computed here in fp32 with
plain torch ops so that autograd works as it does through the real op's registered backward.
"""

from __future__ import annotations

import torch

_NO_WINDOW = 2147483647  # the documented default of pre_tockens / next_tockens: no band limit
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LAYOUTS = ("BNSD", "BSND", "BSH", "SBH")
_MAX_HEADS = 256
_MAX_HEAD_DIM = 768
_MAX_SEQ = 1024 * 1024  # S of the query and of the key / value: 1..1M
_STATS_WIDTH = 8  # softmax_max / softmax_sum repeat each row's value 8 times on the last dim


def _check_supported(
    input_layout: str,
    pse: torch.Tensor | None,
    padding_mask: torch.Tensor | None,
    atten_mask: torch.Tensor | None,
    keep_prob: float,
    pre_tockens: int,
    next_tockens: int,
    inner_precise: int,
    prefix: list[int] | None,
    actual_seq_qlen: list[int] | None,
    actual_seq_kvlen: list[int] | None,
    sparse_mode: int,
) -> None:
    """Reject arguments the real op rejects (ValueError) and features this emulation does not model."""
    if input_layout == "TND":
        raise NotImplementedError("npu_fusion_attention emulation: the varlen layout TND is not emulated")
    if input_layout not in _LAYOUTS:
        raise ValueError(f"npu_fusion_attention: input_layout must be one of {_LAYOUTS} or TND, got {input_layout!r}")
    if padding_mask is not None:
        raise ValueError("npu_fusion_attention: padding_mask is not supported and must be None")
    if sparse_mode != 0:
        raise NotImplementedError(f"npu_fusion_attention emulation: sparse_mode {sparse_mode} is not emulated (0 only)")
    if pse is not None:
        raise NotImplementedError(
            "npu_fusion_attention emulation: pse is not emulated (its documented place is ambiguous)"
        )
    if prefix is not None or actual_seq_qlen is not None or actual_seq_kvlen is not None:
        raise NotImplementedError("npu_fusion_attention emulation: prefix / actual_seq_qlen / actual_seq_kvlen")
    if atten_mask is not None and (pre_tockens != _NO_WINDOW or next_tockens != _NO_WINDOW):
        raise NotImplementedError("npu_fusion_attention emulation: band windows (pre_tockens / next_tockens)")
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"npu_fusion_attention: keep_prob must be in (0, 1], got {keep_prob}")
    if inner_precise not in (0, 1, 2):
        raise ValueError(f"npu_fusion_attention: inner_precise must be 0, 1 or 2, got {inner_precise}")


def _check_dtypes(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    """q, k and v must share one of fp16 / bf16 / fp32."""
    if query.dtype not in _DTYPES:
        raise TypeError(f"npu_fusion_attention: query must be fp16, bf16 or fp32, got {query.dtype}")
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(
            f"npu_fusion_attention: query, key and value must share a dtype, got {query.dtype}, {key.dtype}, "
            f"{value.dtype}"
        )


def _head_dim(query: torch.Tensor, head_num: int, input_layout: str) -> int:
    """D of the query: its last dim (BNSD / BSND) or H / head_num (BSH / SBH)."""
    if not 1 <= head_num <= _MAX_HEADS:
        raise ValueError(f"npu_fusion_attention: head_num must be in [1, {_MAX_HEADS}], got {head_num}")
    if input_layout in ("BNSD", "BSND"):
        return query.shape[-1]
    if query.shape[-1] % head_num:
        raise ValueError(
            f"npu_fusion_attention: {input_layout} query hidden size {query.shape[-1]} is not divisible by "
            f"head_num {head_num}"
        )
    return query.shape[-1] // head_num


def _to_bnsd(x: torch.Tensor, input_layout: str, head_dim: int, name: str) -> torch.Tensor:
    """`x` in `input_layout` as a (B, N, S, D) view; 3-D layouts are split into heads of `head_dim`."""
    ndim = 3 if input_layout in ("BSH", "SBH") else 4
    if x.dim() != ndim:
        raise ValueError(f"npu_fusion_attention: {input_layout} needs a {ndim}-D {name}, got shape {tuple(x.shape)}")
    if input_layout == "BNSD":
        return x
    if input_layout == "BSND":
        return x.transpose(1, 2)
    if x.shape[-1] % head_dim:
        raise ValueError(
            f"npu_fusion_attention: {name} hidden size {x.shape[-1]} is not a multiple of the head dim {head_dim}"
        )
    heads = x.unflatten(-1, (x.shape[-1] // head_dim, head_dim))
    return heads.transpose(1, 2) if input_layout == "BSH" else heads.permute(1, 2, 0, 3)


def _from_bnsd(x: torch.Tensor, input_layout: str) -> torch.Tensor:
    """(B, N, S, D) back to `input_layout`, contiguous as the real op's fresh output is."""
    if input_layout == "BNSD":
        return x.contiguous()
    if input_layout == "BSND":
        return x.transpose(1, 2).contiguous()
    if input_layout == "BSH":
        return x.transpose(1, 2).flatten(2)
    return x.permute(2, 0, 1, 3).flatten(2)


def _mask_b_n_s1_s2(atten_mask: torch.Tensor, batch: int, heads: int, s1: int, s2: int) -> torch.Tensor:
    """The bool mask (True = masked out) as a 4-D tensor broadcastable to (B, N, S1, S2)."""
    if atten_mask.dtype not in (torch.bool, torch.uint8):
        raise TypeError(f"npu_fusion_attention: atten_mask must be bool or uint8, got {atten_mask.dtype}")
    allowed = [(batch, heads, s1, s2), (batch, 1, s1, s2), (1, 1, s1, s2), (s1, s2)]
    if tuple(atten_mask.shape) not in allowed:
        raise ValueError(
            f"npu_fusion_attention: atten_mask shape {tuple(atten_mask.shape)} is none of BNSS / B1SS / 11SS / SS "
            f"{allowed}"
        )
    mask = atten_mask.bool()
    if mask.all(dim=-1).any():
        # the output of a fully masked row depends on inner_precise and is not documented: refuse to guess
        raise ValueError("npu_fusion_attention emulation: atten_mask masks out every key of some query row")
    return mask if mask.dim() == 4 else mask[None, None]


def npu_fusion_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    head_num: int,
    input_layout: str,
    pse: torch.Tensor | None = None,
    padding_mask: torch.Tensor | None = None,
    atten_mask: torch.Tensor | None = None,
    scale: float = 1.0,
    keep_prob: float = 1.0,
    pre_tockens: int = _NO_WINDOW,
    next_tockens: int = _NO_WINDOW,
    inner_precise: int = 0,
    prefix: list[int] | None = None,
    actual_seq_qlen: list[int] | None = None,
    actual_seq_kvlen: list[int] | None = None,
    sparse_mode: int = 0,
    gen_mask_parallel: bool = True,
    sync: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, int]:
    """Flash attention as documented for torch_npu, emulated on CPU.

    query is (B, N1, S1, D) / (B, S1, N1, D) / (B, S1, N1*D) / (S1, B, N1*D) for BNSD / BSND / BSH / SBH, and
    key / value (same shape as each other) likewise with N2 heads and S2 tokens; N1 = head_num must be a multiple
    of N2 (GQA: query head h reads key/value head h // (N1 / N2)); S1 and S2 are at most 1M. `scale` defaults to
    1.0, as on the real op, so callers must pass 1/sqrt(D). atten_mask (bool or uint8, True / 1 = masked out) is
    BNSS, B1SS, 11SS or SS.
    keep_prob < 1 drops attention probabilities with torch's default generator and rescales by 1/keep_prob.
    gen_mask_parallel and sync only choose how the NPU generates its dropout mask, so they are ignored.

    Returns (out in the input layout and dtype, softmax_max fp32 (B, N1, S1, 8), softmax_sum fp32 (B, N1, S1, 8),
    an empty reserved tensor, seed, offset, numels). softmax_max is the row max of the scaled masked scores and
    softmax_sum the row sum of exp(score - max). seed and offset are 0 (there is no Philox stream here); numels is
    B * N1 * S1 * S2, the dropout mask length.
    """
    _check_supported(
        input_layout,
        pse,
        padding_mask,
        atten_mask,
        keep_prob,
        pre_tockens,
        next_tockens,
        inner_precise,
        prefix,
        actual_seq_qlen,
        actual_seq_kvlen,
        sparse_mode,
    )
    _check_dtypes(query, key, value)
    if key.shape != value.shape:
        raise ValueError(
            f"npu_fusion_attention: key and value shapes must be equal, got {tuple(key.shape)} and {tuple(value.shape)}"
        )
    head_dim = _head_dim(query, head_num, input_layout)
    if not 1 <= head_dim <= _MAX_HEAD_DIM:
        raise ValueError(f"npu_fusion_attention: head dim must be in [1, {_MAX_HEAD_DIM}], got {head_dim}")
    q = _to_bnsd(query, input_layout, head_dim, "query")
    k = _to_bnsd(key, input_layout, head_dim, "key")
    v = _to_bnsd(value, input_layout, head_dim, "value")
    batch, heads, s1, _ = q.shape
    kv_heads, s2 = k.shape[1], k.shape[2]
    if not (1 <= s1 <= _MAX_SEQ and 1 <= s2 <= _MAX_SEQ):
        raise ValueError(f"npu_fusion_attention: S must be in 1..{_MAX_SEQ} (1M), got query {s1} and key/value {s2}")
    if heads != head_num:
        raise ValueError(f"npu_fusion_attention: query has {heads} heads in {input_layout}, head_num is {head_num}")
    if k.shape[0] != batch or k.shape[-1] != head_dim:
        raise ValueError(
            f"npu_fusion_attention: key (B, N, S, D) {tuple(k.shape)} does not match query {tuple(q.shape)} in B or D"
        )
    if heads % kv_heads:
        raise ValueError(f"npu_fusion_attention: head_num {heads} is not a multiple of the {kv_heads} key/value heads")
    group = heads // kv_heads
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)

    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if atten_mask is not None:
        mask = _mask_b_n_s1_s2(atten_mask, batch, heads, s1, s2)
        scores = scores.masked_fill(mask, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    exp = torch.exp(scores - row_max)
    row_sum = exp.sum(dim=-1, keepdim=True)
    probs = exp / row_sum
    if keep_prob < 1.0:
        keep = torch.rand_like(probs) < keep_prob
        probs = probs * keep / keep_prob
    out = torch.matmul(probs, v.float()).to(query.dtype)

    softmax_max = row_max.detach().repeat(1, 1, 1, _STATS_WIDTH)
    softmax_sum = row_sum.detach().repeat(1, 1, 1, _STATS_WIDTH)
    reserved = torch.empty(0, dtype=query.dtype, device=query.device)
    return _from_bnsd(out, input_layout), softmax_max, softmax_sum, reserved, 0, 0, batch * heads * s1 * s2

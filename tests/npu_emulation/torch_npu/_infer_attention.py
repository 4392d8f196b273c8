"""Emulation of `torch_npu.npu_fused_infer_attention_score` for what vggt-npu calls: BNSD, no mask, softmax_lse.

Documented: attention_out = softmax(scale * q k^T) v, and softmax_lse = log(sum(exp(scores - max))) + max of the
scaled scores, float32 (B, N, S, 1) when softmax_lse_flag, else a float32 [0] of shape (1,). Inputs must be
contiguous, q / k / v fp16 or bf16 (int8 is not emulated). An inference op: it has no backward.
"""

from __future__ import annotations

import torch

_DTYPES = (torch.float16, torch.bfloat16)


def _refuse_backward(out: torch.Tensor) -> None:
    """Make a backward through `out` fail, as the real op (registered without a derivative) does."""

    def refuse(grad: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("npu_fused_infer_attention_score has no backward (an inference op)")

    out.register_hook(refuse)


def npu_fused_infer_attention_score(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    num_heads: int = 1,
    scale: float = 1.0,
    input_layout: str = "BSH",
    num_key_value_heads: int = 0,
    softmax_lse_flag: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention_out like query, softmax_lse) for BNSD q (B, N, Sq, D) and k / v (B, N, Skv, D), fp16 / bf16."""
    if input_layout != "BNSD":
        raise NotImplementedError(f"npu_fused_infer_attention_score emulation: layout {input_layout!r} (BNSD only)")
    if num_key_value_heads not in (0, num_heads):
        raise NotImplementedError("npu_fused_infer_attention_score emulation: GQA (num_key_value_heads)")
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"npu_fused_infer_attention_score: {name} must be fp16 or bf16 here, got {tensor.dtype}")
        if not tensor.is_contiguous():
            raise ValueError(f"npu_fused_infer_attention_score: {name} must be contiguous")
        if tensor.dim() != 4:
            raise ValueError(f"npu_fused_infer_attention_score: BNSD {name} must be 4-D, got {tuple(tensor.shape)}")
    if key.shape != value.shape:
        raise ValueError(f"npu_fused_infer_attention_score: key {tuple(key.shape)} and value {tuple(value.shape)}")
    if query.shape[1] != num_heads or key.shape[1] != num_heads:
        raise ValueError(f"npu_fused_infer_attention_score: num_heads {num_heads} is not N of {tuple(query.shape)}")
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    out = torch.matmul(torch.exp(scores - lse), value.float()).to(query.dtype)
    if out.requires_grad:
        _refuse_backward(out)
    if not softmax_lse_flag:
        return out, torch.zeros(1)
    return out, lse.detach()

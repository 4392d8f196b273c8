"""Ascend NPU kernels: torch_npu's fused attention, rotary multiply and exact GELU.

torch_npu is imported on first use, so this module is importable everywhere. Facts behind the
choices (op docs of torch_npu 2.1.0.post17 and 2.14.0, `torch_npu/_op_plugin_docs.py`):
npu_fusion_attention's default scale is 1.0 (pass 1/sqrt(D)) and it takes S in 1..1M, so longer
attention without autograd is split exactly over keys through npu_fused_infer_attention_score, whose
softmax_lse is documented (log of the row sum of exp(qk - max), plus max; shape [B, N, Sq, 1]);
native GELU on NPU ignores `approximate` and computes tanh-GELU, so the exact one is
npu_gelu(approximate="none"); npu_rotary_mul('half') is exactly rotate_half RoPE but wants B and N
below 1000, and its backward (which always computes dcos / dsin) B * N <= 1024.
"""

from __future__ import annotations

import importlib
import math
import os
from types import ModuleType

import torch

from vggt.runtime import reference

ROTARY_MAX_BATCH_OR_HEADS = 1000
ROTARY_MAX_BN_ENV = "VGGT_NPU_ROTARY_MAX_BN"
ROTARY_MAX_BN = 1024  # npu_rotary_mul's backward: B * N <= 1024
ATTENTION_MAX_SEQ_ENV = "VGGT_NPU_ATTENTION_MAX_SEQ"
ATTENTION_MAX_SEQ = 1024 * 1024  # npu_fusion_attention: S (query and key/value) in 1..1M
SPLIT_ATTENTION_DTYPES = (torch.float16, torch.bfloat16)  # what npu_fused_infer_attention_score takes


def torch_npu() -> ModuleType:
    """The torch_npu module (importing it registers the "npu" device with torch).

    Not cached here: sys.modules already is the cache, and tests swap in an emulation per test.
    """
    return importlib.import_module("torch_npu")


def installed() -> bool:
    """Whether torch_npu imports here (it needs the CANN toolkit's libraries)."""
    try:
        torch_npu()
    except ImportError:
        return False
    return True


def configure(deterministic: bool, allow_hf32: bool) -> None:
    """NPU process settings, torch's deterministic flag included; see vggt.runtime.device.configure_process."""
    npu = torch_npu().npu
    npu.set_compile_mode(jit_compile=False)
    npu.config.allow_internal_format = False
    npu.matmul.allow_hf32 = allow_hf32
    npu.conv.allow_hf32 = allow_hf32
    if deterministic and hasattr(npu, "set_deterministic_level"):  # torch_npu >= 2.12; 2.1 has only torch's flag
        # torch's flag first: set_deterministic_level then agrees with it, and torch_npu forbids touching it later
        torch.use_deterministic_algorithms(True)
        npu.set_deterministic_level(1)
    else:
        torch.use_deterministic_algorithms(deterministic)


def common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The narrowest floating dtype among the inputs: what autocast would run the op in.

    Under autocast q and k leave their LayerNorm in float32 while v leaves a bf16 matmul; the fused
    op needs one dtype.
    """
    return min((t.dtype for t in tensors), key=lambda d: torch.finfo(d).bits)


def _limit(env: str, default: int) -> int:
    """A positive integer from $`env` (tests lower the documented limits this way), else `default`."""
    raw = os.environ.get(env, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{env}={raw!r} must be a positive integer (the documented limit is {default})")
    return int(raw)


def attention_max_seq() -> int:
    """The longest S (queries or keys) one fused attention call gets: $VGGT_NPU_ATTENTION_MAX_SEQ, default 1M."""
    return _limit(ATTENTION_MAX_SEQ_ENV, ATTENTION_MAX_SEQ)


def _spans(length: int, limit: int) -> list[slice]:
    """0..length in ceil(length / limit) near-equal slices of at most `limit`."""
    count = math.ceil(length / limit)
    bounds = [round(i * length / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, H, N, D] q, k, v -> [B, H, Nq, D] through npu_fusion_attention (BNSD layout).

    Longer than attention_max_seq() (queries or keys): split exactly (split_attention), without autograd only.
    """
    dtype = common_dtype(q, k, v)
    # the op documents no strided inputs (its inference sibling rejects them): hand it dense BNSD
    q, k, v = (t.to(dtype).contiguous() for t in (q, k, v))
    limit = attention_max_seq()
    if max(q.shape[2], k.shape[2]) <= limit:
        scale = 1.0 / math.sqrt(q.shape[-1])
        return torch_npu().npu_fusion_attention(q, k, v, q.shape[1], "BNSD", scale=scale, keep_prob=1.0)[0]
    if _needs_grad(q, k, v):
        raise ValueError(
            f"attention over {q.shape[2]} queries x {k.shape[2]} keys with autograd: npu_fusion_attention takes at "
            f"most {limit} tokens ({ATTENTION_MAX_SEQ_ENV}) and the exact split runs without autograd only; train "
            "on fewer frames per sample (data.train.img_nums / max_img_per_gpu) or at a lower resolution"
        )
    return split_attention(q, k, v, limit)


def split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, limit: int) -> torch.Tensor:
    """Exact attention of contiguous [B, H, N, D] q, k, v (fp16 / bf16) in query and key chunks of at most `limit`.

    Each key chunk goes through npu_fused_infer_attention_score with its softmax_lse; the chunks are merged in
    float32 (merge_attention). Transient memory: a key and a value chunk, and per query chunk its float32 sum.
    """
    if q.dtype not in SPLIT_ATTENTION_DTYPES:
        raise ValueError(
            f"attention over {k.shape[2]} tokens (more than {limit}, {ATTENTION_MAX_SEQ_ENV}) runs split in "
            f"bfloat16 or float16 on an NPU, got {q.dtype}: pass --dtype bfloat16, or use fewer frames"
        )
    out = torch.empty_like(q)
    key_spans = _spans(k.shape[2], limit)
    for queries in _spans(q.shape[2], limit):
        chunk_q = q[:, :, queries].contiguous()
        total, lse = None, None
        for keys in key_spans:
            part, part_lse = _infer_attention(chunk_q, k[:, :, keys].contiguous(), v[:, :, keys].contiguous())
            total, lse = (part.float(), part_lse) if total is None else merge_attention(total, lse, part, part_lse)
        out[:, :, queries] = total
    return out


def merge_attention(
    total: torch.Tensor, lse: torch.Tensor, part: torch.Tensor, part_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over keys A and B from each one's result and log-sum-exp of scores.

    total [B, H, Nq, D] float32 and lse [B, H, Nq, 1] float32 over A; part [B, H, Nq, D] and part_lse over B
    -> (the float32 result over A and B, its lse). Each result is weighted by its share exp(lse_x - lse_all).
    """
    merged = torch.logaddexp(lse, part_lse)
    return total * torch.exp(lse - merged) + part.float() * torch.exp(part_lse - merged), merged


def _infer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(q k^T / sqrt(D)) v, its softmax_lse [B, H, Nq, 1] float32) for contiguous BNSD fp16 / bf16 inputs."""
    out, lse = torch_npu().npu_fused_infer_attention_score(
        q, k, v, num_heads=q.shape[1], input_layout="BNSD", scale=1.0 / math.sqrt(q.shape[-1]), softmax_lse_flag=True
    )
    return out, lse


def rotary_max_bn() -> int:
    """The largest B * N one npu_rotary_mul call gets with autograd: $VGGT_NPU_ROTARY_MAX_BN, default 1024."""
    return _limit(ROTARY_MAX_BN_ENV, ROTARY_MAX_BN)


def rotary_mul(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x [B, H, N, D] and cos/sin [1, 1, N, D].

    With autograd, B is split so that each call's B * H is at most rotary_max_bn() (the backward's limit).
    """
    batch, heads = x.shape[:2]
    if batch >= ROTARY_MAX_BATCH_OR_HEADS or heads >= ROTARY_MAX_BATCH_OR_HEADS:
        return reference.rotary_mul(x, cos, sin)  # outside the fused op's documented range
    x, cos, sin = x.contiguous(), cos.contiguous(), sin.contiguous()
    limit = rotary_max_bn()
    if batch * heads <= limit or not _needs_grad(x, cos, sin):
        return torch_npu().npu_rotary_mul(x, cos, sin, "half")
    if heads > limit:
        return reference.rotary_mul(x, cos, sin)  # not even one batch element fits the backward
    parts = x.split(limit // heads)
    return torch.cat([torch_npu().npu_rotary_mul(part, cos, sin, "half") for part in parts])


def gelu(x: torch.Tensor) -> torch.Tensor:
    return torch_npu().npu_gelu(x, approximate="none")

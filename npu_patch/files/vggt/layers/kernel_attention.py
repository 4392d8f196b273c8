"""nn.MultiheadAttention whose attention runs through vggt.runtime.kernels (added by VGGT_npu.patch).

Same parameters and state dict as nn.MultiheadAttention, so checkpoints load unchanged; the tracker's
self- and cross-attention then reach npu_fusion_attention on NPU and the fused SDPA kernels on CUDA.
"""

import torch
import torch.nn.functional as F
from torch import nn

from vggt.runtime import kernels


class KernelMultiheadAttention(nn.MultiheadAttention):
    """For batch_first inputs without a mask or dropout; any other call runs nn.MultiheadAttention's own forward."""

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args, **kwargs):
        """query [B, Nq, C], key and value [B, Nk, C] -> ([B, Nq, C], None)."""
        plain = not args and all(v is None or v is False for k, v in kwargs.items() if k != "need_weights")
        dropout = self.dropout if self.training else 0.0
        if not (plain and self.batch_first and self._qkv_same_embed_dim and dropout == 0.0 and query.dim() == 3):
            return super().forward(query, key, value, *args, **kwargs)
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)

        def heads(x: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B, H, N, C / H]
            return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

        out = kernels.attention(heads(F.linear(query, w_q, b_q)), heads(F.linear(key, w_k, b_k)),
                                heads(F.linear(value, w_v, b_v)))  # fmt: skip
        return self.out_proj(out.transpose(1, 2).flatten(2)), None

"""Emulation of `torch_npu.optim.NpuFusedAdamW`: AdamW numerics plus the fused optimizer's documented constraints."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

_PARAM_DTYPES = (torch.float16, torch.float32)  # the fused optimizer combines only these; bf16 raises TypeError
_CLIP_EPS = 1e-6


class NpuFusedAdamW(torch.optim.AdamW):
    """torch.optim.AdamW with the constraints of the NPU fused version.

    - params must be fp16 or fp32 (bf16 and others raise TypeError, at construction or add_param_group);
    - zero_grad defaults to set_to_none=False and raises ValueError for set_to_none=True;
    - clip_grad_norm_fused_ clips all grads by one global norm.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        """Only the real op's arguments, with its defaults (no foreach / fused / capturable switches)."""
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, then reject it unless every param is fp16 or fp32 (the fused kernels' dtypes)."""
        super().add_param_group(param_group)  # first, so torch normalises and checks `params` as usual
        dtypes = {param.dtype for param in self.param_groups[-1]["params"]}
        if not dtypes <= set(_PARAM_DTYPES):
            self.param_groups.pop()
            raise TypeError(f"NpuFusedAdamW: params must be fp16 or fp32, got {sorted(map(str, dtypes))}")

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every grad in place; set_to_none=True raises ValueError (the fused grad buffer must stay)."""
        if set_to_none:
            raise ValueError("NpuFusedAdamW does not support zero_grad(set_to_none=True)")
        super().zero_grad(set_to_none=False)

    @torch.no_grad()
    def clip_grad_norm_fused_(self, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
        """Scale all grads in place by max_norm / (total + 1e-6) when that is < 1; returns total, a 0-D fp32 tensor.

        total is the norm_type-norm of all params' grads taken together (one global norm, not one per group).
        """
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return torch.tensor(0.0)
        per_grad = torch.stack([torch.linalg.vector_norm(g.float(), norm_type) for g in grads])
        total = torch.linalg.vector_norm(per_grad, norm_type)
        factor = (max_norm / (total + _CLIP_EPS)).clamp(max=1.0)  # multiplying by exactly 1.0 leaves grads unchanged
        for grad in grads:
            grad.mul_(factor.to(grad.dtype))
        return total

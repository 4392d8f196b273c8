"""Emulation of `torch_npu.optim.NpuFusedAdamW`, following the Python of the real optimizer (its
optim/npu_fused_optim_base.py, optim/npu_fused_adamw.py and utils/combine_tensors.py, identical in 2.1.0.post17 and
2.14.0 but for one contiguity check).

The fused optimizers flatten lazily: the first step (or zero_grad / clip_grad_norm_fused_ once grads exist) moves
every param that has a grad, its grad and its AdamW state into one flat buffer per dtype (fp32, fp16), each tensor
taking as many elements as its *storage* holds, and from then on update only the flat buffers. A grad that is a
view of a larger storage (a DDP bucket under gradient_as_bucket_view=True) therefore takes the whole bucket, and a
grad tensor replaced later (set to None, or re-pointed by DDP) is no longer the one the optimizer reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import torch

__all__ = ["NpuFusedAdamW"]

_FLAT_DTYPES = (torch.float32, torch.float16)  # the index of each dtype's flat buffer; bf16 raises TypeError
_CLIP_EPS = 1e-6
_state = SimpleNamespace(combine_requires_contiguous=True)  # set from the selected version by the install


def storage_size(tensor: torch.Tensor) -> int:
    """Elements of `tensor`'s storage (torch_npu.get_storage_size for the ND format): a view counts its base."""
    return tensor.untyped_storage().nbytes() // tensor.element_size()


def combine_tensors(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """One zeroed flat buffer for `tensors` (one dtype), each moved into it with its value kept: tensor i starts at
    the sum of the storage sizes before it, plus its own storage offset (the real op moves the storage's data
    pointer). None for no tensors or no elements. On the CPU only each tensor itself moves, not other tensors that
    share its storage."""
    if not tensors:
        return None
    if any(t is None for t in tensors):
        raise RuntimeError("npu_combine_tensors: tensors to combine must not be None")
    if len({t.dtype for t in tensors}) > 1:
        raise RuntimeError("npu_combine_tensors: tensors to combine must share one dtype")
    if _state.combine_requires_contiguous and not all(t.is_contiguous() for t in tensors):
        raise RuntimeError("npu_combine_tensors: tensors to combine must be contiguous")
    sizes = [storage_size(t) for t in tensors]
    if sum(sizes) == 0:
        return None
    flat = torch.zeros(sum(sizes), dtype=tensors[0].dtype, device=tensors[0].device)
    start = 0
    for tensor, size in zip(tensors, sizes):
        value = tensor.clone()
        # .data keeps the tensor's autograd hooks (DDP's), as moving a data pointer does; set_ would replace them
        tensor.data = flat.as_strided(tensor.shape, tensor.stride(), start + tensor.storage_offset())
        tensor.copy_(value)
        start += size
    return flat


def _part(flat: torch.Tensor | None, start: int, size: int) -> torch.Tensor | None:
    """Elements [start, start + size) of a flat buffer, aliasing it (None for no buffer or no elements)."""
    if flat is None or size == 0:
        return None
    if start + size > flat.numel():
        raise RuntimeError(f"fused optimizer: part [{start}, {start + size}) beyond a flat buffer of {flat.numel()}")
    return flat.narrow(0, start, size)


def _dtype_index(param: torch.Tensor) -> int:
    if param.dtype not in _FLAT_DTYPES:
        raise TypeError(f"Fused optimizer's parameters must be float32 or float16, got {param.dtype}")
    return _FLAT_DTYPES.index(param.dtype)


class NpuFusedAdamW(torch.optim.Optimizer):
    """AdamW over flat per-dtype buffers, as torch_npu's NpuFusedAdamW.

    - params must be fp16 or fp32: a bf16 param with a grad raises TypeError when the buffers are built (first
      step, zero_grad or clip), not at construction;
    - only params that have a grad when the buffers are built are ever updated;
    - zero_grad defaults to set_to_none=False and raises ValueError for set_to_none=True;
    - clip_grad_norm_fused_ clips all grads by one global norm, computed over the flat grad buffers.
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
        """Only the real optimizer's arguments, with its defaults and range checks (no foreach / fused switches)."""
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"NpuFusedAdamW: invalid lr {lr}, eps {eps}, betas {betas} or weight_decay {weight_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad}
        super().__init__(params, defaults)
        self.is_fused_optimizer = True
        self.is_params_grads_combined = False
        self.is_states_combined = False
        self._params_by_dtype: list[list[torch.Tensor]] = [[], []]
        self._group_params: list[list[list[torch.Tensor]]] = []  # [group][dtype index] -> params with grads
        self._flat_params: list[torch.Tensor | None] = [None, None]
        self._flat_grads: list[torch.Tensor | None] = [None, None]
        self._group_flat: list[list[tuple[torch.Tensor | None, torch.Tensor | None]]] = []  # (param, grad) parts
        self._group_states: list[list[dict[str, Any]]] = []
        self._grad_masks: list[torch.Tensor | None] | None = None

    def get_combined_params(self) -> list[torch.Tensor | None]:
        """The flat param buffers (fp32, fp16); None before they are built or where a dtype has no param."""
        return self._flat_params

    def get_combined_grads(self) -> list[torch.Tensor | None]:
        """The flat grad buffers (fp32, fp16), sized by the grads' storages."""
        return self._flat_grads

    @torch.no_grad()
    def _combine_params_and_grads(self) -> None:
        """Build the flat param and grad buffers from the params that have a grad now, and each group's parts."""
        self._group_params, sizes = [], []
        for group in self.param_groups:
            lists: list[list[torch.Tensor]] = [[], []]
            group_sizes = [[0, 0], [0, 0]]  # [params, grads][dtype index]
            for param in group["params"]:
                if param.grad is None:
                    continue
                index = _dtype_index(param)
                lists[index].append(param)
                group_sizes[0][index] += storage_size(param)
                group_sizes[1][index] += storage_size(param.grad)
            self._group_params.append(lists)
            sizes.append(group_sizes)
        self._params_by_dtype = [[p for lists in self._group_params for p in lists[i]] for i in range(2)]
        for i in range(2):
            grads = [p.grad for p in self._params_by_dtype[i]]
            self._flat_params[i] = combine_tensors(self._params_by_dtype[i])
            self._flat_grads[i] = combine_tensors(grads)
        starts = [[0, 0], [0, 0]]
        self._group_flat = []
        for group_sizes in sizes:
            parts = []
            for i in range(2):
                param_part = _part(self._flat_params[i], starts[0][i], group_sizes[0][i])
                grad_part = _part(self._flat_grads[i], starts[1][i], group_sizes[1][i])
                starts[0][i] += group_sizes[0][i]
                starts[1][i] += group_sizes[1][i]
                parts.append((param_part, grad_part))
            self._group_flat.append(parts)
        self.is_params_grads_combined = any(flat is not None for flat in self._flat_params)

    def _combine_states(self) -> None:
        """Create (or copy, after load_state_dict) each param's AdamW state and flatten it per group and dtype."""
        self._group_states = []
        for group, lists in zip(self.param_groups, self._group_params):
            per_dtype = []
            for params in lists:
                for param in params:
                    self._init_param_state(param, group["amsgrad"])
                states = [self.state[p] for p in params]
                per_dtype.append(
                    {
                        "step": states[0]["step"] if states else 0,
                        "exp_avg": combine_tensors([s["exp_avg"] for s in states]),
                        "exp_avg_sq": combine_tensors([s["exp_avg_sq"] for s in states]),
                        "max_exp_avg_sq": combine_tensors([s["max_exp_avg_sq"] for s in states if group["amsgrad"]]),
                    }
                )
            self._group_states.append(per_dtype)
        self.is_states_combined = bool(self._group_states)

    def _init_param_state(self, param: torch.Tensor, amsgrad: bool) -> None:
        """Zero moments for a new param; fresh copies of loaded ones (flattening must not move a loaded tensor)."""
        state = self.state[param]
        names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
        if not state:
            state["step"] = 0
            state.update({name: torch.zeros_like(param, memory_format=torch.preserve_format) for name in names})
            return
        for name in names:
            state[name] = torch.zeros_like(param, memory_format=torch.preserve_format).copy_(state[name])

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One AdamW update of the flat buffers (decoupled weight decay, bias-corrected moments)."""
        loss = closure() if closure is not None else None
        if not self.is_params_grads_combined:
            self._combine_params_and_grads()
        if not self.is_states_combined:
            self._combine_states()
        for group, parts, states in zip(self.param_groups, self._group_flat, self._group_states):
            for param in group["params"]:
                if param.grad is not None:
                    self.state[param]["step"] += 1
            beta1, beta2 = group["betas"]
            for (param, grad), state in zip(parts, states):
                if param is None or grad is None:
                    continue
                param.mul_(1 - group["lr"] * group["weight_decay"])
                state["step"] += 1
                correction1 = 1 - beta1 ** state["step"]
                correction2 = 1 - beta2 ** state["step"]
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                second = state["exp_avg_sq"]
                if group["amsgrad"]:
                    torch.max(state["max_exp_avg_sq"], second, out=state["max_exp_avg_sq"])
                    second = state["max_exp_avg_sq"]
                denom = (second.sqrt() / math.sqrt(correction2)).add_(group["eps"])
                if param.dtype == torch.float16:  # torch 2.1 has no float16 addcdiv on the CPU
                    param.add_(state["exp_avg"] / denom, alpha=-group["lr"] / correction1)
                else:
                    param.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / correction1)
        return loss

    @torch.no_grad()
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the flat grad buffers (building them first if grads exist); set_to_none=True raises ValueError."""
        if set_to_none:
            raise ValueError("set_to_none is not supported in fused optimizers")
        if not self.is_params_grads_combined:
            self._combine_params_and_grads()
            if not self.is_params_grads_combined:
                super().zero_grad(set_to_none=False)
                return
        for flat in self._flat_grads:
            if flat is not None:
                flat.zero_()

    @torch.no_grad()
    def clip_grad_norm_fused_(self, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
        """Scale the flat grads in place by max_norm / (total + 1e-6) when that is < 1; returns total (0-D fp32).

        total is the norm_type-norm of all flat grad buffers together, each masked by a flat buffer of ones sized
        by the grads' own elements (the real optimizer's guard for padded private formats).
        """
        if not self.is_params_grads_combined:
            self._combine_params_and_grads()
        if self._grad_masks is None:
            self._grad_masks = [
                combine_tensors([torch.ones(p.grad.size()) for p in params if p.requires_grad])
                for params in self._params_by_dtype
            ]
        pairs = [(grad, mask) for grad, mask in zip(self._flat_grads, self._grad_masks) if grad is not None]
        if not pairs:
            return torch.tensor(0.0)
        norm_type = float(norm_type)
        if norm_type == math.inf:
            total = max(grad.float().abs().mul_(mask).max() for grad, mask in pairs)
        else:
            powers = [grad.float().abs().pow(norm_type).mul_(mask).sum() for grad, mask in pairs]
            total = torch.stack(powers).sum().pow(1 / norm_type)
        factor = float(max_norm) / (total + _CLIP_EPS)
        if factor < 1:
            for grad, _ in pairs:
                grad.mul_(factor)
        return total

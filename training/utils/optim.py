"""Optimisation pieces of the trainer: LR schedule, freezing by glob (and frozen layers held in the autocast dtype),
per-module clipping, non-finite skips."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def lr_at(progress: float, base_lr: float, min_lr: float, warmup_fraction: float) -> float:
    """Linear warm-up from min_lr to base_lr over `warmup_fraction` of training, then cosine down to min_lr.

    progress: fraction of training done, (epoch + step / steps_per_epoch) / max_epochs, in [0, 1].
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup_fraction:
        return min_lr + (base_lr - min_lr) * progress / warmup_fraction
    t = (progress - warmup_fraction) / max(1.0 - warmup_fraction, 1e-12)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def freeze(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Freeze every module whose name matches a glob (e.g. "*aggregator*"); returns the frozen names.

    Frozen modules get requires_grad=False on all parameters; keep them in eval mode with
    `keep_frozen_in_eval`. A pattern that matches nothing is an error (a typo would silently train).
    """
    modules = {name: module for name, module in model.named_modules() if name}
    matched: set[str] = set()
    for pattern in patterns:
        hits = {name for name in modules if fnmatch.fnmatchcase(name, pattern)}
        if not hits:
            top = sorted({name.split(".")[0] for name in modules})
            raise ValueError(f"optim.frozen pattern {pattern!r} matches no module; top-level modules: {top}")
        matched |= hits
    # report the outermost matches only: freezing a module freezes its children
    frozen = sorted(m for m in matched if not any(m.startswith(other + ".") for other in matched))
    for name in frozen:
        modules[name].requires_grad_(False)
    return frozen


def keep_frozen_in_eval(model: nn.Module, frozen: Sequence[str]) -> None:
    """After model.train(): frozen modules stay in eval (no activation checkpointing, fixed behaviour)."""
    modules = dict(model.named_modules())
    for name in frozen:
        modules[name].eval()


CLIP_RULES = ("substring", "top_level")


def hold_frozen_layers_in(
    model: nn.Module, module_name: str, dtype: torch.dtype, keep_originals: bool = True
) -> dict[str, torch.Tensor]:
    """Every nn.Linear and nn.Conv2d under model.`module_name` that has no trainable parameter, run under an
    autocast to `dtype`: its parameters stored in `dtype`, the values autocast casts them to on every call (the
    same outputs without a per-step cast of every frozen weight, and half their device memory; bf16 inference on a
    CPU then also takes its fused fc1 + GELU, cpu.fuses_linear_gelu, within a bf16 ulp of the two ops). Returns
    their originals by model state-dict key, on the host (on a CPU the same tensors, no copy), for checkpoints to
    keep the weights as loaded; none without keep_originals (ranks that write no checkpoint)."""
    originals: dict[str, torch.Tensor] = {}
    for name, layer in model.get_submodule(module_name).named_modules():
        if not isinstance(layer, (nn.Linear, nn.Conv2d)) or any(p.requires_grad for p in layer.parameters()):
            continue
        prefix = ".".join(part for part in (module_name, name) if part)
        for key, param in layer.named_parameters(recurse=False):
            if keep_originals and param.dtype != dtype:
                originals[f"{prefix}.{key}"] = param.detach().cpu()
        layer.to(dtype)
    return originals


def _in_group(param_name: str, modules: Sequence[str], rule: str) -> bool:
    """substring: a module name occurs anywhere in the parameter name (upstream); top_level: the parameter's
    top-level module, without its "_head" suffix, is one of the names (each parameter in exactly one group)."""
    if rule == "substring":
        return any(m in param_name for m in modules)
    return param_name.split(".")[0].removesuffix("_head") in modules


class GradientClipper:
    """Per-module gradient-norm clipping over groups of trainable parameters; every one must be covered.

    rule "substring" (upstream's, the default): a parameter belongs to every group one of whose module names
    occurs in its name, so e.g. aggregator.camera_token is clipped with the aggregator and with the camera
    group. rule "top_level": by the parameter's top-level module only (aggregator, camera[_head], ...).
    """

    def __init__(self, model: nn.Module, groups: Sequence[dict[str, Any]], rule: str = "substring"):
        if rule not in CLIP_RULES:
            raise ValueError(f"optim.clip_rule must be one of {CLIP_RULES}, got {rule!r}")
        self.rule = rule
        self.groups: list[tuple[str, list[nn.Parameter], float, float]] = []
        assigned: set[str] = set()
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        for group in groups:
            modules = list(group["modules"])
            members = [(n, p) for n, p in trainable if _in_group(n, modules, rule)]
            assigned.update(n for n, _ in members)
            params = [p for _, p in members]
            if params:
                label = "_".join(modules)
                self.groups.append(
                    (label, params, float(group.get("max_norm", 1.0)), float(group.get("norm_type", 2.0)))
                )
        uncovered = sorted({n.split(".")[0] for n, _ in trainable if n not in assigned})
        if uncovered:
            raise ValueError(
                f"optim.clip covers no group for the trainable parameters of {uncovered}; add e.g. "
                f"{{modules: [{uncovered[0].removesuffix('_head')}], max_norm: 1.0}} to optim.clip"
            )

    def clip(self) -> dict[str, torch.Tensor]:
        """Clip each group in place; returns the pre-clip total norm of each group (device tensors)."""
        norms = {}
        for label, params, max_norm, norm_type in self.groups:
            grads = [p for p in params if p.grad is not None]
            if grads:
                norms[label] = torch.nn.utils.clip_grad_norm_(grads, max_norm, norm_type=norm_type)
        return norms


def step_unless_nonfinite(optimizer: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
    """optimizer.step(), skipped when `found_inf` (a device scalar) is nonzero.

    Optimizers that accept the flag on the device (fused AdamW) skip without a host sync; the others
    need one read of the flag. Gradients are all-reduced by DDP first, so every rank sees the same
    flag and skips together.
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.grad_scale = None
        optimizer.found_inf = found_inf.to(torch.float32)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale
    elif not bool(found_inf):
        optimizer.step()

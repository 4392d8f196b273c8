"""Emulation of `torch_npu.npu` (also `torch.npu` once installed): an Atlas A2 (910B) runtime.

No card is visible unless the install asks for some (`visible_cards`); then the cards have 64 GiB each, all free
(nothing is allocated on them: tensors stay on the CPU). Device arguments are resolved as the real Python layer does
(its `_get_device_index` over torch's), so what needs an index in a version needs it here. Defaults follow the
documented A2 values: jit_compile off, allow_internal_format off, matmul HF32 off, conv HF32 on.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import torch
from torch._utils import _get_device_index as _torch_get_device_index

__all__ = [
    "config", "conv", "current_device", "device_count", "get_device_name", "get_deterministic_level", "is_available",
    "is_bf16_supported", "is_jit_compile_false", "manual_seed", "manual_seed_all", "matmul", "max_memory_allocated",
    "mem_get_info", "memory_allocated", "reset_emulation_state", "reset_peak_memory_stats", "set_compile_mode",
    "set_deterministic_level", "set_device", "synchronize",
]  # fmt: skip
CARD_MEMORY_BYTES = 64 * 1024**3  # the HBM of one Atlas 800T A2 card (910B)
EMULATION_ONLY = frozenset({"reset_emulation_state", "get_deterministic_level"})

config = SimpleNamespace(allow_internal_format=False)
matmul = SimpleNamespace(allow_hf32=False)
conv = SimpleNamespace(allow_hf32=True)
_state = SimpleNamespace(
    jit_compile=False, deterministic_level=0, visible_cards=0, current_device=0, mem_get_info_index_optional=True
)

_DETERMINISTIC_LEVELS = range(4)  # 0 off, 1 deterministic, 2 strong consistency, 3 batch-invariant


def reset_emulation_state(visible_cards: int = 0, mem_get_info_index_optional: bool = True) -> None:
    """Emulation-only: restore every flag to its A2 default and set what the selected version and install ask for."""
    config.allow_internal_format = False
    matmul.allow_hf32 = False
    conv.allow_hf32 = True
    _state.jit_compile = False
    _state.deterministic_level = 0
    _state.visible_cards = visible_cards
    _state.current_device = 0
    _state.mem_get_info_index_optional = mem_get_info_index_optional


def _get_device_index(device: Any, optional: bool = False) -> int:
    """The card index of `device` (int, "npu:1", torch.device), as torch_npu.npu.utils._get_device_index finds it."""
    if isinstance(device, str):
        device = torch.device(device)
    if isinstance(device, torch.device) and device.type != "npu":
        raise ValueError(f"expected an npu device, got {device}")
    return _torch_get_device_index(device, optional)


def _card(device: Any, optional: bool = True) -> int:
    """The index of a visible card named by `device` (None: the current one); RuntimeError where there is none."""
    index = _state.current_device if device is None else _get_device_index(device, optional)
    if not 0 <= index < _state.visible_cards:
        raise RuntimeError(f"NPU {index} is not visible: the emulation shows {_state.visible_cards} card(s)")
    return index


def is_available() -> bool:
    """Whether a card is visible (none unless the install asked for some)."""
    return _state.visible_cards > 0


def device_count() -> int:
    """How many cards are visible."""
    return _state.visible_cards


def current_device() -> int:
    """The current card's index; RuntimeError when no card is visible (the real runtime fails to initialise)."""
    return _card(None)


def set_device(device: torch.device | int | str) -> None:
    """Make `device` the current card (an index-less "npu" keeps the current one)."""
    _state.current_device = _card(device)


def mem_get_info(device: torch.device | int | str | None = None) -> tuple[int, int]:
    """(free, total) bytes of a card, as torch_npu.npu.mem_get_info: None is the current card; a torch.device
    without an index raises ValueError in the versions whose mem_get_info requires one (up to 2.9)."""
    if device is None:
        device = current_device()
    index = _get_device_index(device, optional=_state.mem_get_info_index_optional)
    if index < 0 or index >= device_count():
        raise AssertionError(f"invalid device id {index}: {device_count()} card(s) visible")
    return CARD_MEMORY_BYTES - memory_allocated(index), CARD_MEMORY_BYTES


def is_bf16_supported() -> bool:
    """The emulated chip (910B) supports bf16."""
    return True


def get_device_name(device: torch.device | int | str | None = None) -> str:
    """The emulated card's name."""
    return "Ascend910B (CPU emulation)"


def synchronize(device: torch.device | int | str | None = None) -> None:
    """A no-op: CPU ops run synchronously."""


def manual_seed(seed: int) -> None:
    """A no-op: there is no NPU generator (the emulated ops draw from torch's CPU generator)."""


def manual_seed_all(seed: int) -> None:
    """A no-op: there is no NPU generator (the emulated ops draw from torch's CPU generator)."""


def memory_allocated(device: torch.device | int | str | None = None) -> int:
    """0: the emulation has no NPU allocator."""
    return 0


def max_memory_allocated(device: torch.device | int | str | None = None) -> int:
    """0: the emulation has no NPU allocator."""
    return 0


def reset_peak_memory_stats(device: torch.device | int | str | None = None) -> None:
    """A no-op: the emulation has no NPU allocator."""


def set_compile_mode(jit_compile: bool = False) -> None:
    """Record whether ops compile online (truthy, as the real option "enable") or use binary kernels (the default)."""
    _state.jit_compile = bool(jit_compile)


def is_jit_compile_false() -> bool:
    """True while binary kernels are in use (jit_compile=False)."""
    return not _state.jit_compile


def set_deterministic_level(level: int) -> None:
    """Set the determinism level (0 off, 1 deterministic, 2 + strong consistency, 3 batch-invariant), as 2.14 does:
    it switches torch.use_deterministic_algorithms to match (warning that it does) and always warns not to call
    torch.use_deterministic_algorithms afterwards. Absent in versions before CANN 8.5 (the install removes it)."""
    if level not in _DETERMINISTIC_LEVELS:  # the C layer's check, modelled here
        raise ValueError(f"set_deterministic_level: level must be 0, 1, 2 or 3, got {level!r}")
    enabled = torch.are_deterministic_algorithms_enabled()
    if (level == 0 and enabled) or (level >= 1 and not enabled):
        warnings.warn(
            f"set_deterministic_level({level}) switched torch.use_deterministic_algorithms to {level >= 1} to match",
            stacklevel=2,
        )
        torch.use_deterministic_algorithms(level >= 1)
    _state.deterministic_level = level
    warnings.warn(
        "set_deterministic_level was called: calling torch.use_deterministic_algorithms after it is unsupported",
        stacklevel=2,
    )


def get_deterministic_level() -> int:
    """Emulation-only (the real module has no such getter): the level last set by set_deterministic_level."""
    return _state.deterministic_level

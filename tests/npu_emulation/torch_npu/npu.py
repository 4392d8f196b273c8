"""Emulation of `torch_npu.npu` (also `torch.npu` once installed): an Atlas A2 (910B) runtime with no card visible.

Defaults follow the documented A2 values: jit_compile off, allow_internal_format off, matmul HF32 off, conv HF32 on.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

config = SimpleNamespace(allow_internal_format=False)
matmul = SimpleNamespace(allow_hf32=False)
conv = SimpleNamespace(allow_hf32=True)
_state = SimpleNamespace(jit_compile=False, deterministic_level=0)

_DETERMINISTIC_LEVELS = range(4)  # 0 off, 1 deterministic, 2 strong consistency, 3 batch-invariant


def reset_emulation_state() -> None:
    """Emulation-only: restore every flag above to its A2 default, so each test starts from a clean runtime."""
    config.allow_internal_format = False
    matmul.allow_hf32 = False
    conv.allow_hf32 = True
    _state.jit_compile = False
    _state.deterministic_level = 0


def is_available() -> bool:
    """No NPU is visible on a CPU machine."""
    return False


def device_count() -> int:
    """No NPU is visible on a CPU machine."""
    return 0


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


def set_compile_mode(jit_compile: bool) -> None:
    """Record whether ops compile online (True) or use precompiled binary kernels (False, the A2 default)."""
    if not isinstance(jit_compile, bool):
        raise TypeError(f"set_compile_mode: jit_compile must be a bool, got {jit_compile!r}")
    _state.jit_compile = jit_compile


def is_jit_compile_false() -> bool:
    """True while binary kernels are in use (jit_compile=False)."""
    return not _state.jit_compile


def set_deterministic_level(level: int) -> None:
    """Record the determinism level: 0 off, 1 deterministic, 2 + strong consistency, 3 batch-invariant."""
    if level not in _DETERMINISTIC_LEVELS:
        raise ValueError(f"set_deterministic_level: level must be 0, 1, 2 or 3, got {level!r}")
    _state.deterministic_level = level


def get_deterministic_level() -> int:
    """Emulation-only (the real module has no such getter): the level last set by set_deterministic_level."""
    return _state.deterministic_level

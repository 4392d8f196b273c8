"""Selecting the torch_npu emulation: `install_torch_npu_emulation(monkeypatch, profile=..., visible_cards=...)` for
one test, `activate_in_this_process(...)` for a subprocess that runs a whole program under it (see run.py)."""

from __future__ import annotations

import importlib.util
import operator
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import torch

from tests.npu_emulation import profiles
from tests.npu_emulation import torch_npu as emulation
from tests.npu_emulation.torch_npu import _activation, _fusion_attention, _infer_attention, _rotary
from tests.npu_emulation.torch_npu._schema import bind_to_schema

_OP_IMPLEMENTATIONS = {
    "npu_fusion_attention": _fusion_attention.npu_fusion_attention,
    "npu_rotary_mul": _rotary.npu_rotary_mul,
    "npu_gelu": _activation.npu_gelu,
    "npu_fused_infer_attention_score": _infer_attention.npu_fused_infer_attention_score,
}

# the names some version lacks, kept here so that an install of a version that has them puts them back
_VERSIONED_NPU_NAMES = {
    name: getattr(emulation.npu, name) for version in profiles.PROFILES.values() for name in version.absent_npu_names
}


class _DeterministicAlgorithms:
    """torch's deterministic-algorithms switch as an attribute, so that monkeypatch restores it at the end of a test
    (2.14's set_deterministic_level flips it)."""

    @property
    def enabled(self) -> bool:
        return torch.are_deterministic_algorithms_enabled()

    @enabled.setter
    def enabled(self, value: bool) -> None:
        torch.use_deterministic_algorithms(value)


_DETERMINISTIC_ALGORITHMS = _DeterministicAlgorithms()


def _real_torch_npu_present() -> bool:
    """Whether a torch_npu other than the emulation is loaded or importable (found without importing it)."""
    if "torch_npu" in sys.modules:
        return sys.modules["torch_npu"] is not emulation
    return importlib.util.find_spec("torch_npu") is not None


def _activate(
    setitem: Callable[[Any, str, Any], None],
    setattr_: Callable[[Any, str, Any], None],
    delattr_: Callable[[Any, str], None],
    profile: str,
    visible_cards: int,
) -> ModuleType:
    """Present the emulation as torch_npu `profile` with `visible_cards` cards, through the given setters."""
    if profile not in profiles.PROFILES:
        raise ValueError(f"unknown torch_npu profile {profile!r}; the emulation has {sorted(profiles.PROFILES)}")
    version = profiles.PROFILES[profile]
    setattr_(_DETERMINISTIC_ALGORITHMS, "enabled", torch.are_deterministic_algorithms_enabled())
    emulation.npu.reset_emulation_state(visible_cards, version.mem_get_info_index_optional)
    setattr_(emulation.optim._state, "combine_requires_contiguous", version.combine_requires_contiguous)
    for name, schema in version.schemas.items():
        setattr_(emulation, name, bind_to_schema(schema, _OP_IMPLEMENTATIONS[name]))
    for name, value in sorted(_VERSIONED_NPU_NAMES.items()):
        if name in version.absent_npu_names:
            if hasattr(emulation.npu, name):
                delattr_(emulation.npu, name)
        else:
            setattr_(emulation.npu, name, value)
    setattr_(emulation, "__version__", version.version)
    setitem(sys.modules, "torch_npu", emulation)
    setitem(sys.modules, "torch_npu.npu", emulation.npu)
    setitem(sys.modules, "torch_npu.optim", emulation.optim)
    # importing the real torch_npu registers its npu module as torch.npu
    setitem(sys.modules, "torch.npu", emulation.npu)
    setattr_(torch, "npu", emulation.npu)
    return emulation


def install_torch_npu_emulation(
    monkeypatch: pytest.MonkeyPatch, profile: str = profiles.NEWEST, visible_cards: int = 0
) -> ModuleType:
    """Make `import torch_npu` (and torch_npu.npu, torch_npu.optim, torch.npu) give the emulation until the test ends.

    `profile`: the torch_npu version it presents (op signatures, which names exist, device-API behaviour; see
    profiles.py); `visible_cards`: how many emulated cards is_available / device_count report. Skips the test when
    a real torch_npu is installed, which the emulation must never shadow. Runtime flags start at their A2 defaults.
    """
    if _real_torch_npu_present():
        pytest.skip("real torch_npu installed: run the NPU tests on the device instead")
    return _activate(
        monkeypatch.setitem,
        lambda target, name, value: monkeypatch.setattr(target, name, value, raising=False),
        monkeypatch.delattr,
        profile,
        visible_cards,
    )


def activate_in_this_process(profile: str, visible_cards: int, register_npu_device: bool) -> ModuleType:
    """The emulation as torch_npu for the rest of this process (a subprocess of a test).

    `register_npu_device` renames torch's PrivateUse1 backend to "npu", as importing torch_npu does, so that
    torch.device("npu") parses; that cannot be undone, hence only in a process of its own.
    """
    if _real_torch_npu_present():
        raise RuntimeError("a real torch_npu is installed here: the emulation refuses to shadow it")
    module = _activate(operator.setitem, setattr, delattr, profile, visible_cards)
    if register_npu_device:
        torch.utils.rename_privateuse1_backend("npu")
    return module

"""Selecting the torch_npu emulation for one test: `install_torch_npu_emulation(monkeypatch)`."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
import torch

from tests.npu_emulation import torch_npu as emulation


def _real_torch_npu_present() -> bool:
    """Whether a torch_npu other than the emulation is loaded or importable (found without importing it)."""
    if "torch_npu" in sys.modules:
        return sys.modules["torch_npu"] is not emulation
    return importlib.util.find_spec("torch_npu") is not None


def install_torch_npu_emulation(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Make `import torch_npu` (and torch_npu.npu, torch_npu.optim, torch.npu) give the emulation until the test ends.

    Skips the test when a real torch_npu is installed, which the emulation must never shadow. The emulated runtime
    flags (compile mode, determinism level, config) are reset to their A2 defaults on every install.
    """
    if _real_torch_npu_present():
        pytest.skip("real torch_npu installed: run the NPU tests on the device instead")
    emulation.npu.reset_emulation_state()
    monkeypatch.setitem(sys.modules, "torch_npu", emulation)
    monkeypatch.setitem(sys.modules, "torch_npu.npu", emulation.npu)
    monkeypatch.setitem(sys.modules, "torch_npu.optim", emulation.optim)
    # importing the real torch_npu registers its npu module as torch.npu
    monkeypatch.setitem(sys.modules, "torch.npu", emulation.npu)
    monkeypatch.setattr(torch, "npu", emulation.npu, raising=False)
    return emulation

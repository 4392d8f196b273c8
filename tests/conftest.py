"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.npu_emulation.install import install_torch_npu_emulation
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.runtime import procfs
from vggt.runtime.precision import CPU_BF16_ENV

# `--dtype auto` follows the CPU's bf16 instructions; the suite (and its subprocesses) runs the same on every CPU
os.environ.setdefault(CPU_BF16_ENV, "0")


@pytest.fixture
def tiny_model() -> VGGT:
    """A randomly initialised tiny VGGT in eval mode (seeded)."""
    torch.manual_seed(0)
    return VGGT(config=VGGTConfig.tiny()).eval()


@pytest.fixture
def fake_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """fake(line): /proc/cpuinfo reads as two processors, the first with `line` ("flags : ...", "vendor_id : ...");
    fake(None): there is no /proc/cpuinfo (not Linux)."""

    def fake(line: str | None) -> None:
        cpuinfo = tmp_path / "cpuinfo"
        if line is not None:
            cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\n{line}\n\nprocessor\t: 1\n")
        monkeypatch.setattr(procfs, "PROC_CPUINFO", cpuinfo)

    return fake


@pytest.fixture
def torch_npu_emulation(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The CPU emulation of torch_npu, importable as `torch_npu` for this test only (skips if a real one exists)."""
    return install_torch_npu_emulation(monkeypatch)


@pytest.fixture
def npu_kernels(torch_npu_emulation: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Route every kernel through the NPU backend (on CPU tensors, via the emulation) for this test."""
    monkeypatch.setenv("VGGT_KERNELS", "npu")
    return torch_npu_emulation


@pytest.fixture(params=["torch", "cuda", "npu"])
def kernel_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each kernel backend in turn, forced with VGGT_KERNELS on CPU tensors (cuda: SDPA's CPU flash kernel,
    npu: the torch_npu emulation)."""
    if request.param == "npu":
        install_torch_npu_emulation(monkeypatch)
    monkeypatch.setenv("VGGT_KERNELS", request.param)
    return request.param


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small generated scenes in the Co3D layout (tests/training_helpers.SCENES), shared by the session."""
    from tests.training_helpers import SCENES
    from training.data.synthetic import generate_scenes

    out = tmp_path_factory.mktemp("scenes")
    generate_scenes(
        out,
        num_sequences=SCENES["num_sequences"],
        frames_per_sequence=SCENES["frames_per_sequence"],
        image_size=tuple(SCENES["scene_size"]),
        seed=SCENES["scene_seed"],
    )
    return out

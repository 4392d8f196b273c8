"""`auto` precision: bf16 where the hardware computes it natively (detected on CPUs), never an emulated one."""

from __future__ import annotations

import pytest
import torch

from vggt import runtime
from vggt.runtime import precision

CPU = torch.device("cpu")
SAPPHIRE_RAPIDS_FLAGS = "fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
COOPER_LAKE_FLAGS = "fpu sse2 avx2 avx512f avx512_bf16"
ZEN2_FLAGS = "fpu sse2 avx2 fma"


@pytest.fixture
def detect(monkeypatch: pytest.MonkeyPatch):
    """Detection without the suite's override; returns a function that fakes torch's probes."""
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)

    def fake(amx: bool, avx512_bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)

    return fake


@pytest.fixture
def old_torch_cpuinfo(monkeypatch: pytest.MonkeyPatch, fake_cpuinfo):
    """torch without the private probes (< 2.3): detection reads the given /proc/cpuinfo flags line."""
    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    return lambda flags: fake_cpuinfo(None if flags is None else f"flags\t\t: {flags}")


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(True, True, "AMX-BF16"), (False, True, "AVX512-BF16"), (False, False, None)],
)
def test_torch_probes_decide_which_bf16_instructions_the_cpu_has(detect, amx, avx512_bf16, expected):
    detect(amx, avx512_bf16)
    assert runtime.cpu_bf16_instructions() == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(SAPPHIRE_RAPIDS_FLAGS, "AMX-BF16"), (COOPER_LAKE_FLAGS, "AVX512-BF16"), (ZEN2_FLAGS, None), (None, None)],
)
def test_cpuinfo_flags_decide_on_torch_without_the_probes(old_torch_cpuinfo, flags, expected):
    old_torch_cpuinfo(flags)  # None: no procfs (not Linux), so no claim of native bf16
    assert runtime.cpu_bf16_instructions() == expected


def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_float32_without(detect):
    detect(amx=True, avx512_bf16=True)
    assert runtime.preferred_amp_dtype(CPU) == runtime.parse_dtype("auto", CPU) == torch.bfloat16
    detect(amx=False, avx512_bf16=False)
    assert runtime.preferred_amp_dtype(CPU) == runtime.parse_dtype("auto", CPU) == torch.float32
    assert runtime.parse_dtype("bfloat16", CPU) == torch.bfloat16  # asked for by name, bf16 it is


def test_environment_overrides_the_detection_both_ways(detect, monkeypatch):
    detect(amx=True, avx512_bf16=True)
    monkeypatch.setenv(precision.CPU_BF16_ENV, "0")
    assert runtime.preferred_amp_dtype(CPU) == torch.float32
    detect(amx=False, avx512_bf16=False)
    monkeypatch.setenv(precision.CPU_BF16_ENV, "1")
    assert runtime.preferred_amp_dtype(CPU) == torch.bfloat16
    monkeypatch.setenv(precision.CPU_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="VGGT_CPU_BF16='yes'"):
        runtime.preferred_amp_dtype(CPU)


def test_the_printed_choice_names_the_reason(detect):
    detect(amx=False, avx512_bf16=True)
    assert runtime.describe_dtype_choice("auto", CPU) == "bfloat16 (auto: this CPU has AVX512-BF16)"
    detect(amx=False, avx512_bf16=False)
    assert runtime.describe_dtype_choice("auto", CPU) == "float32 (auto: no AMX-BF16 or AVX512-BF16 on this CPU)"
    assert runtime.describe_dtype_choice("float16", CPU) == "float16"


def test_accelerators_keep_bf16_where_supported_and_float16_elsewhere(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    assert runtime.preferred_amp_dtype(cuda) == torch.float16
    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
    assert runtime.preferred_amp_dtype(cuda) == torch.bfloat16

"""Device selection, process settings, precision and the optimizer factory of vggt.runtime."""

from __future__ import annotations

import mmap
import os
import random
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from training.utils import distributed
from vggt import runtime
from vggt.runtime import device as device_module
from vggt.runtime import npu, procfs

CPU = torch.device("cpu")


@pytest.fixture
def deterministic_flag_restored():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


# selection -------------------------------------------------------------------------------------
def test_cpu_only_machine_defaults_to_the_cpu(monkeypatch):
    monkeypatch.delenv(device_module.DEVICE_ENV, raising=False)
    assert runtime.default_device() == CPU
    assert runtime.resolve_device("auto") == CPU and runtime.resolve_device(None) == CPU


def test_vggt_device_environment_variable_overrides_detection(monkeypatch):
    monkeypatch.setenv(device_module.DEVICE_ENV, "cpu")
    assert runtime.default_device() == CPU
    monkeypatch.setenv(device_module.DEVICE_ENV, "cuda:0")
    with pytest.raises(ValueError, match="'cuda:0' is not available on this machine"):
        runtime.default_device()


def test_unusable_device_names_raise_a_clear_error():
    with pytest.raises(ValueError, match="needs torch_npu"):
        runtime.resolve_device("npu:0")
    with pytest.raises(ValueError, match="'gpu0' is not a device name"):
        runtime.resolve_device("gpu0")


def test_an_installed_torch_npu_with_no_card_falls_back_to_the_cpu(torch_npu_emulation, monkeypatch):
    monkeypatch.delenv(device_module.DEVICE_ENV, raising=False)
    assert runtime.default_device() == CPU


def test_distributed_backend_matches_the_device_type():
    assert runtime.distributed_backend(CPU) == "gloo"
    assert runtime.distributed_backend(torch.device("cuda", 0)) == "nccl"
    assert runtime.distributed_backend(SimpleNamespace(type="npu")) == "hccl"


def test_accelerator_count_is_zero_for_the_cpu_and_on_a_cpu_only_machine(monkeypatch):
    monkeypatch.delenv(device_module.DEVICE_ENV, raising=False)
    monkeypatch.setattr(npu, "installed", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.accelerator_count("cpu") == 0
    assert runtime.accelerator_count() == 0 and runtime.accelerator_count("auto") == 0
    assert runtime.accelerator_count("npu") == 0 and runtime.accelerator_count("cuda") == 0
    with pytest.raises(ValueError, match="unsupported device type 'tpu'"):
        runtime.accelerator_count("tpu")


def test_accelerator_count_counts_the_visible_cards_of_the_default_kind(monkeypatch):
    monkeypatch.delenv(device_module.DEVICE_ENV, raising=False)
    monkeypatch.setattr(npu, "installed", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert runtime.accelerator_count("auto") == 4 and runtime.accelerator_count("cuda") == 4
    assert runtime.accelerator_count("cpu") == 0


def _strict_mem_get_info(device):
    """mem_get_info as torch_npu <= 2.9 (and older torch.cuda) has it: an accelerator without an index is rejected."""
    index = device if isinstance(device, int) else device.index
    if index is None:
        raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
    return 7 * 2**30 + index, 64 * 2**30


@pytest.fixture
def two_visible_cuda_cards_current_one(monkeypatch):
    """A CUDA runtime double: cards 0..3 visible, card 1 current, mem_get_info that needs an index."""
    monkeypatch.delenv(device_module.DEVICE_ENV, raising=False)
    monkeypatch.setattr(npu, "installed", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", _strict_mem_get_info)


def test_detected_accelerator_carries_the_current_index_so_memory_queries_accept_it(
    two_visible_cuda_cards_current_one, monkeypatch
):
    assert runtime.default_device() == torch.device("cuda", 1)
    assert runtime.resolve_device("auto") == torch.device("cuda", 1)
    assert runtime.resolve_device("cuda") == torch.device("cuda", 1)
    assert runtime.free_memory_bytes(runtime.default_device()) == 7 * 2**30 + 1
    monkeypatch.setenv(device_module.DEVICE_ENV, "cuda")
    assert runtime.free_memory_bytes(runtime.default_device()) == 7 * 2**30 + 1


def test_an_index_less_accelerator_takes_the_local_rank_and_a_named_index_is_kept(two_visible_cuda_cards_current_one):
    assert runtime.resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert runtime.resolve_device(None, local_rank=2) == torch.device("cuda", 2)
    assert runtime.resolve_device("cuda:0", local_rank=3) == torch.device("cuda", 0)
    assert runtime.resolve_device("cpu", local_rank=3) == CPU


def test_accelerator_count_of_an_installed_torch_npu_without_a_card_is_zero(torch_npu_emulation):
    assert runtime.accelerator_count("npu") == 0


def test_cpu_has_no_allocator_statistics_but_a_name():
    assert runtime.peak_memory_bytes(CPU) is None and runtime.memory_allocated_bytes(CPU) is None
    runtime.reset_peak_memory(CPU)
    runtime.synchronize(CPU)
    assert runtime.device_name(CPU)


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="no Linux procfs")
def test_resident_memory_agrees_with_statm_and_grows_with_a_touched_buffer():
    page = os.sysconf("SC_PAGE_SIZE")
    statm_resident = int(Path("/proc/self/statm").read_text().split()[1]) * page  # an independent reading
    rss = runtime.resident_memory_bytes()
    assert abs(rss - statm_resident) < 16 * 2**20
    # fresh anonymous pages, every one written (a malloc'd buffer may reuse pages this process already holds)
    with mmap.mmap(-1, 64 * 2**20) as buffer:
        buffer.write(b"\x01" * len(buffer))
        grown = runtime.resident_memory_bytes()
        assert grown - rss > 60 * 2**20
        assert runtime.resident_memory_bytes(peak=True) >= grown


def test_resident_memory_is_none_without_procfs(monkeypatch, tmp_path):
    monkeypatch.setattr(procfs, "PROC_STATUS", tmp_path / "missing")
    assert runtime.resident_memory_bytes() is None and runtime.resident_memory_bytes(peak=True) is None


# process settings ------------------------------------------------------------------------------
def test_configure_process_switches_deterministic_algorithms(deterministic_flag_restored):
    runtime.configure_process(CPU, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    runtime.configure_process(CPU, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_npu_settings_use_binary_kernels_nd_formats_and_the_chosen_precision(
    torch_npu_emulation, deterministic_flag_restored
):
    shim = torch_npu_emulation.npu
    shim.set_compile_mode(jit_compile=True)
    shim.config.allow_internal_format = True
    npu.configure(deterministic=True, allow_hf32=False)
    assert shim.is_jit_compile_false() and shim.config.allow_internal_format is False
    assert shim.matmul.allow_hf32 is False and shim.conv.allow_hf32 is False
    assert shim.get_deterministic_level() == 1
    npu.configure(deterministic=False, allow_hf32=True)
    assert shim.matmul.allow_hf32 is True and shim.conv.allow_hf32 is True


@pytest.fixture
def torch_npu_2_14_deterministic_level(torch_npu_emulation, monkeypatch, deterministic_flag_restored):
    """set_deterministic_level as torch_npu 2.14 has it: it sets torch's flag itself (warning when the two disagree)
    and forbids use_deterministic_algorithms afterwards; the double records every call after it."""
    calls_after_level: list[bool] = []
    original = torch.use_deterministic_algorithms
    state = {"level_set": False}

    def use_deterministic_algorithms(mode, **kwargs):
        if state["level_set"]:
            calls_after_level.append(mode)
        original(mode, **kwargs)

    def set_deterministic_level(level):
        if (level >= 1) != torch.are_deterministic_algorithms_enabled():
            warnings.warn("set_deterministic_level conflicts with torch.use_deterministic_algorithms", stacklevel=2)
            original(level >= 1)
        state["level_set"] = True

    monkeypatch.setattr(torch, "use_deterministic_algorithms", use_deterministic_algorithms)
    monkeypatch.setattr(torch_npu_emulation.npu, "set_deterministic_level", set_deterministic_level)
    return calls_after_level


def test_deterministic_npu_process_sets_torchs_flag_before_the_cann_level_and_never_after(
    torch_npu_2_14_deterministic_level,
):
    torch.use_deterministic_algorithms(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no conflict warning
        runtime.configure_process(SimpleNamespace(type="npu"), deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch_npu_2_14_deterministic_level == []


def test_hccl_determinism_is_in_the_environment_before_the_process_group_initialises(torch_npu_emulation, monkeypatch):
    monkeypatch.delenv("HCCL_DETERMINISTIC", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    card = SimpleNamespace(type="npu", index=0)
    seen: list[str | None] = []
    monkeypatch.setattr(distributed.runtime, "resolve_device", lambda name, local_rank=None: card)
    monkeypatch.setattr(torch_npu_emulation.npu, "set_device", lambda device: None, raising=False)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda **kwargs: seen.append(os.environ.get("HCCL_DETERMINISTIC"))
    )
    distributed.setup("npu", deterministic=True)
    assert seen == ["true"]


def test_seed_everything_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    runtime.seed_everything(123)
    first = draw()
    runtime.seed_everything(123)
    assert draw() == first


# precision --------------------------------------------------------------------------------------
def test_autocast_runs_matmuls_in_the_requested_dtype_and_can_be_disabled_inside():
    a = torch.randn(4, 4)
    with runtime.autocast(CPU, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with runtime.autocast_disabled(CPU):
            assert (a @ a).dtype == torch.float32
    with runtime.autocast(CPU, torch.float32):
        assert (a @ a).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, None])
def test_autocast_computes_in_says_whether_a_cpu_matmul_under_it_comes_out_in_that_dtype(dtype):
    a = torch.randn(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.1 warns that CPU autocast takes bf16 only, and turns itself off
        with runtime.autocast(CPU, dtype):
            computed = (a @ a).dtype
    expected = dtype not in (None, torch.float32) and computed == dtype
    assert runtime.autocast_computes_in(CPU, dtype) == expected


def test_parse_dtype_names_and_auto(monkeypatch):
    monkeypatch.setenv("VGGT_CPU_BF16", "1")
    assert runtime.parse_dtype("auto", CPU) == torch.bfloat16 == runtime.preferred_amp_dtype(CPU)
    assert runtime.parse_dtype(None, CPU) == torch.float32
    assert runtime.parse_dtype("float16", CPU) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        runtime.parse_dtype("fp8", CPU)


def test_grad_scaler_is_enabled_for_float16_only():
    cpu_scaling = hasattr(torch.amp, "GradScaler")  # torch >= 2.3 scales on the CPU too
    assert runtime.grad_scaler(CPU, torch.float16).is_enabled() is cpu_scaling
    assert not runtime.grad_scaler(CPU, torch.bfloat16).is_enabled()


# optimizer ---------------------------------------------------------------------------------------
def adamw_kwargs() -> dict:
    return {"lr": 1e-3, "weight_decay": 0.05}


def test_adamw_on_the_cpu_is_torch_adamw():
    optimizer = runtime.adamw([torch.nn.Parameter(torch.zeros(2))], CPU, **adamw_kwargs())
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["weight_decay"] == 0.05


def test_adamw_on_cuda_is_the_fused_kernel(monkeypatch):
    built = {}
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kwargs: built.update(kwargs))  # no CUDA tensors here
    runtime.adamw([torch.nn.Parameter(torch.zeros(2))], SimpleNamespace(type="cuda"), **adamw_kwargs())
    assert built["fused"] is True and built["lr"] == 1e-3


def test_adamw_on_npu_is_npu_fused_adamw_only_where_its_constraints_hold(torch_npu_emulation):
    npu_device = SimpleNamespace(type="npu")
    fp32 = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    fused = runtime.adamw(fp32, npu_device, zero_grad_set_to_none=False, **adamw_kwargs())
    assert isinstance(fused, torch_npu_emulation.optim.NpuFusedAdamW)

    bf16 = [torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))]
    for params, set_to_none in ((bf16, False), (fp32, True)):
        optimizer = runtime.adamw(params, npu_device, zero_grad_set_to_none=set_to_none, **adamw_kwargs())
        assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["foreach"] is True


def test_deterministic_npu_process_without_cann_levels_sets_torchs_flag(
    torch_npu_emulation, monkeypatch, deterministic_flag_restored
):
    monkeypatch.delattr(torch_npu_emulation.npu, "set_deterministic_level")  # torch_npu 2.1 has none
    runtime.configure_process(SimpleNamespace(type="npu"), deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    runtime.configure_process(SimpleNamespace(type="npu"), deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()

"""runtime.adamw's choice of AdamW: NpuFusedAdamW only where its constraints hold, VGGT_OPTIMIZER overriding it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.helpers import TORCH_HAS_CPU_FUSED_ADAMW
from vggt import runtime
from vggt.runtime import optim

NPU = SimpleNamespace(type="npu")
CPU = torch.device("cpu")
KWARGS = {"lr": 1e-3, "weight_decay": 0.05}


@pytest.fixture(autouse=True)
def no_optimizer_override(monkeypatch):
    monkeypatch.delenv(optim.OPTIMIZER_ENV, raising=False)


def params(*dtypes: torch.dtype) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3, dtype=dtype)) for dtype in dtypes or (torch.float32,)]


def test_npu_gradients_that_are_ddp_bucket_views_get_foreach_adamw(torch_npu_emulation):
    fused = runtime.adamw(params(), NPU, zero_grad_set_to_none=False, **KWARGS)
    assert isinstance(fused, torch_npu_emulation.optim.NpuFusedAdamW)
    ddp = runtime.adamw(params(), NPU, zero_grad_set_to_none=False, gradients_are_bucket_views=True, **KWARGS)
    assert type(ddp) is torch.optim.AdamW and ddp.defaults["foreach"] is True


def test_npu_bf16_parameters_get_foreach_adamw(torch_npu_emulation):
    optimizer = runtime.adamw(params(torch.float32, torch.bfloat16), NPU, zero_grad_set_to_none=False, **KWARGS)
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["foreach"] is True


def test_vggt_optimizer_selects_the_fused_npu_optimizer_on_cpu_tensors(torch_npu_emulation, monkeypatch):
    monkeypatch.setenv(optim.OPTIMIZER_ENV, "npu_fused")
    weights = params()
    optimizer = runtime.adamw(weights, CPU, zero_grad_set_to_none=False, **KWARGS)
    assert isinstance(optimizer, torch_npu_emulation.optim.NpuFusedAdamW)
    weights[0].grad = torch.ones(3)
    optimizer.step()
    assert (weights[0].detach() < 1).all()
    monkeypatch.setenv(optim.OPTIMIZER_ENV, "foreach")
    assert runtime.adamw(params(), NPU, zero_grad_set_to_none=False, **KWARGS).defaults["foreach"] is True


def test_the_fused_npu_optimizer_is_refused_where_it_would_break(torch_npu_emulation, monkeypatch):
    monkeypatch.setenv(optim.OPTIMIZER_ENV, "npu_fused")
    with pytest.raises(ValueError, match="DDP gradient bucket views.*VGGT_OPTIMIZER=foreach"):
        runtime.adamw(params(), CPU, zero_grad_set_to_none=False, gradients_are_bucket_views=True, **KWARGS)
    with pytest.raises(ValueError, match="dtype torch.bfloat16"):
        runtime.adamw(params(torch.bfloat16), CPU, zero_grad_set_to_none=False, **KWARGS)
    with pytest.raises(ValueError, match="set to None"):
        runtime.adamw(params(), CPU, zero_grad_set_to_none=True, **KWARGS)
    monkeypatch.setenv(optim.OPTIMIZER_ENV, "sgd")
    with pytest.raises(ValueError, match="VGGT_OPTIMIZER='sgd' is not one of npu_fused, foreach, fused, torch"):
        runtime.adamw(params(), CPU, **KWARGS)


def test_fused_npu_optimizer_refuses_a_parameter_without_gradient_at_its_first_step(torch_npu_emulation):
    used, unused = params(torch.float32, torch.float32)
    optimizer = runtime.adamw([used, unused], NPU, zero_grad_set_to_none=False, **KWARGS)
    used.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"1 trainable parameter\(s\) have no gradient.*optim.frozen"):
        optimizer.step()
    unused.grad = torch.ones(3)
    optimizer.step()
    unused.grad = None  # after the first step the check is gone (no per-step host work)
    optimizer.step()


def test_cpu_gets_fused_adamw_where_torch_has_it_with_the_same_update():
    chosen = runtime.adamw(params(), CPU, **KWARGS)
    assert type(chosen) is torch.optim.AdamW and bool(chosen.defaults.get("fused")) is TORCH_HAS_CPU_FUSED_ADAMW
    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    updated = []
    for fused in (bool(chosen.defaults.get("fused")), None):  # the chosen one, then torch's for-loop AdamW
        weights = [torch.nn.Parameter(w.clone()) for w in start]
        optimizer = torch.optim.AdamW(weights, fused=fused, **KWARGS)
        for step in range(3):
            for w in weights:
                w.grad = torch.sin(w.detach() * (step + 1))
            optimizer.step()
        updated.append([w.detach() for w in weights])
    for chosen_weight, loop_weight in zip(*updated):
        torch.testing.assert_close(chosen_weight, loop_weight, rtol=1e-6, atol=1e-7)

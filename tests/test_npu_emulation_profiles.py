"""The behaviours the emulation takes from the real torch_npu versions: signatures, names, cards, determinism,
and the fused optimizer's flattening by storage (tests/test_npu_conformance.py ties each to the wheels)."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.npu_emulation.install import install_torch_npu_emulation
from tests.npu_emulation.torch_npu import npu as emulated_npu

GIB = 1024**3


def test_the_2_1_profile_rejects_arguments_only_2_14_has(monkeypatch):
    emulation = install_torch_npu_emulation(monkeypatch, profile="2.1.0.post17")
    x, r = torch.ones(1, 1, 2, 4), torch.full((1, 1, 2, 4), 0.5)
    with pytest.raises(TypeError, match="rotate"):
        emulation.npu_rotary_mul(x, r, r, "half", rotate=None)
    q = torch.ones(1, 1, 2, 4)
    with pytest.raises(TypeError, match="sink"):
        emulation.npu_fusion_attention(q, q, q, 1, "BNSD", sink=None)


@pytest.mark.parametrize("version", ["2.1.0.post17", "2.14.0"])
def test_npu_gelu_takes_approximate_by_keyword_only(monkeypatch, version):
    emulation = install_torch_npu_emulation(monkeypatch, profile=version)
    x = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(emulation.npu_gelu(x, approximate="none"), torch.nn.functional.gelu(x))
    with pytest.raises(TypeError, match="positional"):
        emulation.npu_gelu(x, "none")


def test_an_argument_the_emulation_does_not_model_must_keep_its_default(monkeypatch):
    emulation = install_torch_npu_emulation(monkeypatch, profile="2.14.0")
    q = torch.randn(1, 1, 3, 4)
    emulation.npu_fusion_attention(q, q, q, 1, "BNSD", sink=None, seed=0)  # the defaults pass
    with pytest.raises(NotImplementedError, match="sink"):
        emulation.npu_fusion_attention(q, q, q, 1, "BNSD", sink=torch.zeros(1))


def test_no_card_is_visible_unless_the_install_asks_for_some(monkeypatch):
    npu = install_torch_npu_emulation(monkeypatch).npu
    assert not npu.is_available() and npu.device_count() == 0
    with pytest.raises(RuntimeError, match="not visible"):
        npu.current_device()
    with pytest.raises(AssertionError, match="invalid device id"):
        npu.mem_get_info(0)


@pytest.mark.parametrize("version", ["2.1.0.post17", "2.14.0"])
def test_a_visible_card_reports_all_its_memory_free(monkeypatch, version):
    npu = install_torch_npu_emulation(monkeypatch, profile=version, visible_cards=2).npu
    assert npu.is_available() and npu.device_count() == 2 and npu.current_device() == 0
    assert npu.mem_get_info() == npu.mem_get_info(0) == npu.mem_get_info(1) == (64 * GIB, 64 * GIB)
    npu.set_device(1)
    assert npu.current_device() == 1
    with pytest.raises(AssertionError, match="invalid device id 2"):
        npu.mem_get_info(2)
    with pytest.raises(ValueError, match="npu device"):
        npu.mem_get_info(torch.device("cpu"))


def test_set_deterministic_level_does_not_exist_before_cann_8_5(monkeypatch):
    npu = install_torch_npu_emulation(monkeypatch, profile="2.1.0.post17").npu
    assert not hasattr(npu, "set_deterministic_level")
    with pytest.MonkeyPatch.context() as inner:
        assert hasattr(install_torch_npu_emulation(inner, profile="2.14.0").npu, "set_deterministic_level")
    assert not hasattr(emulated_npu, "set_deterministic_level")  # the outer install's profile is back


def test_set_deterministic_level_switches_torch_determinism_and_warns_until_the_test_ends():
    before = torch.are_deterministic_algorithms_enabled()
    with pytest.MonkeyPatch.context() as monkeypatch:
        npu = install_torch_npu_emulation(monkeypatch, profile="2.14.0").npu
        torch.use_deterministic_algorithms(False)
        with pytest.warns(UserWarning, match="switched torch.use_deterministic_algorithms to True"):
            npu.set_deterministic_level(1)
        assert torch.are_deterministic_algorithms_enabled()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            npu.set_deterministic_level(1)  # already matching: only the "do not call torch's switch" warning
        assert [str(w.message) for w in caught] == [
            "set_deterministic_level was called: calling torch.use_deterministic_algorithms after it is unsupported"
        ]
    assert torch.are_deterministic_algorithms_enabled() is before


def quadratic(params: list[torch.Tensor]) -> torch.Tensor:
    return sum((p**2).sum() for p in params)


def test_fused_adamw_sizes_the_flat_grad_buffer_by_the_grads_storages(monkeypatch):
    optim = install_torch_npu_emulation(monkeypatch).optim
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
    shared = torch.zeros(10)
    params[0].grad, params[1].grad = shared[:3], shared[3:5]  # views of one 10-element storage
    optimizer = optim.NpuFusedAdamW(params)
    optimizer.zero_grad()
    assert [None if g is None else g.numel() for g in optimizer.get_combined_grads()] == [20, None]
    assert optimizer.get_combined_params()[0].numel() == 5


@pytest.mark.parametrize(("version", "accepted"), [("2.1.0.post17", True), ("2.14.0", False)])
def test_only_2_14_refuses_to_flatten_a_non_contiguous_grad(monkeypatch, version, accepted):
    optim = install_torch_npu_emulation(monkeypatch, profile=version).optim
    param = torch.nn.Parameter(torch.ones(2, 3))
    param.grad = torch.ones(3, 2).t()
    optimizer = optim.NpuFusedAdamW([param])
    if accepted:
        optimizer.step()
    else:
        with pytest.raises(RuntimeError, match="contiguous"):
            optimizer.step()


def test_fused_adamw_raises_for_a_param_that_gets_its_first_grad_after_the_first_step(monkeypatch):
    """As the real optimizer: the flat buffers hold the params that had grads then; a later one has no state."""
    optim = install_torch_npu_emulation(monkeypatch).optim
    first, late = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = optim.NpuFusedAdamW([first, late], lr=0.1, weight_decay=0.0)
    quadratic([first]).backward()
    optimizer.step()
    assert torch.equal(late.detach(), torch.ones(2)) and not torch.equal(first.detach(), torch.ones(2))
    quadratic([first, late]).backward()
    with pytest.raises(KeyError, match="step"):
        optimizer.step()


def test_fused_adamw_steps_on_its_flat_grads_not_on_a_grad_tensor_replaced_later(monkeypatch):
    optim = install_torch_npu_emulation(monkeypatch).optim
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = optim.NpuFusedAdamW([param], lr=0.1, weight_decay=0.0)
    param.grad = torch.ones(2)
    optimizer.step()
    stepped_once = param.detach().clone()
    param.grad = torch.full((2,), -100.0)  # a new tensor, outside the flat buffer
    optimizer.step()  # the flat grad still holds +1: the param keeps moving down, not up
    assert (param.detach() < stepped_once).all()

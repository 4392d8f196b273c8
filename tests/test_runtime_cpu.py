"""CPU inference (vggt.runtime.cpu): the few-row weight layout keeps values and outputs; linear + GELU fused;
float32 linears in oneDNN where its GEMMs are the faster."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vggt.layers.block import Block
from vggt.layers.linear import Linear
from vggt.models.vggt import VGGT
from vggt.runtime import cpu, kernels
from vggt.runtime.cpu import lay_out_linears_for_few_rows


def test_float32_linear_weights_keep_values_and_shape_in_transposed_storage() -> None:
    module = nn.Sequential(nn.Linear(6, 4), nn.Conv2d(2, 3, 1), nn.Linear(4, 5).to(torch.bfloat16))
    before = [p.clone() for p in module.parameters()]
    assert lay_out_linears_for_few_rows(module) == 1  # the float32 linear only: not the conv, not the bf16 linear
    weight = module[0].weight
    assert weight.shape == (4, 6) and weight.stride() == (1, 4) and weight.t().is_contiguous()
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), before))
    assert module[1].weight.is_contiguous() and module[2].weight.is_contiguous()
    assert lay_out_linears_for_few_rows(module) == 0  # already laid out: left alone
    assert module[0].weight.stride() == (1, 4)


def test_laid_out_camera_head_gives_the_default_layouts_outputs(tiny_model: VGGT) -> None:
    laid_out = copy.deepcopy(tiny_model)
    laid_out.lay_out_for_cpu_inference()
    camera_linears = [m for m in laid_out.camera_head.modules() if isinstance(m, nn.Linear)]
    assert camera_linears and all(m.weight.t().is_contiguous() for m in camera_linears)
    assert all(m.weight.is_contiguous() for m in laid_out.aggregator.modules() if isinstance(m, nn.Linear))
    images = torch.rand(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = tiny_model(images), laid_out(images)
    for name in ("pose_enc", "depth", "world_points"):
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)  # float32 rounding apart


def test_heads_under_autocast_keep_the_default_layout(tiny_model: VGGT) -> None:
    model = copy.deepcopy(tiny_model)
    model.heads_under_autocast = True  # their bf16 casts would keep the layout, which slows bf16 GEMMs down
    model.lay_out_for_cpu_inference()
    assert all(m.weight.is_contiguous() for m in model.camera_head.modules() if isinstance(m, nn.Linear))


def test_a_laid_out_model_saves_and_loads(tiny_model: VGGT, tmp_path) -> None:
    model = copy.deepcopy(tiny_model)
    model.lay_out_for_cpu_inference()
    model.save_pretrained(tmp_path)  # safetensors takes contiguous tensors only
    loaded = VGGT.from_pretrained(tmp_path)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def bf16_linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(64, 256).to(torch.bfloat16)


@pytest.mark.skipif(not cpu.ONEDNN_BF16, reason="this torch or CPU has no oneDNN bf16 linear with a GELU")
def test_fused_linear_gelu_is_gelu_of_the_linear_within_a_bf16_ulp() -> None:
    linear, x = bf16_linear(), torch.randn(3, 100, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu.fuses_linear_gelu(x, linear)
        fused = kernels.linear_gelu(x, linear)
        plain = F.gelu(linear(x))
    assert fused.dtype == plain.dtype == torch.bfloat16 and fused.shape == (3, 100, 256)
    # float32 from the same bf16 operands: the fused GELU reads the unrounded accumulator, the plain one its rounding
    exact = F.gelu(F.linear(x.bfloat16().float(), linear.weight.float(), linear.bias.float()))
    ulp = exact.abs().clamp(min=2**-126) * 2**-7
    assert ((fused.float() - exact).abs() <= ulp).all()
    assert (fused.float() - exact).abs().mean() < (plain.float() - exact).abs().mean()  # one rounding fewer


def test_linear_gelu_fuses_only_inference_on_a_cpu_in_the_weights_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    monkeypatch.setattr(cpu, "LINEAR_POINTWISE", lambda *args: calls.append(args))
    monkeypatch.setattr(cpu, "ONEDNN_BF16", True)  # the rule, not this CPU's oneDNN, is under test
    linear, x = bf16_linear(), torch.randn(cpu.ONEDNN_MIN_ROWS, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernels.linear_gelu(x, linear)  # autograd on: training
        with torch.no_grad():
            kernels.linear_gelu(x, nn.Linear(64, 8))  # float32 weights under a bf16 autocast: autocast's casts
            kernels.linear_gelu(x.to(torch.float16), nn.Linear(64, 8).half())
            kernels.linear_gelu(x[:-1], linear)  # fewer rows: the GEMM streams the weight, nothing to save
            monkeypatch.setenv(kernels.KERNELS_ENV, "torch")
            kernels.linear_gelu(x, linear)
            monkeypatch.delenv(kernels.KERNELS_ENV)
            assert not calls
            kernels.linear_gelu(x, linear)
    assert len(calls) == 1  # bf16 inference on a CPU, nothing forced
    with torch.no_grad():
        kernels.linear_gelu(x, linear.float())  # float32 weights, no autocast: measured no faster fused
    assert len(calls) == 1


def test_to_inference_device_lays_out_the_camera_head_on_a_cpu_with_amx(
    tiny_model: VGGT, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu, "AMX_BF16", False)  # measured slower without (AMD EPYC)
    model = copy.deepcopy(tiny_model).to_inference_device(torch.device("cpu"))  # what predict, eval and app call
    assert all(m.weight.is_contiguous() for m in model.camera_head.modules() if isinstance(m, nn.Linear))
    monkeypatch.setattr(cpu, "AMX_BF16", True)
    model = copy.deepcopy(tiny_model).to_inference_device(torch.device("cpu"))
    assert all(m.weight.t().is_contiguous() for m in model.camera_head.modules() if isinstance(m, nn.Linear))


@pytest.fixture
def cpuinfo_vendor(monkeypatch: pytest.MonkeyPatch, fake_cpuinfo):
    """float32_gemm_library on a CPU of the given vendor_id (None: no procfs), nothing forced."""
    monkeypatch.delenv(cpu.FLOAT32_GEMM_ENV, raising=False)
    return lambda vendor: fake_cpuinfo(None if vendor is None else f"vendor_id\t: {vendor}")


@pytest.mark.parametrize(
    ("vendor", "has_onednn", "expected"),
    [
        ("AuthenticAMD", True, "onednn"),
        ("GenuineIntel", True, "mkl"),
        (None, True, "mkl"),
        ("AuthenticAMD", False, "mkl"),
    ],
)
def test_float32_gemms_go_to_onednn_on_amd_cpus_only(monkeypatch, cpuinfo_vendor, vendor, has_onednn, expected):
    cpuinfo_vendor(vendor)
    monkeypatch.setattr(cpu, "LINEAR_POINTWISE", F.linear if has_onednn else None)  # stands for oneDNN's op
    assert cpu.float32_gemm_library() == expected


def test_the_environment_overrides_the_float32_gemm_library(monkeypatch, cpuinfo_vendor):
    cpuinfo_vendor("AuthenticAMD")
    monkeypatch.setenv(cpu.FLOAT32_GEMM_ENV, "mkl")
    assert cpu.float32_gemm_library() == "mkl"
    cpuinfo_vendor("GenuineIntel")
    monkeypatch.setenv(cpu.FLOAT32_GEMM_ENV, "onednn")
    assert cpu.float32_gemm_library() == "onednn"
    monkeypatch.setenv(cpu.FLOAT32_GEMM_ENV, "openblas")
    with pytest.raises(ValueError, match="VGGT_CPU_FLOAT32_GEMM='openblas'.*onednn, mkl"):
        cpu.float32_gemm_library()


@pytest.mark.skipif(cpu.LINEAR_POINTWISE is None, reason="this torch has no oneDNN linear")
def test_onednn_float32_linear_is_the_linear_within_float32_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "ONEDNN_FLOAT32", True)
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 64), torch.randn(96)
    tokens = torch.randn(2, 3 * cpu.ONEDNN_MIN_ROWS, 64)
    x = tokens[:, cpu.ONEDNN_MIN_ROWS : 2 * cpu.ONEDNN_MIN_ROWS]  # a chunk of frames: not contiguous
    for w, b in ((weight, bias), (weight[32:], bias[32:]), (weight, None)):  # rows of a fused qkv weight, no bias
        with torch.no_grad():
            assert cpu.onednn_computes_linear(x, w)
            out = kernels.linear(x, w, b)
        exact = F.linear(x.double(), w.double(), None if b is None else b.double())
        assert out.dtype == torch.float32 and out.shape == exact.shape
        torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)


def test_onednn_float32_linear_runs_only_float32_inference_outside_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(cpu, "LINEAR_POINTWISE", lambda *args: calls.append(args))
    monkeypatch.setattr(cpu, "ONEDNN_FLOAT32", True)  # the rule, not this CPU's vendor, is under test
    layer, x = Linear(64, 8), torch.randn(cpu.ONEDNN_MIN_ROWS, 64)
    layer(x)  # autograd on: training
    with torch.no_grad():
        layer(x[:-1])  # fewer rows: the GEMM streams the weight
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(x)  # autocast casts to bf16
        layer.to(torch.bfloat16)(x.to(torch.bfloat16))
        layer.float()
        monkeypatch.setenv(kernels.KERNELS_ENV, "torch")
        layer(x)
        monkeypatch.delenv(kernels.KERNELS_ENV)
        lay_out_linears_for_few_rows(laid_out := Linear(64, 8))
        laid_out(x)  # a transposed weight: not oneDNN's row-major operand
        assert not calls
        layer(x)
    assert len(calls) == 1  # float32 inference on a CPU, nothing forced
    monkeypatch.setattr(cpu, "ONEDNN_FLOAT32", False)
    with torch.no_grad():
        layer(x)
    assert len(calls) == 1


@pytest.mark.skipif(cpu.LINEAR_POINTWISE is None, reason="this torch has no oneDNN linear")
def test_the_model_gives_the_same_outputs_with_float32_gemms_in_onednn(monkeypatch, tiny_model: VGGT) -> None:
    images = torch.rand(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(cpu, "ONEDNN_MIN_ROWS", 1)  # the tiny model's GEMMs have few rows: every one goes to oneDNN
    calls = []
    onednn = cpu.LINEAR_POINTWISE
    monkeypatch.setattr(cpu, "LINEAR_POINTWISE", lambda *args: calls.append(1) or onednn(*args))
    results = {}
    for library in (False, True):
        monkeypatch.setattr(cpu, "ONEDNN_FLOAT32", library)
        with torch.no_grad():
            results[library] = tiny_model(images)
    assert calls  # the aggregator, DINOv2 and camera trunk's linears went to oneDNN
    for name in ("pose_enc", "depth", "world_points"):
        torch.testing.assert_close(results[True][name], results[False][name], rtol=1e-4, atol=1e-5)


def _compiled_graph_calls(module: nn.Module, x: torch.Tensor) -> tuple[list, torch.Tensor]:
    """(what torch.compile's one graph of module(x) calls, its output): dynamo traces, nothing is lowered."""
    calls: list = []

    def recording_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> Callable:
        calls.extend(node.target for node in graph_module.graph.nodes if node.op == "call_function")
        return graph_module.forward

    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(module, backend=recording_backend, fullgraph=True)(x)
    return calls, out


@pytest.mark.skipif(cpu.LINEAR_POINTWISE is None, reason="this torch has no oneDNN linear")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_inference_leaves_the_linears_to_the_compiler(monkeypatch, dtype: torch.dtype) -> None:
    # inductor cannot lower oneDNN's linear on unpacked weights (torch 2.13: LoweringException), F.linear it can
    monkeypatch.setattr(cpu, "ONEDNN_FLOAT32", True)
    monkeypatch.setattr(cpu, "ONEDNN_BF16", True)  # the rule, not this CPU, is under test
    block = Block(64, 4).eval().to(dtype)
    x = torch.randn(2, cpu.ONEDNN_MIN_ROWS, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():  # eager: the linears (in bf16 fc1 with its GELU) are oneDNN's
        fc1_in_onednn = cpu.fuses_linear_gelu(x, block.mlp.fc1) or cpu.onednn_computes_linear(x, block.mlp.fc1.weight)
    assert fc1_in_onednn
    calls, out = _compiled_graph_calls(block, x)
    assert cpu.LINEAR_POINTWISE not in calls
    assert calls.count(torch._C._nn.linear) == 4  # qkv, proj, fc1, fc2
    monkeypatch.setattr(cpu, "ONEDNN_FLOAT32", False)
    monkeypatch.setattr(cpu, "ONEDNN_BF16", False)
    with torch.no_grad():
        torch.testing.assert_close(out, block(x), rtol=0, atol=0)  # the plain ops, as eager without oneDNN

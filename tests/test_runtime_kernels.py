"""Kernel dispatch and the three kernel backends against independent formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.runtime import kernels, npu


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v in float64."""
    q, k, v = q.double(), k.double(), v.double()
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), v)


def explicit_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x_j, x_{j + D/2}) by angles_j as complex numbers, in float64."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(torch.ones_like(angles), angles)
    return torch.cat((z.real, z.imag), dim=-1)


def test_backend_follows_the_device_unless_forced(monkeypatch):
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    assert kernels.backend_for(torch.zeros(1)) == "torch"
    monkeypatch.setenv(kernels.KERNELS_ENV, "npu")
    assert kernels.backend_for(torch.zeros(1)) == "npu"
    monkeypatch.setenv(kernels.KERNELS_ENV, "tpu")
    with pytest.raises(ValueError, match="VGGT_KERNELS='tpu' is not one of torch, cuda, npu"):
        kernels.backend_for(torch.zeros(1))


def test_attention_matches_the_explicit_formula(kernel_backend):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 37, 64, generator=g) for _ in range(3))
    out = kernels.attention(q, k, v)
    torch.testing.assert_close(out.double(), explicit_attention(q, k, v), rtol=1e-5, atol=1e-5)


def test_rotary_mul_rotates_half_pairs_by_the_angles(kernel_backend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 11, 32, generator=g)
    angles = torch.rand(11, 16, generator=g) * 6
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)[None, None]
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)[None, None]
    out = kernels.rotary_mul(x, cos, sin)
    torch.testing.assert_close(out.double(), explicit_rotary(x, angles.double()), rtol=1e-5, atol=1e-5)


def test_gelu_is_the_exact_erf_form(kernel_backend):
    x = torch.linspace(-6, 6, 1001)
    expected = 0.5 * x.double() * (1 + torch.erf(x.double() / math.sqrt(2)))
    torch.testing.assert_close(kernels.gelu(x).double(), expected, rtol=1e-6, atol=1e-6)


def test_npu_attention_runs_mixed_autocast_dtypes_in_the_narrowest_one(npu_kernels):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 2, 16, 64, generator=g) for _ in range(2))  # float32 out of the QK LayerNorm
    v = torch.randn(1, 2, 16, 64, generator=g).bfloat16()  # bf16 out of the qkv matmul
    out = kernels.attention(q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), explicit_attention(q, k, v.float()), rtol=2e-2, atol=2e-2)


def test_npu_rotary_mul_falls_back_outside_the_fused_ops_batch_range(npu_kernels, monkeypatch):
    calls = []
    monkeypatch.setattr(npu_kernels, "npu_rotary_mul", lambda *args: calls.append(args))
    x = torch.randn(npu.ROTARY_MAX_BATCH_OR_HEADS, 1, 3, 8)
    angles = torch.rand(3, 4)
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)[None, None]
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)[None, None]
    out = kernels.rotary_mul(x, cos, sin)
    assert calls == []
    torch.testing.assert_close(out.double(), explicit_rotary(x, angles.double()), rtol=1e-5, atol=1e-5)


def test_npu_kernels_give_the_torch_gradients(monkeypatch, torch_npu_emulation):
    """Forward + backward through every head, NPU kernels vs PyTorch kernels.

    Tolerance: relative L2 difference 1e-5 over all gradients together and 1e-3 per tensor. Measured:
    1e-6 overall on torch 2.1 and 2.13; per tensor 2e-6 (2.13) and 2e-4 (2.1, in the first DPT layer,
    whose gradient sums many cancelling terms). One tracker iteration: over several, the iterative
    sampling amplifies float32 rounding into percent-level differences whatever the kernels.
    """
    torch.manual_seed(0)
    model = VGGT(config=dataclasses.replace(VGGTConfig.tiny(), tracker_iterations=1)).train()
    images = torch.rand(1, 2, 3, 140, 140, generator=torch.Generator().manual_seed(1))
    query_points = torch.tensor([[[30.0, 40.0], [90.5, 100.0]]])

    def gradients(backend: str) -> dict[str, torch.Tensor]:
        monkeypatch.setenv(kernels.KERNELS_ENV, backend)
        model.zero_grad()
        out = model(images, query_points=query_points)
        loss = sum(out[k].mean() for k in ("pose_enc", "depth", "world_points", "vis", "conf")) + out["track"].mean()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    reference, fused = gradients("torch"), gradients("npu")
    assert reference.keys() == fused.keys() and any(k.startswith("track_head.tracker") for k in reference)

    def relative(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    assert (
        relative(torch.cat([g.flatten() for g in fused.values()]), torch.cat([g.flatten() for g in reference.values()]))
        < 1e-5
    )
    for name, grad in reference.items():
        assert relative(fused[name], grad) < 1e-3, name

"""On a real NPU or GPU: the device's own kernels reproduce the reference. Skipped on a CPU-only machine.

Run on an Ascend card (after `source set_env.sh`) or a GPU with `python -m pytest tests/test_accelerator.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import FIXTURES, assert_tracks_within_reference_tolerance, assert_within_reference_tolerance
from vggt import runtime
from vggt.config import VGGTConfig
from vggt.runtime import kernels, reference
from vggt.synthetic_weights import synthetic_model

DEVICE = runtime.default_device()
pytestmark = pytest.mark.skipif(DEVICE.type == "cpu", reason="no NPU or GPU on this machine")


@pytest.fixture(scope="module", autouse=True)
def exact_float32():
    """Reference numbers need true float32 matmuls and convs (no TF32 / HF32)."""
    runtime.configure_process(DEVICE, allow_tf32=False)
    yield
    runtime.configure_process(DEVICE, allow_tf32=True)


def test_device_kernels_match_the_torch_reference_on_the_device():
    assert kernels.backend_for(torch.zeros(1, device=DEVICE)) == DEVICE.type
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 16, 300, 64, generator=g).to(DEVICE) for _ in range(3))
    torch.testing.assert_close(kernels.attention(q, k, v), reference.attention(q, k, v), rtol=1e-3, atol=1e-3)
    cos, sin = torch.rand(1, 1, 300, 32, generator=g).to(DEVICE), torch.rand(1, 1, 300, 32, generator=g).to(DEVICE)
    x = q[..., :32]
    torch.testing.assert_close(kernels.rotary_mul(x, cos, sin), reference.rotary_mul(x, cos, sin))
    torch.testing.assert_close(kernels.gelu(q), reference.gelu(q), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "config, fixture",
    [
        (VGGTConfig.small_reference(), "parity_small.npz"),
        pytest.param(VGGTConfig(), "parity_1b.npz", marks=pytest.mark.slow),
    ],
)
def test_model_reproduces_the_reference_on_the_device(config, fixture):
    ref = np.load(FIXTURES / fixture)
    model = synthetic_model(config).to(DEVICE)
    with torch.no_grad():
        out = model(
            torch.from_numpy(ref["images"]).to(DEVICE), query_points=torch.from_numpy(ref["query_points"]).to(DEVICE)
        )
    out = {k: v.cpu() for k, v in out.items() if isinstance(v, torch.Tensor)}
    for name in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert_within_reference_tolerance(name, out[name], ref[name])
    assert_tracks_within_reference_tolerance(out, ref)


def test_bf16_autocast_keeps_the_dense_heads_in_float32_on_the_device():
    model = synthetic_model(VGGTConfig.small_reference()).to(DEVICE)
    images = torch.rand(1, 2, 3, 140, 140, device=DEVICE)
    dtype = runtime.preferred_amp_dtype(DEVICE)
    with torch.no_grad(), runtime.autocast(DEVICE, dtype):
        out = model(images, query_points=torch.tensor([[[50.0, 60.0]]], device=DEVICE))
    for key in ("pose_enc", "depth", "world_points"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    assert torch.isfinite(out["track"]).all()

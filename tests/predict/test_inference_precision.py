"""Inference precision: aggregator weights held in the autocast dtype change nothing but the casts."""

from __future__ import annotations

import copy

import pytest
import torch


@pytest.mark.parametrize("chunk", [8, 1])
def test_matmul_weights_held_in_bf16_give_the_same_outputs_under_bf16_autocast(tiny_model, chunk):
    images = torch.rand(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    held = copy.deepcopy(tiny_model)
    held.hold_in_compute_dtype(torch.bfloat16)
    held.aggregator.kept_dtype = None  # the weights alone: the kept layers' rounding is the next test's
    linear_dtypes = {m.weight.dtype for m in held.aggregator.modules() if isinstance(m, torch.nn.Linear)}
    assert linear_dtypes == {torch.bfloat16}
    norm_dtypes = {
        p.dtype for m in held.aggregator.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()
    }
    assert norm_dtypes == {torch.float32}  # autocast computes layer norms in float32: their weights stay
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = tiny_model(images, frames_chunk_size=chunk)
        out = held(images, frames_chunk_size=chunk)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0, msg=key)  # the same casts, done once


def test_kept_layers_in_bf16_feed_float32_heads_and_round_only_slightly(tiny_model):
    images = torch.rand(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    held = copy.deepcopy(tiny_model)
    held.hold_in_compute_dtype(torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        kept, _ = held.aggregator(images, frames_chunk_size=2)
        full, _ = tiny_model.aggregator(images, frames_chunk_size=2)
        expected = tiny_model(images, frames_chunk_size=2)
        out = held(images, frames_chunk_size=2)
    layers = [index for index, tensor in enumerate(kept) if tensor is not None]
    assert layers and all(kept[i].dtype == torch.bfloat16 and full[i].dtype == torch.float32 for i in layers)
    for i in layers:  # the same values, rounded to bf16
        torch.testing.assert_close(kept[i], full[i].to(torch.bfloat16), rtol=0, atol=0)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert out[key].dtype == torch.float32, key  # the heads still compute in float32
        deviation = (out[key] - expected[key]).norm() / expected[key].norm()
        assert 0 < deviation < 1e-2, (key, float(deviation))

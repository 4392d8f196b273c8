"""Inference precision: aggregator weights held in the autocast dtype change nothing but the casts."""

from __future__ import annotations

import copy

import pytest
import torch

from vggt.predict.inference import hold_matmul_weights_in


@pytest.mark.parametrize("chunk", [8, 1])
def test_matmul_weights_held_in_bf16_give_the_same_outputs_under_bf16_autocast(tiny_model, chunk):
    images = torch.rand(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    held = copy.deepcopy(tiny_model)
    hold_matmul_weights_in(held.aggregator, torch.bfloat16)
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

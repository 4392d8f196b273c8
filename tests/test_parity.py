"""Our model reproduces the upstream reference outputs for the same (synthetic) weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import (
    FIXTURES,
    assert_tracks_within_reference_tolerance,
    assert_within_reference_tolerance,
    read_keys_tsv,
)
from vggt.config import VGGTConfig
from vggt.synthetic_weights import synthetic_model, synthetic_tensor

DENSE_OUTPUTS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")


def run_reference_inputs(model, ref, frames_chunk_size=8):
    """Forward on the fixture's inputs, also capturing the aggregator layers the fixture stores."""
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in ref.files if k.startswith("aggregated_tokens_"))
    model.aggregator.keep_layers = tuple(sorted(set(model.aggregator.keep_layers) | set(layers)))
    captured = {}
    hook = model.aggregator.register_forward_hook(lambda module, args, output: captured.update(tokens=output[0]))
    try:
        with torch.no_grad():
            out = model(
                torch.from_numpy(ref["images"]),
                query_points=torch.from_numpy(ref["query_points"]),
                frames_chunk_size=frames_chunk_size,
            )
    finally:
        hook.remove()
    return out, {i: captured["tokens"][i] for i in layers}


def check_against_reference(out, tokens, ref):
    assert int(ref["patch_start_idx"]) == 5
    for name in DENSE_OUTPUTS:
        assert_within_reference_tolerance(name, out[name], ref[name])
    assert_within_reference_tolerance("pose_enc_list", torch.stack(out["pose_enc_list"]), ref["pose_enc_list"])
    for i, layer in tokens.items():
        assert_within_reference_tolerance(f"aggregated_tokens_{i}", layer, ref[f"aggregated_tokens_{i}"])
    assert_tracks_within_reference_tolerance(out, ref)


@pytest.fixture(scope="module")
def small_model():
    return synthetic_model(VGGTConfig.small_reference())


def test_small_model_matches_reference_outputs_with_every_kernel_backend(small_model, kernel_backend):
    ref = np.load(FIXTURES / "parity_small.npz")
    out, tokens = run_reference_inputs(small_model, ref)
    check_against_reference(out, tokens, ref)


def test_small_model_matches_reference_outputs_one_frame_at_a_time(small_model):
    ref = np.load(FIXTURES / "parity_small.npz")
    out, tokens = run_reference_inputs(small_model, ref, frames_chunk_size=1)
    check_against_reference(out, tokens, ref)


@pytest.fixture(scope="module")
def vggt_1b():
    return synthetic_model(VGGTConfig.vggt_1b())


@pytest.mark.slow
def test_synthetic_weights_match_reference_checksums(vggt_1b):
    rows = (FIXTURES / "vggt1b_synth_checks.tsv").read_text().splitlines()[1:]
    state = vggt_1b.state_dict()
    assert len(rows) == len(state)
    for row in rows:
        key, total, abs_total = row.split("\t")
        tensor = state[key].double()
        assert tensor.sum().item() == pytest.approx(float(total), rel=1e-6, abs=1e-6), key
        assert tensor.abs().sum().item() == pytest.approx(float(abs_total), rel=1e-6), key


def test_synthetic_tensor_follows_the_reference_recipe():
    # two keys of each kind, statistics checked against the recipe's scale and offset
    shapes = dict(read_keys_tsv("vggt1b_keys.tsv"))
    norm = synthetic_tensor("aggregator.frame_blocks.0.norm1.weight", shapes["aggregator.frame_blocks.0.norm1.weight"])
    assert abs(norm.mean().item() - 1.0) < 0.02 and abs(norm.std().item() - 0.1) < 0.01
    gamma = synthetic_tensor("aggregator.frame_blocks.0.ls1.gamma", (1024,))
    assert abs(gamma.mean().item() - 0.1) < 0.005 and abs(gamma.std().item() - 0.02) < 0.002
    weight = synthetic_tensor("aggregator.frame_blocks.0.mlp.fc1.weight", (4096, 1024))
    assert abs(weight.std().item() - 1 / 32) < 1e-3


@pytest.mark.slow
def test_vggt_1b_matches_reference_outputs_with_every_kernel_backend(vggt_1b, kernel_backend):
    ref = np.load(FIXTURES / "parity_1b.npz")
    out, tokens = run_reference_inputs(vggt_1b, ref)
    check_against_reference(out, tokens, ref)

"""Behaviour of the VGGT forward pass: outputs, invariances, switches and input validation."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import assert_close_to_reference
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.parallel.sequence import sequence_parallel_forward

S, H, W = 3, 140, 168


def assert_same_predictions(a: dict, b: dict, keys: tuple[str, ...]) -> None:
    """Dense outputs to 1e-4; tracks to the reference's track tolerance (the iterative tracker
    amplifies float32 rounding, e.g. from a different batch size, to a fraction of a pixel)."""
    for key in keys:
        if key == "track":
            assert (a[key] - b[key]).abs().max() <= 1.0, key
        elif key in ("vis", "conf"):
            assert (a[key] - b[key]).abs().max() <= 0.05, key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4, msg=key)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(S, 3, H, W, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def query_points() -> torch.Tensor:
    return torch.tensor([[20.0, 30.0], [100.5, 70.25], [150.0, 10.0]])


def test_outputs_have_upstream_keys_shapes_and_dtypes(tiny_model, images, query_points):
    with torch.no_grad():
        out = tiny_model(images, query_points=query_points)
    expected = {
        "pose_enc": (1, S, 9),
        "depth": (1, S, H, W, 1),
        "depth_conf": (1, S, H, W),
        "world_points": (1, S, H, W, 3),
        "world_points_conf": (1, S, H, W),
        "images": (1, S, 3, H, W),
        "track": (1, S, 3, 2),
        "vis": (1, S, 3),
        "conf": (1, S, 3),
    }
    assert set(out) == set(expected) | {"pose_enc_list"}
    for key, shape in expected.items():
        assert tuple(out[key].shape) == shape, key
        assert out[key].dtype == torch.float32, key
    assert len(out["pose_enc_list"]) == 4 and all(p.shape == (1, S, 9) for p in out["pose_enc_list"])
    assert torch.equal(out["pose_enc"], out["pose_enc_list"][-1])


def test_output_activations_bound_values(tiny_model, images):
    with torch.no_grad():
        out = tiny_model(images)
    assert (out["depth"] > 0).all()  # exp
    assert (out["depth_conf"] > 1).all() and (out["world_points_conf"] > 1).all()  # 1 + exp
    assert (out["pose_enc"][..., 7:] >= 0).all()  # relu field of view


def test_training_mode_does_not_return_images(tiny_model, images):
    tiny_model.train()
    out = tiny_model(images)
    assert "images" not in out


def test_first_frame_track_is_the_query(tiny_model, images, query_points):
    with torch.no_grad():
        out = tiny_model(images, query_points=query_points)
    # frame 0 is (query / stride) * stride: a step of rounding at most, relative to each coordinate (up to 150 px)
    assert_close_to_reference(out["track"][0, 0], query_points, ulps=2, scale=0.0, what="frame-0 track")


def test_sequences_in_a_batch_do_not_interact(tiny_model, images, query_points):
    other = torch.rand(S, 3, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batched = tiny_model(torch.stack((images, other)), query_points=torch.stack((query_points, query_points)))
        single = tiny_model(other, query_points=query_points)
    assert_same_predictions(
        {k: v[1:] for k, v in batched.items() if k != "pose_enc_list"},
        single,
        ("pose_enc", "depth", "world_points_conf", "track", "vis"),
    )


def test_permuting_non_reference_frames_permutes_outputs(tiny_model, images, query_points):
    # frames 1..S-1 share the same camera/register slot and RoPE has no frame index
    order = torch.tensor([0, 2, 1])
    with torch.no_grad():
        out = tiny_model(images, query_points=query_points)
        permuted = tiny_model(images[order], query_points=query_points)
    assert_same_predictions(
        {k: v[:, order] for k, v in permuted.items() if k != "pose_enc_list"},
        out,
        ("pose_enc", "depth", "world_points", "track", "vis", "conf"),
    )


def test_frame_chunking_does_not_change_outputs(tiny_model, images, query_points):
    with torch.no_grad():
        whole = tiny_model(images, query_points=query_points, frames_chunk_size=None)
        chunked = tiny_model(images, query_points=query_points, frames_chunk_size=1)
    assert_same_predictions(chunked, whole, ("depth", "depth_conf", "world_points", "track", "vis"))


def test_negative_frames_chunk_size_is_rejected_by_model_aggregator_and_heads(tiny_model, images, query_points):
    with pytest.raises(ValueError, match="frames_chunk_size must be a positive number of frames.*got -2"):
        tiny_model(images, query_points=query_points, frames_chunk_size=-2)
    with torch.no_grad():
        tokens, patch_start_idx = tiny_model.aggregator(images[None])
    for call in (
        lambda: tiny_model.aggregator(images[None], frames_chunk_size=-1),  # called directly, as upstream's README
        lambda: sequence_parallel_forward(tiny_model, images, frames_chunk_size=-1),
        lambda: tiny_model.depth_head(tokens, images[None], patch_start_idx, frames_chunk_size=-1),
        lambda: tiny_model.track_head(tokens, images[None], patch_start_idx, query_points[None], frames_chunk_size=-1),
    ):
        with pytest.raises(ValueError, match="got -1"):
            call()


def test_aggregator_keeps_only_layers_the_heads_read(tiny_model, images):
    with torch.no_grad():
        tokens, patch_start_idx = tiny_model.aggregator(images[None])
    config = tiny_model.config
    kept = [i for i, t in enumerate(tokens) if t is not None]
    assert len(tokens) == config.depth and patch_start_idx == 5
    assert kept == sorted(set(config.dpt_intermediate_layers) | {config.depth - 1})
    assert tokens[-1].shape == (1, S, 5 + (H // 14) * (W // 14), 2 * config.embed_dim)

    camera_only = VGGT(config=VGGTConfig.tiny(), enable_depth=False, enable_point=False, enable_track=False)
    with torch.no_grad():
        tokens, _ = camera_only.aggregator(images[None])
    assert [i for i, t in enumerate(tokens) if t is not None] == [config.depth - 1]


def test_bf16_autocast_keeps_camera_depth_and_points_in_float32(tiny_model, images, query_points):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(images, query_points=query_points)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert out[key].dtype == torch.float32, key
        assert torch.isfinite(out[key]).all(), key
    assert torch.isfinite(out["track"]).all()


@pytest.mark.parametrize(("heads_under_autocast", "expected"), [(False, torch.float32), (True, torch.bfloat16)])
def test_heads_compute_in_float32_under_autocast_unless_told_to_follow_it(
    tiny_model, images, heads_under_autocast, expected
):
    computed = []
    hooks = [
        module.register_forward_hook(lambda module, args, output: computed.append(output.dtype))
        for head in (tiny_model.camera_head, tiny_model.depth_head, tiny_model.point_head)
        for module in head.modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
    ]
    tiny_model.heads_under_autocast = heads_under_autocast
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = tiny_model(images)
    finally:
        for hook in hooks:
            hook.remove()
    assert computed and set(computed) == {expected}
    assert all(torch.isfinite(out[key]).all() for key in ("pose_enc", "depth", "world_points"))


def test_activation_checkpointing_gives_the_same_gradients(images):
    torch.manual_seed(0)
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False).train()

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.aggregator.set_activation_checkpointing(checkpointing)
        out = model(images)
        (out["depth"].mean() + out["pose_enc"].square().mean()).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and any(k.startswith("aggregator.frame_blocks") for k in plain)
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-5, atol=1e-6, msg=key)


def test_upstream_keyword_arguments_build_the_same_architecture():
    assert VGGT(enable_track=False, enable_point=False, config=VGGTConfig.tiny()).point_head is None
    model = VGGT(img_size=518, patch_size=14, embed_dim=64, config=VGGTConfig.tiny())
    assert model.config.embed_dim == 64 and model.track_head is not None


# bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(2, 4, 140, 140), "3 \\(RGB\\) channels"),
        (torch.rand(2, 3, 140, 150), "multiples of the patch size 14, got 140x150"),
        (torch.rand(3, 140, 140), "got shape \\(3, 140, 140\\)"),
        ((torch.rand(2, 3, 140, 140) * 255).to(torch.uint8), "floating point"),
    ],
)
def test_malformed_images_raise_a_clear_error(tiny_model, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(bad)


@pytest.mark.parametrize(
    "points, message",
    [
        (torch.zeros(4, 3), "\\[N, 2\\] or \\[B, N, 2\\]"),
        (torch.zeros(0, 2), "N >= 1"),
        (torch.zeros(2, 4, 2), "batch 2 does not match the images batch 1"),
    ],
)
def test_malformed_query_points_raise_a_clear_error(tiny_model, images, points, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(images, query_points=points)


def test_images_too_small_for_the_tracker_raise_instead_of_crashing(tiny_model):
    with pytest.raises(ValueError, match="at least 128x128 pixels.*got 126x140"):
        tiny_model(torch.rand(2, 3, 126, 140), query_points=torch.zeros(1, 2))


def test_query_points_without_a_track_head_raise(images):
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False).eval()
    with pytest.raises(ValueError, match="no track head"):
        model(images, query_points=torch.zeros(1, 2))


def test_invalid_config_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="dpt_intermediate_layers \\[23\\] are outside"):
        VGGTConfig(depth=4, dpt_intermediate_layers=(0, 1, 2, 23))
    with pytest.raises(ValueError, match="unknown VGGT config preset 'huge'"):
        VGGTConfig.preset("huge")

"""Chunked in-place inference (vggt.layers.token_chunks) gives the unchunked forward's numbers."""

from __future__ import annotations

import pytest
import torch

from vggt.layers.token_chunks import frame_spans

B, S, H, W = 2, 5, 56, 70
RTOL = 1e-5


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Max abs difference within RTOL of the expected tensor's largest magnitude (at least 1)."""
    scale = max(1.0, expected.abs().max().item())
    worst = (actual - expected).abs().max().item()
    assert worst <= RTOL * scale, f"{name}: max |diff| {worst:.3e} > {RTOL} * {scale:.3e}"


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(B, S, 3, H, W, generator=torch.Generator().manual_seed(3))


def test_frame_spans_cover_every_frame_once() -> None:
    assert frame_spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert frame_spans(4, 8) == [(0, 4)]


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 3, 5, 8])  # 5, 8: one chunk, the plain block in place
def test_chunked_aggregator_equals_unchunked(tiny_model, images, frames_per_chunk) -> None:
    before = images.clone()
    with torch.no_grad():
        whole, _ = tiny_model.aggregator(images, frames_chunk_size=None)
        chunked, _ = tiny_model.aggregator(images, frames_chunk_size=frames_per_chunk)
    assert torch.equal(images, before)  # in-place work never touches the caller's images
    assert [t is None for t in chunked] == [t is None for t in whole]
    for i, (a, b) in enumerate(zip(chunked, whole)):
        if b is not None:
            assert_close_relative(a, b, f"layer {i}")


def test_aggregator_chunks_by_default_only_without_autograd(tiny_model, images) -> None:
    with torch.no_grad():
        default, _ = tiny_model.aggregator(images)  # as upstream's README calls it
        whole, _ = tiny_model.aggregator(images, frames_chunk_size=None)
    with_grad, _ = tiny_model.aggregator(images, frames_chunk_size=1)  # training: the autograd path runs
    last = tiny_model.config.depth - 1
    assert with_grad[last].requires_grad
    assert_close_relative(default[last], whole[last], "default")
    assert_close_relative(with_grad[last].detach(), whole[last], "with grad")


def test_chunked_model_and_heads_equal_unchunked(tiny_model) -> None:
    images = torch.rand(1, S, 3, 140, 168, generator=torch.Generator().manual_seed(4))
    query_points = torch.tensor([[[10.0, 12.0], [40.5, 33.0]]])
    with torch.no_grad():
        whole = tiny_model(images, query_points=query_points, frames_chunk_size=None)
        chunked = tiny_model(images, query_points=query_points, frames_chunk_size=2)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert_close_relative(chunked[key], whole[key], key)
    # the iterative tracker amplifies float32 rounding: the reference README's pixel tolerances
    track_error = (chunked["track"] - whole["track"]).abs()
    assert track_error.max() <= 1.0 and track_error.mean() <= 0.2
    for key in ("vis", "conf"):
        assert (chunked[key] - whole[key]).abs().max() <= 0.05, key


def test_chunked_global_block_keeps_autocast_dtypes(tiny_model, images) -> None:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole, _ = tiny_model.aggregator(images, frames_chunk_size=None)
        chunked, _ = tiny_model.aggregator(images, frames_chunk_size=2)
    last = tiny_model.config.depth - 1
    assert chunked[last].dtype == whole[last].dtype == torch.float32
    torch.testing.assert_close(chunked[last], whole[last], rtol=0.05, atol=0.05)


def test_chunked_global_attention_runs_on_every_kernel_backend(tiny_model, images, kernel_backend) -> None:
    # queries of one chunk against the keys of the whole sequence: Nq != Nk in every backend's attention
    with torch.no_grad():
        whole, _ = tiny_model.aggregator(images, frames_chunk_size=None)
        chunked, _ = tiny_model.aggregator(images, frames_chunk_size=2)
    last = tiny_model.config.depth - 1
    assert_close_relative(chunked[last], whole[last], f"{kernel_backend} backend")

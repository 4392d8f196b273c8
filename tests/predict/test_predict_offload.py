"""Host offload (`vggt predict --offload`, VGGT.set_host_offload): the same outputs, the kept layers and dense
outputs in host memory; on a CPU, where host and device are one memory, the same data path moves nothing."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tests.predict.conftest import predict_args, run_cli
from vggt.config import VGGTConfig
from vggt.memory_plan import estimate_inference_memory


def test_offloaded_model_gives_the_same_outputs_with_kept_layers_in_host_memory(tiny_model) -> None:
    images = torch.rand(1, 5, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    offloaded = copy.deepcopy(tiny_model)
    offloaded.set_host_offload(True)
    assert offloaded.aggregator.kept_on_host and offloaded.depth_head.outputs_on_host
    with torch.no_grad():
        expected = tiny_model(images, frames_chunk_size=2)
        out = offloaded(images, frames_chunk_size=2)
        kept, _ = offloaded.aggregator(images, frames_chunk_size=2)
    assert all(t.device.type == "cpu" for t in kept if t is not None)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0, msg=key)
    offloaded.set_host_offload(False)
    assert not offloaded.aggregator.kept_on_host and not offloaded.point_head.outputs_on_host


def test_predict_with_offload_writes_the_same_predictions(tiny_weights: Path, scene_images: Path, tmp_path) -> None:
    plain, offloaded = tmp_path / "plain", tmp_path / "offloaded"
    for out, extra in ((plain, ()), (offloaded, ("--offload",))):
        result = run_cli(*predict_args(scene_images, out, tiny_weights, "--export", "none", *extra))
        assert result.status == 0, result.stderr
    with np.load(plain / "predictions.npz") as a, np.load(offloaded / "predictions.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_the_memory_plan_moves_kept_layers_and_outputs_to_the_host_with_offload() -> None:
    # 112 px: P = 69 tokens of C = 1024, bf16: residual C float32 + keys and values 2C bf16 per token, the image
    config, frames = VGGTConfig(), 4096
    plain = estimate_inference_memory(config, frames, 112, 112, torch.bfloat16)
    offloaded = estimate_inference_memory(config, frames, 112, 112, torch.bfloat16, offload=True)
    assert offloaded.phase == "aggregator"
    assert offloaded.per_frame_bytes == 69 * 1024 * (4 + 4) + 3 * 112 * 112 * 4
    kept = 4 * 2 * 1024 * 2 * 69  # 4 layers of 2C bf16 per token
    assert offloaded.host_bytes - plain.host_bytes == frames * kept
    assert offloaded.device_bytes - offloaded.weights_bytes < (plain.device_bytes - plain.weights_bytes) / 2

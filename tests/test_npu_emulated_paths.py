"""The NPU path under each torch_npu profile of the emulation: whole programs in subprocesses (`vggt predict
--device npu` on an emulated card, the fused optimizer under DDP on two gloo processes), and the model's kernels
past the ops' lowered limits in this process (they need no registered npu device)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import free_port
from tests.npu_emulation import ddp_fused_step, profiles
from tests.npu_emulation.install import install_torch_npu_emulation
from tests.npu_emulation.torch_npu import _fusion_attention, _rotary
from tests.training_helpers import small_overrides
from training.data.synthetic import generate_scenes
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.synthetic_weights import synthetic_model

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = sorted(profiles.PROFILES)
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def under_emulation(version: str, *argv: object, visible_cards: int = 0, register: bool = False) -> list[str]:
    """The command running `python -m ARGV...` with the emulation as torch_npu `version`."""
    options = ["--profile", version, "--visible-cards", str(visible_cards), *(["--register-npu-device"] * register)]
    return [sys.executable, "-m", "tests.npu_emulation.run", *options, "-m", *(str(a) for a in argv)]


@pytest.fixture(scope="module")
def tiny_weights_and_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Synthetic tiny-model weights and a folder of 2 rendered 160x120 views."""
    root = tmp_path_factory.mktemp("npu_predict")
    synthetic_model(VGGTConfig.tiny()).save_pretrained(root / "weights")
    scenes = generate_scenes(
        root / "scene", num_sequences=1, frames_per_sequence=2, image_size=(160, 120), splits={"train": 1}
    )
    return root / "weights", scenes["co3d_dir"] / scenes["category"] / "seq0000" / "images"


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_predict_on_an_emulated_card_prints_its_memory_plan_and_reaches_model_loading(
    version, tiny_weights_and_images, tmp_path
):
    weights, images = tiny_weights_and_images
    predict = ["predict", "--images", images, "--out", tmp_path / "out", "--model", weights, "--device", "npu"]
    predict += ["--resolution", 112, "--export", "none"]
    result = subprocess.run(
        under_emulation(version, "vggt", *predict, visible_cards=1, register=True),
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    assert "memory estimate for 2 frames" in result.stdout, result.stderr[-2000:]
    after_plan = result.stdout[result.stdout.index("memory estimate") :]
    assert "loading the model" in after_plan and "running VGGT on 2 frames" in after_plan
    # the emulated card holds no tensors: the run ends where the model moves onto it, not before
    no_backend = r"not linked with support for npu devices|from the 'npu' backend"
    assert re.search(no_backend, result.stderr), result.stderr[-2000:]


_DDP_RESULTS: dict[str, list[dict]] = {}


def ddp_fused_steps(version: str, bucket_view: bool, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Both ranks' results of tests/npu_emulation/ddp_fused_step.py on 2 gloo processes (one launch per version)."""
    if version not in _DDP_RESULTS:
        out = tmp_path_factory.mktemp(f"ddp_fused_{version}")
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "tests.npu_emulation.ddp_fused_step", "--profile", version, "--out", str(out),
        ]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
        assert result.returncode == 0, result.stderr[-3000:]
        _DDP_RESULTS[version] = [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    return [rank[bucket_view] for rank in _DDP_RESULTS[version]]


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_fused_adamw_over_ddp_bucket_views_flattens_each_whole_bucket_and_cannot_step(version, tmp_path_factory):
    """The real flattening counts a grad's storage: each of the 4 params, views of one bucket, takes all of it."""
    for rank in ddp_fused_steps(version, True, tmp_path_factory):
        assert rank["flat_grad_elements"] == 4 * rank["param_elements"]
        assert "must match the size" in rank["error"]


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_fused_adamw_over_ddp_without_bucket_views_steps_as_adamw_on_the_global_batch(version, tmp_path_factory):
    ranks = ddp_fused_steps(version, False, tmp_path_factory)
    net = ddp_fused_step.model()
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.01)
    for step in range(2):  # one process on both ranks' batches: the mean of their equal-size losses
        optimizer.zero_grad()
        losses = [torch.nn.functional.mse_loss(net(x), y) for x, y in (ddp_fused_step.batch(r, step) for r in (0, 1))]
        (sum(losses) / 2).backward()
        optimizer.step()
    for rank in ranks:
        assert rank["error"] is None and rank["flat_grad_elements"] == rank["param_elements"]
        for ours, expected in zip(rank["params"], net.parameters()):
            torch.testing.assert_close(ours, expected.detach(), rtol=1e-5, atol=1e-6)


def tiny_model_and_images() -> tuple[VGGT, torch.Tensor]:
    """A seeded tiny VGGT and 2 frames of 56x56: 16 patch tokens (+ camera and register tokens) per frame."""
    torch.manual_seed(0)
    model = VGGT(config=dataclasses.replace(VGGTConfig.tiny(), tracker_iterations=1))
    return model, torch.rand(1, 2, 3, 56, 56, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("version", VERSIONS)
def test_attention_beyond_a_lowered_sequence_limit_gives_the_unsplit_predictions(version, monkeypatch):
    """Frame (21 tokens) and global (42 tokens) attention beyond a limit of 16, which the emulated op then enforces
    too: the run only completes through the exact split, and predicts what one call per attention predicts."""
    emulation = install_torch_npu_emulation(monkeypatch, profile=version)
    monkeypatch.setenv("VGGT_KERNELS", "npu")
    model, images = tiny_model_and_images()
    model.eval()

    def predict() -> dict[str, torch.Tensor]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(images)
        return {key: out[key].float() for key in ("pose_enc", "depth", "world_points")}

    unsplit = predict()
    monkeypatch.setattr(_fusion_attention, "_MAX_SEQ", 16)
    monkeypatch.setenv("VGGT_NPU_ATTENTION_MAX_SEQ", "16")
    q = torch.ones(1, 4, 17, 16, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="S must be in"):
        emulation.npu_fusion_attention(q, q, q, 4, "BNSD")  # the lowered limit holds for an unsplit call
    split = predict()
    for key, expected in unsplit.items():  # bf16 chunk outputs merged in fp32: equal up to bf16 rounding
        torch.testing.assert_close(split[key], expected, rtol=2e-2, atol=2e-2, msg=key)


@pytest.mark.parametrize("version", VERSIONS)
def test_rotary_backward_over_a_lowered_batch_times_heads_limit_gives_the_unsplit_gradients(version, monkeypatch):
    """Frame attention's rotary sees B * N = 2 frames x 4 heads = 8 > a limit of 4 the emulated backward enforces."""
    install_torch_npu_emulation(monkeypatch, profile=version)
    monkeypatch.setenv("VGGT_KERNELS", "npu")
    model, images = tiny_model_and_images()
    model.train()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        out = model(images)
        sum(out[key].mean() for key in ("pose_enc", "depth", "world_points")).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    unsplit = gradients()
    monkeypatch.setattr(_rotary, "_MAX_BACKWARD_BN", 4)
    monkeypatch.setenv("VGGT_NPU_ROTARY_MAX_BN", "4")
    split = gradients()
    assert split.keys() == unsplit.keys()
    for name, expected in unsplit.items():
        torch.testing.assert_close(split[name], expected, rtol=1e-5, atol=1e-6, msg=name)


def training_args(scenes_dir: Path, run_dir: Path) -> list[str]:
    """The synthetic preset shrunk to 2 steps of the camera loss (every parameter the loss reaches gets a grad)."""
    return ["-m", "training.launch", "--config-name", "synthetic", *small_overrides(scenes_dir, run_dir)] + [
        "max_epochs=1", "limit_train_batches=2", "data.val=null", "model.enable_depth=false", "loss.depth=null",
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_two_process_training_refuses_the_fused_npu_optimizer_over_ddp_bucket_views(version, scenes_dir, tmp_path):
    """Selected on the CPU by VGGT_OPTIMIZER, NpuFusedAdamW under the trainer's DDP (bucket views) stops at setup,
    naming the conflict and what to use, instead of flattening whole buckets (see the bucket-view test above)."""
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    command = [*launcher, "-m", "tests.npu_emulation.run", "--profile", version]
    result = subprocess.run(
        [*command, *training_args(scenes_dir, tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**ENV, "VGGT_OPTIMIZER": "npu_fused"},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "DDP gradient bucket views" in output and "VGGT_OPTIMIZER=foreach" in output, output[-3000:]
    assert "must match the size" not in output


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_one_process_training_with_the_fused_npu_optimizer_ends_where_torch_adamw_does(version, scenes_dir, tmp_path):
    runs = {}
    for optimizer in ("npu_fused", "torch"):
        command = [sys.executable, "-m", "tests.npu_emulation.run", "--profile", version]
        result = subprocess.run(
            [*command, *training_args(scenes_dir, tmp_path / optimizer)],
            cwd=ROOT, capture_output=True, text=True, timeout=600, env={**ENV, "VGGT_OPTIMIZER": optimizer},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        runs[optimizer] = torch.load(tmp_path / optimizer / "ckpts" / "checkpoint.pt", weights_only=True)
    fused_state, adamw_state = (runs[o]["optimizer"]["state"] for o in ("npu_fused", "torch"))
    assert {type(s["step"]) for s in fused_state.values()} == {int}  # the fused optimizer's counter, not a tensor
    assert {type(s["step"]) for s in adamw_state.values()} == {torch.Tensor}
    for key, expected in runs["torch"]["model"].items():
        torch.testing.assert_close(runs["npu_fused"]["model"][key], expected, rtol=1e-4, atol=1e-6, msg=key)

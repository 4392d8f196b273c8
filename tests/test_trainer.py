"""The trainer: batch splitting, schedule, freezing, clipping, non-finite skips, logs, checkpoints, learning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import MissingMandatoryValue
from torch import nn

from tests.helpers import TORCH_HAS_CPU_FUSED_ADAMW
from tests.training_helpers import CONFIG_DIR, LINE, compose_config, launch, parse_log, small_overrides
from training.config_check import config_problems
from training.trainer import Trainer, model_from_training_config, split_batch
from training.utils import optim
from training.utils.optim import GradientClipper, freeze, keep_frozen_in_eval, lr_at, step_unless_nonfinite
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.weights import read_state_dict


def make_trainer(scenes_dir: Path, run_dir: Path, *extra: str) -> Trainer:
    return Trainer(compose_config(small_overrides(scenes_dir) + list(extra)), run_dir)


# pieces ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, chunks", [(5, 2), (3, 8), (4, 4), (1, 2)])
def test_split_batch_keeps_every_sample_even_when_accum_steps_exceed_the_batch(size, chunks):
    batch = {"images": torch.arange(size).view(size, 1), "seq_name": [f"s{i}" for i in range(size)], "n": 3}
    parts = split_batch(batch, min(chunks, size))
    assert torch.equal(torch.cat([p["images"] for p in parts]), batch["images"])
    assert sum((p["seq_name"] for p in parts), []) == batch["seq_name"]
    sizes = [p["images"].shape[0] for p in parts]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_lr_warms_up_linearly_then_follows_a_cosine_to_the_minimum():
    base, low, warm = 5e-5, 1e-8, 0.05
    assert lr_at(0.0, base, low, warm) == pytest.approx(low)
    assert lr_at(0.025, base, low, warm) == pytest.approx(low + (base - low) / 2)
    assert lr_at(0.05, base, low, warm) == pytest.approx(base)
    assert lr_at(0.525, base, low, warm) == pytest.approx(low + (base - low) * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_at(1.0, base, low, warm) == pytest.approx(low)


def test_freezing_by_glob_stops_gradients_and_keeps_the_module_in_eval():
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    frozen = freeze(model, ["*aggregator*"])
    assert frozen == ["aggregator"]
    assert not any(p.requires_grad for p in model.aggregator.parameters())
    assert all(p.requires_grad for p in model.camera_head.parameters())
    model.train()
    keep_frozen_in_eval(model, frozen)
    assert not model.aggregator.training and model.camera_head.training
    with pytest.raises(ValueError, match="'\\*agregator\\*' matches no module"):
        freeze(model, ["*agregator*"])


def test_a_frozen_aggregator_runs_without_autograd_and_the_heads_get_the_same_gradients():
    torch.manual_seed(0)
    trained = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    frozen = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    frozen.load_state_dict(trained.state_dict())
    freeze(frozen, ["*aggregator*"])
    grad_modes = []
    frozen.aggregator.register_forward_pre_hook(lambda module, args: grad_modes.append(torch.is_grad_enabled()))
    images = torch.rand(2, 3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    for model in (trained, frozen):
        out = model(images, frames_chunk_size=2)  # chunks: the frozen aggregator takes the inference path
        (out["depth"].mean() + out["pose_enc"].square().mean() + out["world_points"].mean()).backward()
    assert grad_modes == [False]
    for (name, expected), actual in zip(trained.named_parameters(), frozen.parameters()):
        if not name.startswith("aggregator"):
            torch.testing.assert_close(actual.grad, expected.grad, rtol=1e-4, atol=1e-7, msg=name)
    assert all(p.grad is None for p in frozen.aggregator.parameters())
    frozen.aggregator.requires_grad_(True)
    frozen(images)
    assert grad_modes == [False, True]


def test_frozen_layers_held_in_bf16_compute_what_autocast_computes_and_hand_back_their_originals():
    torch.manual_seed(0)
    model = nn.Module()
    model.aggregator = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 5), nn.LayerNorm(5), nn.Linear(5, 2)
    )
    model.aggregator[:4].requires_grad_(False)
    images = torch.rand(2, 3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def autocast_step() -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.aggregator(images)
        out.float().square().sum().backward()
        return out, model.aggregator[4].weight.grad.clone()

    expected = autocast_step()
    originals = optim.hold_frozen_layers_in(model, "aggregator", torch.bfloat16)
    assert sorted(originals) == [f"aggregator.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")]
    for key, value in originals.items():
        assert value.dtype == torch.float32 and torch.equal(value, before[key]), key
    assert [model.aggregator[i].weight.dtype for i in (0, 2, 3, 4)] == [torch.bfloat16] * 2 + [torch.float32] * 2
    for actual, wanted in zip(autocast_step(), expected):
        assert torch.equal(actual, wanted)


def test_without_keeping_originals_frozen_layers_are_still_held_and_none_are_returned():
    model = nn.Module()
    model.aggregator = nn.Linear(3, 2).requires_grad_(False)
    assert optim.hold_frozen_layers_in(model, "aggregator", torch.bfloat16, keep_originals=False) == {}
    assert model.aggregator.weight.dtype == model.aggregator.bias.dtype == torch.bfloat16


@pytest.mark.parametrize("rule", ["substring", "top_level"])
def test_clipper_clips_each_group_in_turn_by_upstreams_substring_rule_or_by_top_level_module(rule):
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False, enable_point=False)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    groups = [{"modules": ["aggregator"], "max_norm": 1.0}, {"modules": ["camera", "depth"], "max_norm": 2.0}]
    clipper = GradientClipper(model, groups, rule=rule)
    if rule == "substring":  # upstream: aggregator.camera_token is in both groups (clipped by each in turn)
        members = {
            "aggregator": lambda n: "aggregator" in n,
            "camera_depth": lambda n: "camera" in n or "depth" in n,
        }
        assert "aggregator.camera_token" in [n for n, _ in model.named_parameters() if members["camera_depth"](n)]
    else:
        members = {
            "aggregator": lambda n: n.startswith("aggregator."),
            "camera_depth": lambda n: n.startswith(("camera_head.", "depth_head.")),
        }
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    expected = {}
    for (label, belongs), max_norm in zip(members.items(), (1.0, 2.0)):  # clip_grad_norm_'s rule, group by group
        norm = torch.sqrt(sum((g**2).sum() for n, g in grads.items() if belongs(n)))
        expected[label] = norm
        for n in grads:
            if belongs(n):
                grads[n] = grads[n] * min(1.0, max_norm / (norm.item() + 1e-6))
    norms = clipper.clip()
    for label, norm in expected.items():
        torch.testing.assert_close(norms[label], norm)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], msg=name)
    with pytest.raises(ValueError, match="covers no group for the trainable parameters of \\['depth_head'\\]"):
        GradientClipper(model, [{"modules": ["aggregator"]}, {"modules": ["camera"]}], rule=rule)


def test_an_unknown_clip_rule_is_rejected_with_the_choices():
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False, enable_point=False)
    with pytest.raises(ValueError, match="optim.clip_rule must be one of"):
        GradientClipper(model, [{"modules": ["aggregator", "camera", "depth"]}], rule="first_match")


@pytest.mark.parametrize("fused", [True, False])
def test_a_non_finite_gradient_skips_the_optimizer_step(fused):
    if fused and not TORCH_HAS_CPU_FUSED_ADAMW:
        pytest.skip(f"torch {torch.__version__} has no fused AdamW for CPU tensors (torch >= 2.4 has)")
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1, fused=fused)
    param.grad = torch.tensor([1.0, float("nan"), 1.0])
    step_unless_nonfinite(optimizer, torch.tensor(True))
    assert torch.equal(param.detach(), torch.ones(3))
    param.grad = torch.ones(3)
    step_unless_nonfinite(optimizer, torch.tensor(False))
    assert (param.detach() < 1).all()


# the trainer -------------------------------------------------------------------------------------
def test_non_finite_batch_skips_the_step_without_touching_the_weights(scenes_dir, tmp_path):
    trainer = make_trainer(scenes_dir, tmp_path, "checkpoint.resume=null")
    batch = trainer.to_device(next(iter(trainer.loader(trainer.train_set, trainer.cfg.data.train, 0, 0, 1))))
    batch["images"][0, 0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.set_train_mode()
    logged = trainer.train_step(batch)
    assert logged["skipped_steps"].item() == 1.0
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_overfitting_one_batch_drives_the_loss_down(scenes_dir, tmp_path):
    trainer = make_trainer(scenes_dir, tmp_path, "checkpoint.resume=null", "optim.warmup_fraction=0")
    batch = trainer.to_device(next(iter(trainer.loader(trainer.train_set, trainer.cfg.data.train, 0, 0, 1))))
    trainer.set_train_mode()
    losses = [trainer.train_step(batch)["loss_objective"].item() for _ in range(60)]
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])


def test_a_run_logs_in_the_launcher_format_and_writes_checkpoints_and_tensorboard(scenes_dir, tmp_path):
    trainer = make_trainer(scenes_dir, tmp_path, "max_epochs=2", "limit_train_batches=3", "checkpoint.save_freq=2")
    trainer.run()
    lines = [line for line in (tmp_path / "log.txt").read_text().splitlines() if line.startswith("Train Epoch")]
    assert [LINE.match(line).group(1, 2, 3) for line in lines] == [
        (str(e), str(s), "3") for e in range(2) for s in (1, 2, 3)
    ]
    names = set(parse_log(tmp_path / "log.txt")[0])
    assert {"Loss/train_loss_objective", "Loss/train_loss_camera", "Loss/train_loss_reg_depth"} <= names
    assert any(line.startswith("Val Epoch: [2]") for line in (tmp_path / "log.txt").read_text().splitlines())
    state = torch.load(tmp_path / "ckpts" / "checkpoint.pt", weights_only=True)  # tensors and plain values only
    # no sampler / scheduler entries: both are functions of (config, epoch, step)
    assert set(state) == {"model", "optimizer", "scaler", "epoch", "step", "global_step", "rng", "config"}
    assert read_state_dict(tmp_path / "ckpts" / "checkpoint.pt").keys() == state["model"].keys()
    assert (state["epoch"], state["step"]) == (2, 0)
    assert (tmp_path / "ckpts" / "checkpoint_2.pt").is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_initial_weights_from_an_upstream_style_state_dict_are_loaded_with_a_key_report(scenes_dir, tmp_path):
    source = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("camera_head.trunk.1")}
    torch.save(state, tmp_path / "model.pt")
    trainer = make_trainer(scenes_dir, tmp_path / "run", f"model.init_weights={tmp_path / 'model.pt'}")
    torch.testing.assert_close(trainer.model.depth_head.norm.weight, state["depth_head.norm.weight"])
    assert "missing in checkpoint" in (tmp_path / "run" / "log.txt").read_text()


def test_a_trainable_head_without_a_loss_is_rejected(scenes_dir, tmp_path):
    with pytest.raises(ValueError, match="model.enable_point=true but loss.point is null"):
        make_trainer(scenes_dir, tmp_path, "model.enable_point=true")


def test_unknown_config_keys_and_missing_dataset_paths_are_named(scenes_dir, tmp_path):
    with pytest.raises(ConfigCompositionException, match="optim.learning_rate"):
        compose_config(small_overrides(scenes_dir) + ["optim.learning_rate=1"])
    cfg = compose_config(small_overrides(scenes_dir) + ["data.train.kind=co3d", "data.train.co3d_dir=???"])
    with pytest.raises(MissingMandatoryValue, match="co3d_dir"):
        Trainer(cfg, tmp_path)


def test_track_head_trains_on_ground_truth_tracks_built_from_depth(scenes_dir, tmp_path):
    trainer = make_trainer(
        scenes_dir,
        tmp_path,
        "checkpoint.resume=null",
        "data.img_size=140",  # the tracker's correlation pyramid needs >= 128 px
        "model.enable_track=true",
        "data.train.track_num=8",
        "data.val.track_num=8",
        "data.train.aspects=[1.0,1.0]",
        "+loss.track={weight:0.1}",
    )
    batch = trainer.to_device(next(iter(trainer.loader(trainer.train_set, trainer.cfg.data.train, 0, 0, 1))))
    assert batch["tracks"].shape[-2:] == (8, 2) and batch["track_positive_mask"].any()
    trainer.set_train_mode()
    before = trainer.model.track_head.tracker.vis_predictor[0].weight.clone()
    logged = trainer.train_step(batch)
    assert torch.isfinite(logged["loss_track"]) and torch.isfinite(logged["loss_vis"])
    assert not torch.equal(trainer.model.track_head.tracker.vis_predictor[0].weight, before)


def test_validation_follows_upstreams_schedule_and_runs_once_after_training(scenes_dir, tmp_path):
    """Upstream validates after epoch e when e % val_epoch_freq == 0 and e < max_epochs - 1, then once at the end."""
    trainer = make_trainer(
        scenes_dir, tmp_path, "max_epochs=3", "val_epoch_freq=2", "limit_train_batches=1", "limit_val_batches=1"
    )
    assert [trainer.validates_after(e) for e in range(3)] == [True, False, False]
    trainer.run()
    val_lines = [line for line in (tmp_path / "log.txt").read_text().splitlines() if line.startswith("Val Epoch")]
    assert [line.split("]")[0] for line in val_lines] == ["Val Epoch: [1", "Val Epoch: [3"]  # after epoch 0, at the end


FROZEN_AGGREGATOR = ["optim.frozen=[aggregator]", "model.random_frozen_weights=false", "checkpoint.resume=null"]


def test_a_frozen_module_without_weights_is_an_error_naming_it_unless_random_weights_are_asked_for(
    scenes_dir, tmp_path
):
    with pytest.raises(ValueError, match=r"frozen modules \['aggregator'\] received no weights"):
        make_trainer(scenes_dir, tmp_path / "a", *FROZEN_AGGREGATOR)
    source = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("aggregator.frame_blocks.0.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"\['aggregator'\] received no weights"):
        make_trainer(scenes_dir, tmp_path / "b", *FROZEN_AGGREGATOR, f"model.init_weights={tmp_path / 'partial.pt'}")
    torch.save(source.state_dict(), tmp_path / "full.pt")
    trainer = make_trainer(scenes_dir, tmp_path / "c", *FROZEN_AGGREGATOR, f"model.init_weights={tmp_path / 'full.pt'}")
    assert trainer.frozen == ["aggregator"]
    make_trainer(scenes_dir, tmp_path / "d", *FROZEN_AGGREGATOR, "model.random_frozen_weights=true")
    assert "keep random weights" in (tmp_path / "d" / "log.txt").read_text()


def test_a_bf16_run_holds_the_frozen_aggregator_in_bf16_trains_alike_and_checkpoints_it_as_loaded(
    scenes_dir, tmp_path, monkeypatch
):
    # the plain ops on both sides: bf16 weights also enable the fused fc1 + GELU on inputs of >= 256 rows, whose
    # rounding differs from the two ops' by up to a bf16 ulp (this preset's 212 rows a chunk stay below that)
    monkeypatch.setenv("VGGT_KERNELS", "torch")
    source = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    torch.save(source.state_dict(), tmp_path / "full.pt")
    bf16_frozen = [*FROZEN_AGGREGATOR, f"model.init_weights={tmp_path / 'full.pt'}", "optim.amp_dtype=bfloat16"]
    held = make_trainer(scenes_dir, tmp_path / "held", *bf16_frozen)
    assert held.model.aggregator.frame_blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert held.model.depth_head.norm.weight.dtype == torch.float32  # the heads compute in float32
    with monkeypatch.context() as patched:
        patched.setattr("training.trainer.hold_frozen_layers_in", lambda *args, **kwargs: {})
        as_loaded = make_trainer(scenes_dir, tmp_path / "as_loaded", *bf16_frozen)
    assert as_loaded.model.aggregator.frame_blocks[0].attn.qkv.weight.dtype == torch.float32
    batch = held.to_device(next(iter(held.loader(held.train_set, held.cfg.data.train, 0, 0, 1))))
    for trainer in (held, as_loaded):
        trainer.set_train_mode()
        trainer.train_step(batch)
    for (name, actual), expected in zip(held.model.named_parameters(), as_loaded.model.parameters()):
        if not name.startswith("aggregator"):
            assert torch.equal(actual, expected), name

    held.save()
    saved = torch.load(held.checkpoint_path(), weights_only=True)["model"]
    for key, value in source.state_dict().items():
        if key.startswith("aggregator."):
            assert saved[key].dtype == value.dtype and torch.equal(saved[key], value), key
    resume = [o for o in bf16_frozen if not o.startswith("checkpoint.resume")] + ["checkpoint.resume=auto"]
    resumed = make_trainer(scenes_dir, tmp_path / "held", *resume)
    assert torch.equal(resumed.model.depth_head.norm.weight, held.model.depth_head.norm.weight)  # the trained step
    assert resumed.model.aggregator.frame_blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert held.frozen_originals and resumed.frozen_originals.keys() == held.frozen_originals.keys()
    assert all(torch.equal(resumed.frozen_originals[k], v) for k, v in held.frozen_originals.items())


def test_initial_weights_that_fit_no_tensor_are_an_error(scenes_dir, tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="loaded no tensor into the model"):
        make_trainer(scenes_dir, tmp_path / "run", f"model.init_weights={tmp_path / 'other.pt'}")


def test_the_track_loss_without_track_data_is_rejected_at_start(scenes_dir, tmp_path):
    with pytest.raises(ValueError, match="loss.track is set but data.train.track_num is 0"):
        make_trainer(scenes_dir, tmp_path, "model.enable_track=true", "+loss.track={weight:0.1}")
    with pytest.raises(ValueError, match="data.val.track_num is 0"):
        make_trainer(
            scenes_dir, tmp_path, "model.enable_track=true", "+loss.track={weight:0.1}", "data.train.track_num=8"
        )


def test_invalid_training_values_are_all_listed_in_one_error_before_anything_is_built(scenes_dir, tmp_path):
    bad = ["optim.lr=abc", "accum_steps=0", "max_epochs=-1", "data.train.img_nums=[3,2]", "log_freq=true"]
    with pytest.raises(ValueError) as caught:
        make_trainer(scenes_dir, tmp_path / "run", *bad)
    message = str(caught.value)
    assert "5 invalid value(s)" in message
    for line in (
        "optim.lr must be a positive number, got 'abc' (a string)",
        "accum_steps must be an integer >= 1, got 0",
        "max_epochs must be an integer >= 1, got -1",
        "data.train.img_nums must be a list of two, each an integer >= 1, the first <= the second, got [3, 2]",
        "log_freq must be an integer >= 1, got True",
    ):
        assert f"  {line}" in message.splitlines()
    assert not (tmp_path / "run").exists()  # refused before logging, the model or the data


def test_a_learning_rate_that_yaml_read_as_a_string_says_how_to_write_it(scenes_dir, tmp_path):
    with pytest.raises(ValueError, match=r"optim.lr must be a positive number, got '5e-5' .*e.g. 5.0e-5"):
        make_trainer(scenes_dir, tmp_path, "optim.lr='5e-5'")


@pytest.mark.parametrize("preset", ["default", "perf", "full", "synthetic"])
def test_every_shipped_preset_passes_the_config_check(preset):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        assert config_problems(compose(config_name=preset)) == []


def test_resuming_from_a_plain_state_dict_says_what_it_is_and_what_is_expected(scenes_dir, tmp_path):
    model = model_from_training_config(compose_config(small_overrides(scenes_dir)).model)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(ValueError) as caught:
        make_trainer(scenes_dir, tmp_path / "run", f"checkpoint.resume={tmp_path / 'm.pt'}")
    message = str(caught.value)
    assert f"cannot resume from {tmp_path / 'm.pt'}: it is a plain model state dict" in message
    assert "optimizer, scaler, epoch, step" in message and f"model.init_weights={tmp_path / 'm.pt'}" in message


def test_the_launcher_refuses_invalid_values_in_one_message_without_a_traceback(tmp_path):
    result = launch(["max_epochs=0", "optim.lr=abc", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}"], timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        "  max_epochs must be an integer >= 1, got 0",
        "  optim.lr must be a positive number, got 'abc' (a string)",
    ]
    assert not (tmp_path / "run" / "log.txt").exists()

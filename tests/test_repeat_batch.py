"""Upstream's repeat_batch: every batch also trains its sequences with their frames reversed, and the model embeds
the patches of each frame once for a sequence and its reversal."""

from __future__ import annotations

import pytest
import torch

from tests.test_trainer import make_trainer
from tests.training_helpers import compose_config, small_overrides
from training.config_check import config_problems
from training.trainer import split_batch, with_reversed_frames
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT

OUTPUTS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")


def count_embedded_frames(model: VGGT) -> list[int]:
    """Appends the frames of every patch-embed call to the returned list."""
    frames: list[int] = []
    model.aggregator.patch_embed.register_forward_hook(lambda module, args, out: frames.append(args[0].shape[0]))
    return frames


def reversal_batch(sequences: int = 2, frames: int = 3) -> torch.Tensor:
    """[2 * sequences, frames, 3, 28, 28]: random sequences, then the same with their frames reversed."""
    images = torch.rand(sequences, frames, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    return torch.cat((images, images.flip(1)))


@pytest.mark.parametrize("autograd", [False, True], ids=["chunked_inference_path", "autograd_path"])
def test_a_reversed_copy_embeds_half_the_frames_and_gives_the_outputs_of_embedding_all(autograd):
    torch.manual_seed(0)
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False).train(autograd)
    frames = count_embedded_frames(model)
    images = reversal_batch()
    with torch.set_grad_enabled(autograd):
        every_frame = model(images, frames_chunk_size=4)
        assert sum(frames) == 12
        frames.clear()
        shared = model(images, frames_chunk_size=4, second_half_reversed=True)
    assert sum(frames) == 6
    for name in OUTPUTS:
        torch.testing.assert_close(shared[name], every_frame[name], rtol=1e-5, atol=1e-6, msg=name)


def test_gradients_through_the_shared_patch_embedding_match_embedding_every_frame():
    torch.manual_seed(0)
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False)
    images = reversal_batch()
    grads = []
    for shared in (False, True):
        model.zero_grad()
        out = model(images, second_half_reversed=shared)
        (out["depth"].mean() + out["pose_enc"].square().mean() + out["world_points"].mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.aggregator.named_parameters() if p.grad is not None})
    assert any(name.startswith("patch_embed.") for name in grads[1])
    assert grads[0].keys() == grads[1].keys()
    for name, expected in grads[0].items():
        torch.testing.assert_close(grads[1][name], expected, rtol=1e-4, atol=1e-5, msg=name)


def test_an_odd_batch_cannot_be_a_batch_and_its_reversal():
    model = VGGT(config=VGGTConfig.tiny(), enable_track=False).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="even batch .* got B=3"):
        model(torch.rand(3, 2, 3, 28, 28), second_half_reversed=True)


def test_with_reversed_frames_appends_each_sequence_reversed_and_chunks_keep_their_pairs():
    batch = {"images": torch.arange(3 * 4).view(3, 4), "seq_name": ["a", "b", "c"], "note": 1}
    doubled = with_reversed_frames(batch)
    assert torch.equal(doubled["images"][:3], batch["images"])
    assert torch.equal(doubled["images"][3:], batch["images"].flip(1))
    assert doubled["seq_name"] == ["a", "b", "c", "a", "b", "c"] and doubled["note"] == 1
    chunks = split_batch(doubled, 2, paired_halves=True)
    assert [c["seq_name"] for c in chunks] == [["a", "b", "a", "b"], ["c", "c"]]
    for chunk in chunks:
        half = chunk["images"].shape[0] // 2
        assert torch.equal(chunk["images"][half:], chunk["images"][:half].flip(1))


def test_repeat_batch_with_tracks_or_a_non_boolean_is_refused(scenes_dir):
    base = small_overrides(scenes_dir)
    assert config_problems(compose_config(base + ["data.train.repeat_batch=true"])) == []
    (problem,) = config_problems(compose_config(base + ["data.train.repeat_batch=true", "data.train.track_num=8"]))
    assert "data.train.repeat_batch=true reverses" in problem and "data.train.track_num=8" in problem
    (problem,) = config_problems(compose_config(base + ["data.train.repeat_batch=2"]))
    assert problem == "data.train.repeat_batch must be true or false, got 2"


def test_the_trainer_with_repeat_batch_trains_what_upstream_does_on_half_the_patch_embedding(scenes_dir, tmp_path):
    common = ("checkpoint.resume=null", "accum_steps=1", "optim.frozen=[]")
    repeating = make_trainer(scenes_dir, tmp_path / "a", "data.train.repeat_batch=true", *common)
    plain = make_trainer(scenes_dir, tmp_path / "b", *common)
    raw = next(iter(repeating.loader(repeating.train_set, repeating.cfg.data.train, 0, 0, 1)))
    batch = repeating.to_device(dict(raw))
    doubled = {k: torch.cat((v, v.flip(1))) if torch.is_tensor(v) else v * 2 for k, v in raw.items()}
    expected = plain.to_device(doubled)  # upstream: repeat, then normalise each sequence
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(batch[key], value, msg=key)
    sequences = raw["images"].shape[0]
    identity = torch.eye(3, 4).expand(sequences, 3, 4)
    torch.testing.assert_close(batch["extrinsics"][sequences:, 0], identity, atol=1e-5, rtol=0)  # own frame 0
    frames = count_embedded_frames(repeating.model)
    for trainer in (repeating, plain):
        trainer.set_train_mode()
    ours, theirs = repeating.train_step(batch), plain.train_step(expected)
    assert sum(frames) == sequences * raw["images"].shape[1]
    torch.testing.assert_close(ours["loss_objective"], theirs["loss_objective"], rtol=1e-5, atol=1e-7)
    for (name, a), b in zip(repeating.model.named_parameters(), plain.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

"""Loading and saving weights: file formats, sources, strictness, and the checkpoint key contract."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import huggingface_hub.constants
import huggingface_hub.file_download
import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import read_keys_tsv
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.synthetic_weights import synthetic_state_dict
from vggt.weights import WeightsMismatchError, build_on_meta_device, load_weights

REPO_ID = "acme/tiny-vggt"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MISSING = "camera_head.trunk.0.attn.qkv.weight"  # a Linear weight: its init is random, never all zeros or ones
RESHAPED = "aggregator.patch_embed.proj.weight"  # [64, 3, 14, 14] in the tiny model
UNEXPECTED = "aggregator.extra_token"
MASK_TOKEN = "aggregator.patch_embed.mask_token"


@pytest.fixture
def weights(tiny_model: VGGT) -> dict[str, torch.Tensor]:
    """Synthetic tensors for every key of the tiny model: none equals its initialisation."""
    return synthetic_state_dict({k: v.shape for k, v in tiny_model.state_dict().items()})


@pytest.fixture(scope="module")
def vggt_1b_keys() -> list[tuple[str, tuple[int, ...]]]:
    return read_keys_tsv("vggt1b_keys.tsv")


@pytest.fixture(scope="module")
def vggt_1b_meta() -> VGGT:
    """VGGT-1B on the meta device; read-only for the tests that share it."""
    return build_on_meta_device(VGGT, VGGTConfig())


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1, and its constant too: huggingface_hub reads the variable once, at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def no_hub_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode, but any request for a file's metadata on the Hub fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Hugging Face Hub was contacted")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", refuse)


def assert_state_dicts_equal(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(actual) == list(expected)
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key


def assert_random_init(tensor: torch.Tensor, shape: torch.Size) -> None:
    """A real initialisation: materialised, finite, varied and small (not meta, empty or garbage memory)."""
    assert not tensor.is_meta and tensor.shape == shape
    assert torch.isfinite(tensor).all() and tensor.std() > 0 and tensor.abs().max() < 1


def key_shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def write_mismatched_checkpoint(weights: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """`weights` less MISSING, with RESHAPED as [64, 3, 7, 7] and an extra UNEXPECTED key, saved to `path`."""
    state = {k: v for k, v in weights.items() if k != MISSING}
    state[RESHAPED] = torch.ones(64, 3, 7, 7)
    state[UNEXPECTED] = torch.ones(1, 4)
    torch.save(state, path)
    return state


def build_hub_cache(cache_dir: Path, repo_id: str, weights: dict[str, torch.Tensor]) -> None:
    """The Hugging Face cache layout: refs/main names a commit whose snapshot holds the files."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    save_file(weights, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps(VGGTConfig.tiny().to_dict()))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


# round trip -------------------------------------------------------------------------------------
NON_DEFAULT_TINY = dataclasses.replace(
    VGGTConfig.tiny(), num_register_tokens=2, camera_iterations=2, tracker_num_virtual_tracks=8
)


def test_save_pretrained_then_from_pretrained_restores_weights_and_outputs(tmp_path: Path) -> None:
    model = VGGT(config=NON_DEFAULT_TINY).eval()
    model.load_state_dict(synthetic_state_dict({k: v.shape for k, v in model.state_dict().items()}))
    model.save_pretrained(tmp_path / "run")

    loaded = VGGT.from_pretrained(tmp_path / "run")

    assert loaded.config == NON_DEFAULT_TINY
    assert_state_dicts_equal(loaded.state_dict(), model.state_dict())
    images = torch.rand(2, 3, 28, 42, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = model(images), loaded(images)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert torch.equal(actual[key], expected[key]), key


def test_config_json_written_by_save_pretrained_reproduces_the_config(tmp_path: Path) -> None:
    VGGT(config=NON_DEFAULT_TINY).save_pretrained(tmp_path)

    assert VGGTConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == NON_DEFAULT_TINY


# file formats -----------------------------------------------------------------------------------
def save_plain(state: dict[str, torch.Tensor], path: Path) -> None:
    torch.save(state, path)


def save_training_checkpoint(state: dict[str, torch.Tensor], path: Path) -> None:
    torch.save({"model": state, "optimizer": {"param_groups": [{"lr": 1e-4}]}, "epoch": 3}, path)


def save_ddp(state: dict[str, torch.Tensor], path: Path) -> None:
    torch.save({f"module.{k}": v for k, v in state.items()}, path)


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("filename", "save"),
    [
        ("model.pt", save_plain),
        ("checkpoint.pt", save_training_checkpoint),
        ("ddp.pt", save_ddp),
        ("weights.safetensors", save_safetensors),
    ],
    ids=["plain-state-dict", "training-checkpoint", "ddp-module-prefix", "safetensors"],
)
def test_from_pretrained_loads_each_checkpoint_format(tmp_path: Path, weights, filename, save) -> None:
    save(weights, tmp_path / filename)

    loaded = VGGT.from_pretrained(tmp_path / filename, config="tiny")

    assert_state_dicts_equal(loaded.state_dict(), weights)


def test_directory_with_both_formats_loads_model_safetensors(tmp_path: Path, weights) -> None:
    save_file(weights, str(tmp_path / "model.safetensors"))
    torch.save({k: v + 1 for k, v in weights.items()}, tmp_path / "model.pt")

    loaded = VGGT.from_pretrained(tmp_path, config="tiny")

    assert_state_dicts_equal(loaded.state_dict(), weights)


# strictness -------------------------------------------------------------------------------------
def test_strict_loading_is_the_default_and_names_every_offending_key_and_shape(tmp_path: Path, weights) -> None:
    write_mismatched_checkpoint(weights, tmp_path / "model.pt")

    with pytest.raises(WeightsMismatchError) as raised:
        VGGT.from_pretrained(tmp_path / "model.pt", config="tiny")

    message = str(raised.value)
    for text in (MISSING, UNEXPECTED, RESHAPED, "(64, 3, 7, 7)", "(64, 3, 14, 14)"):
        assert text in message


def test_non_strict_loading_fills_the_matching_tensors_and_initialises_the_rest(
    tmp_path: Path, tiny_model: VGGT, weights
) -> None:
    state = write_mismatched_checkpoint(weights, tmp_path / "model.pt")

    with pytest.warns(UserWarning, match=re.escape(MISSING)):
        loaded = VGGT.from_pretrained(tmp_path / "model.pt", config="tiny", strict=False)

    loaded_state = loaded.state_dict()
    assert torch.equal(loaded_state["aggregator.patch_embed.proj.bias"], state["aggregator.patch_embed.proj.bias"])
    assert not any(t.is_meta for t in loaded_state.values())
    for key in (MISSING, RESHAPED):  # no fitting tensor in the file: the model's own random init
        assert_random_init(loaded_state[key], tiny_model.state_dict()[key].shape)


def test_non_strict_loading_with_only_a_misshaped_tensor_initialises_it(
    tmp_path: Path, tiny_model: VGGT, weights
) -> None:
    torch.save({**weights, RESHAPED: torch.ones(64, 3, 7, 7)}, tmp_path / "model.pt")

    with pytest.warns(UserWarning, match=re.escape(RESHAPED)):
        loaded = VGGT.from_pretrained(tmp_path / "model.pt", config="tiny", strict=False)

    loaded_state = loaded.state_dict()
    assert_random_init(loaded_state[RESHAPED], tiny_model.state_dict()[RESHAPED].shape)
    assert_state_dicts_equal(
        {k: v for k, v in loaded_state.items() if k != RESHAPED}, {k: v for k, v in weights.items() if k != RESHAPED}
    )


def test_enable_track_false_loads_a_checkpoint_without_track_head_strictly(tmp_path: Path, weights) -> None:
    state = {k: v for k, v in weights.items() if not k.startswith("track_head.")}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsMismatchError, match="track_head"):
        VGGT.from_pretrained(tmp_path / "model.safetensors", config="tiny")

    loaded = VGGT.from_pretrained(tmp_path / "model.safetensors", config="tiny", enable_track=False)

    assert loaded.track_head is None
    assert_state_dicts_equal(loaded.state_dict(), state)


# Hugging Face repo ids and bad sources ----------------------------------------------------------
@pytest.mark.parametrize(
    ("guard", "hub_kwargs"),
    [("no_hub_requests", {"local_files_only": True}), ("offline", {})],
    ids=["local_files_only", "HF_HUB_OFFLINE"],
)
def test_repo_id_loads_from_the_local_cache_without_the_network(
    tmp_path: Path, request: pytest.FixtureRequest, weights, guard: str, hub_kwargs: dict
) -> None:
    request.getfixturevalue(guard)
    build_hub_cache(tmp_path, REPO_ID, weights)

    loaded = VGGT.from_pretrained(REPO_ID, cache_dir=tmp_path, **hub_kwargs)

    assert loaded.config == VGGTConfig.tiny()  # config.json came from the snapshot too
    assert_state_dicts_equal(loaded.state_dict(), weights)


@pytest.mark.parametrize(
    ("guard", "hub_kwargs"),
    [("no_hub_requests", {"local_files_only": True}), ("offline", {})],
    ids=["local_files_only", "HF_HUB_OFFLINE"],
)
def test_repo_id_absent_from_an_offline_cache_raises_file_not_found(
    tmp_path: Path, request: pytest.FixtureRequest, guard: str, hub_kwargs: dict
) -> None:
    request.getfixturevalue(guard)

    with pytest.raises(FileNotFoundError) as raised:
        VGGT.from_pretrained(REPO_ID, cache_dir=tmp_path, **hub_kwargs)

    message = str(raised.value)
    assert REPO_ID in message and "offline" in message and "cache" in message


def test_missing_local_path_raises_file_not_found_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(FileNotFoundError, match=re.escape("./nope/model.pt")):
        VGGT.from_pretrained("./nope/model.pt")


@pytest.mark.parametrize("filename", ["model.safetensors", "model.pt"])
def test_corrupt_weights_file_raises_value_error_naming_it(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_bytes(b"not a checkpoint " * 8)

    with pytest.raises(ValueError, match=re.escape(str(path))):
        VGGT.from_pretrained(path, config="tiny")


# the checkpoint key contract --------------------------------------------------------------------
def test_vggt_1b_state_dict_has_the_reference_keys_and_shapes_in_order(vggt_1b_meta: VGGT, vggt_1b_keys) -> None:
    assert key_shapes(vggt_1b_meta) == vggt_1b_keys


def test_vggt_1b_has_1_256_537_516_parameters(vggt_1b_meta: VGGT) -> None:
    assert sum(p.numel() for p in vggt_1b_meta.parameters()) == 1_256_537_516


def test_vggt_1b_loads_reference_shaped_tensors_strictly_with_assign(vggt_1b_keys) -> None:
    model = build_on_meta_device(VGGT, VGGTConfig())
    state = {key: torch.empty(shape, device="meta") for key, shape in vggt_1b_keys}

    incompatible = model.load_state_dict(state, strict=True, assign=True)  # raises on a missing or misshaped key

    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []


def test_mask_token_stays_frozen_after_loading(vggt_1b_keys) -> None:
    model = build_on_meta_device(VGGT, VGGTConfig())

    load_weights(model, {key: torch.empty(shape, device="meta") for key, shape in vggt_1b_keys})

    assert [name for name, p in model.named_parameters() if not p.requires_grad] == [MASK_TOKEN]


def test_vggt_without_track_head_has_the_1b_keys_less_track_head(vggt_1b_keys) -> None:
    with torch.device("meta"):
        model = VGGT(enable_track=False)

    assert key_shapes(model) == [(k, s) for k, s in vggt_1b_keys if not k.startswith("track_head.")]


def test_small_reference_has_its_reference_keys_and_loads_random_tensors_strictly() -> None:
    model = VGGT(config=VGGTConfig.small_reference())
    rows = read_keys_tsv("small_keys.tsv")
    assert key_shapes(model) == rows
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) for key, shape in rows}

    model.load_state_dict(state, strict=True)

    assert_state_dicts_equal(model.state_dict(), state)

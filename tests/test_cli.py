"""The `vggt` command: convert and verify-weights, their exit statuses, messages and help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors.torch import load_file, save_file

from vggt.cli import main
from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.synthetic_weights import synthetic_state_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
MISSING = "camera_head.trunk.0.attn.qkv.weight"
RESHAPED = "aggregator.patch_embed.proj.weight"  # [64, 3, 14, 14] in the tiny model
REPORT_KEYS = {"source", "total_source_keys", "loaded_keys", "missing", "unexpected", "shape_mismatch", "ok"}


@pytest.fixture
def weights(tiny_model: VGGT) -> dict[str, torch.Tensor]:
    """Synthetic tensors for every key of the tiny model."""
    return synthetic_state_dict({k: v.shape for k, v in tiny_model.state_dict().items()})


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `vggt argv...` run in this process."""
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


# convert ----------------------------------------------------------------------------------------
def test_convert_writes_the_source_tensors_as_safetensors_and_prints_a_summary(tmp_path: Path, capsys, weights) -> None:
    src, dst = tmp_path / "checkpoint.pt", tmp_path / "out" / "model.safetensors"
    torch.save({"model": weights, "epoch": 2}, src)

    status, out, err = run_cli(capsys, "convert", src, dst)

    assert (status, err) == (0, "")
    assert_tensors_equal(load_file(dst), weights)
    assert out == f"converted {len(weights)} tensors ({dst.stat().st_size / 1e6:.1f} MB) to {dst}\n"
    assert [p.name for p in dst.parent.iterdir()] == ["model.safetensors"]  # no temporary file left behind


def assert_tensors_equal(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key


@pytest.mark.parametrize("problem", ["missing source", "unreadable source", "destination not .safetensors"])
def test_convert_bad_input_exits_2_naming_the_path_and_writes_nothing(
    tmp_path: Path, capsys, weights, problem: str
) -> None:
    src, dst = tmp_path / "model.pt", tmp_path / "out" / "model.safetensors"
    if problem == "unreadable source":
        src.write_bytes(b"not a checkpoint")
    if problem == "destination not .safetensors":
        torch.save(weights, src)
        dst = dst.with_suffix(".bin")
    named = dst if problem.startswith("destination") else src

    status, out, err = run_cli(capsys, "convert", src, dst)

    assert (status, out) == (2, "")
    assert str(named) in err and "Traceback" not in err
    assert not dst.parent.exists()


def test_convert_failing_mid_write_keeps_the_old_destination_and_leaves_no_temporary_file(
    tmp_path: Path, capsys, weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "model.pt", tmp_path / "model.safetensors"
    torch.save(weights, src)
    dst.write_bytes(b"previous weights")

    def write_half_then_fail(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", write_half_then_fail)

    status, _, err = run_cli(capsys, "convert", src, dst)

    assert status == 2 and "No space left on device" in err
    assert dst.read_bytes() == b"previous weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.safetensors"]


# verify-weights ---------------------------------------------------------------------------------
def test_verify_weights_accepts_a_matching_checkpoint(tmp_path: Path, capsys, weights) -> None:
    path = tmp_path / "model.safetensors"
    save_file(weights, str(path))

    status, out, err = run_cli(capsys, "verify-weights", path, "--config", "tiny")

    report = json.loads(out)
    assert (status, err) == (0, "")
    assert set(report) == REPORT_KEYS
    assert report["ok"] is True and report["source"] == str(path)
    assert report["loaded_keys"] == report["total_source_keys"] == len(weights)
    assert report["missing"] == report["unexpected"] == report["shape_mismatch"] == []


def test_verify_weights_reads_a_directory_and_its_config_json(tmp_path: Path, capsys, weights) -> None:
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(VGGTConfig.tiny().to_dict()))

    status, out, _ = run_cli(capsys, "verify-weights", tmp_path)

    assert status == 0 and json.loads(out)["ok"] is True


def test_verify_weights_takes_the_architecture_from_a_config_json_path(tmp_path: Path, capsys, weights) -> None:
    torch.save(weights, tmp_path / "checkpoint.pt")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.json").write_text(json.dumps(VGGTConfig.tiny().to_dict()))

    status, out, _ = run_cli(
        capsys, "verify-weights", tmp_path / "checkpoint.pt", "--config", tmp_path / "configs/tiny.json"
    )

    assert status == 0 and json.loads(out)["ok"] is True


def test_verify_weights_lists_a_missing_and_a_misshaped_key_and_exits_1(tmp_path: Path, capsys, weights) -> None:
    state = {k: v for k, v in weights.items() if k != MISSING}
    state[RESHAPED] = torch.zeros(64, 3, 7, 7)
    save_file(state, str(tmp_path / "model.safetensors"))

    status, out, err = run_cli(capsys, "verify-weights", tmp_path / "model.safetensors", "--config", "tiny")

    report = json.loads(out)
    assert status == 1 and report["ok"] is False
    assert report["missing"] == [MISSING] and report["unexpected"] == []
    assert report["shape_mismatch"] == [{"key": RESHAPED, "checkpoint": [64, 3, 7, 7], "model": [64, 3, 14, 14]}]
    assert report["total_source_keys"] == len(weights) - 1 and report["loaded_keys"] == len(weights) - 2
    assert MISSING in err and RESHAPED in err  # the readable summary


@pytest.mark.parametrize(
    ("problem", "named"),
    [
        ("missing weights file", "absent.safetensors"),
        ("corrupt weights file", "model.safetensors"),
        ("missing config file", "absent.json"),
        ("unknown preset", "huge"),
        ("config file not a JSON object", "list.json"),
    ],
)
def test_verify_weights_bad_input_exits_2_naming_it(tmp_path: Path, capsys, weights, problem: str, named: str) -> None:
    path, config = tmp_path / "model.safetensors", "tiny"
    save_file(weights, str(path))
    if problem == "missing weights file":
        path = tmp_path / named
    if problem == "corrupt weights file":
        path.write_bytes(b"not a checkpoint")
    if problem == "missing config file":
        config = str(tmp_path / named)
    if problem == "unknown preset":
        config = named
    if problem == "config file not a JSON object":
        config = str(tmp_path / named)
        (tmp_path / named).write_text("[1, 2]")

    status, out, err = run_cli(capsys, "verify-weights", path, "--config", config)

    assert (status, out) == (2, "")
    assert named in err and "Traceback" not in err


# the command itself -----------------------------------------------------------------------------
@pytest.mark.parametrize("subcommand", ["convert", "verify-weights"])
def test_each_subcommand_help_explains_its_arguments_with_examples(capsys, subcommand: str) -> None:
    status, out, _ = run_cli(capsys, subcommand, "--help")

    assert status == 0
    assert "examples:" in out and f"  vggt {subcommand} " in out
    assert "positional arguments:" in out


def test_no_subcommand_exits_2_with_the_usage(capsys) -> None:
    status, _, err = run_cli(capsys)

    assert status == 2 and "usage: vggt" in err


def test_python_m_vggt_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vggt", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "convert" in result.stdout and "verify-weights" in result.stdout

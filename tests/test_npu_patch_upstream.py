"""VGGT_npu.patch on a real upstream checkout: the published flow, model parity on emulated NPU, the launchers.

Runs only with VGGT_UPSTREAM_DIR set to an upstream VGGT checkout at 97bbde5 (README: "VGGT_npu.patch"), and
VGGT_UPSTREAM_PYTHON to the python of a virtual environment with upstream's requirements (both trees install a
package named vggt, so the patched tree runs in its own processes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from npu_patch.make_patch import PATCH_FILE, apply_edits, load_edits, new_files
from tests.helpers import (
    FIXTURES,
    assert_tracks_within_reference_tolerance,
    assert_within_reference_tolerance,
    read_keys_tsv,
)
from vggt.config import VGGTConfig
from vggt.synthetic_weights import synthetic_tensor

UPSTREAM_DIR = os.environ.get("VGGT_UPSTREAM_DIR")
UPSTREAM_PYTHON = os.environ.get("VGGT_UPSTREAM_PYTHON", sys.executable)
REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_APPLY = ["git", "apply", "--reject", "--whitespace=fix", "VGGT_npu.patch"]

pytestmark = pytest.mark.skipif(
    not UPSTREAM_DIR, reason="set VGGT_UPSTREAM_DIR to an upstream VGGT checkout (and VGGT_UPSTREAM_PYTHON)"
)


def patched_constructor_arguments(config: VGGTConfig) -> dict:
    """Our config's sizes as arguments of the patched upstream VGGT (npu_patch/edits/model.yaml)."""
    return {
        "embed_dim": config.embed_dim,
        "depth": config.depth,
        "num_heads": config.num_heads,
        "patch_embed": config.patch_embed,
        "camera_trunk_depth": config.camera_trunk_depth,
        "camera_num_heads": config.camera_num_heads,
        "dpt_features": config.dpt_features,
        "dpt_out_channels": list(config.dpt_out_channels),
        "dpt_intermediate_layer_idx": list(config.dpt_intermediate_layers),
        "track_features": config.track_features,
        "track_hidden_size": config.tracker_hidden_size,
    }


def upstream_env(tree: Path) -> dict[str, str]:
    """The environment of a patched-tree process: its own vggt importable, this repository's not."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VGGT_KERNELS")}
    env["PYTHONPATH"] = str(tree)
    env["PYTHON"] = UPSTREAM_PYTHON
    return env


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A fresh copy of upstream with the published apply command run in it: (tree, the command's result)."""
    tree = tmp_path_factory.mktemp("upstream") / "vggt"
    shutil.copytree(UPSTREAM_DIR, tree, symlinks=True)
    shutil.copyfile(PATCH_FILE, tree / "VGGT_npu.patch")
    applied = subprocess.run(PUBLISHED_APPLY, cwd=tree, capture_output=True, text=True)
    return tree, applied


def test_published_apply_command_changes_exactly_what_the_patch_means(patched) -> None:
    tree, applied = patched
    assert applied.returncode == 0, applied.stderr
    assert not list(tree.rglob("*.rej"))
    for path, edits in load_edits().items():
        expected = apply_edits((Path(UPSTREAM_DIR) / path).read_text(encoding="utf-8"), edits, path)
        assert (tree / path).read_text(encoding="utf-8") == expected, path
    for path, source in new_files().items():
        assert (tree / path).read_bytes() == source.read_bytes(), path
    if (tree / ".git").exists():
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tree, text=True,
                                capture_output=True, check=True).stdout  # fmt: skip
        changed = {line[3:] for line in status.splitlines()}
        assert changed == set(load_edits()) | set(new_files()) | {"VGGT_npu.patch"}


def test_patched_model_on_emulated_npu_reproduces_upstream_and_calls_the_fused_ops(patched, tmp_path: Path) -> None:
    """The fixture holds unpatched upstream's outputs for the same synthetic weights (tests/fixtures/README.md)."""
    tree, _ = patched
    weights = tmp_path / "small.pt"
    torch.save({key: synthetic_tensor(key, shape) for key, shape in read_keys_tsv("small_keys.tsv")}, weights)
    out = tmp_path / "out.npz"
    script = REPO_ROOT / "tests" / "upstream_patch_parity.py"
    run = subprocess.run(
        [UPSTREAM_PYTHON, str(script), str(tree), str(weights), str(FIXTURES / "parity_small.npz"), str(out),
         json.dumps(patched_constructor_arguments(VGGTConfig.small_reference()))],
        cwd=tmp_path, env=upstream_env(tree), capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    calls = json.loads(run.stdout.strip().splitlines()[-1])
    # 24 frame + 24 global blocks (q and k, rows and columns: 4 rotary calls each), the camera trunk's 4 blocks
    # in each of 4 iterations, then the tracker's attention and MLPs
    assert calls["npu_rotary_mul"] == 48 * 4
    assert calls["npu_fusion_attention"] > 48 + 4 * 4
    assert calls["npu_gelu"] > 48 + 4 * 4
    ref = np.load(FIXTURES / "parity_small.npz")
    ours = np.load(out)
    for key in ours.files:
        if key not in ("track", "vis", "conf"):
            assert_within_reference_tolerance(key, ours[key], ref[key])
    assert_tracks_within_reference_tolerance({k: torch.from_numpy(ours[k]) for k in ("track", "vis", "conf")}, ref)


@pytest.mark.slow
def test_launchers_copied_into_training_train_two_cpu_processes_on_synthetic_scenes(patched) -> None:
    tree, _ = patched
    shutil.copytree(REPO_ROOT / "test", tree / "training" / "test", dirs_exist_ok=True)
    args = ["--device", "cpu", "--nproc", "2", "--data", "synthetic", "--max-epochs", "1", "--max-steps", "20"]
    run = subprocess.run(["bash", "test/train_8p_vggt_perf.sh", *args], cwd=tree / "training",
                         env=upstream_env(tree), capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    case = tree / "training" / "test" / "output" / "VGGT_8p_perf"
    summary = dict(line.split(" = ", 1) for line in (case / "VGGT_8p_perf.log").read_text().splitlines())
    assert summary["RankSize"] == "2" and summary["DeviceType"] == "cpu"
    assert int(summary["TimedLogLines"]) == 21 - 10  # upstream trains limit_train_batches + 1 steps
    assert float(summary["AvgStepTime"]) > 0 and float(summary["ActualFPS"]) > 0
    assert (case / "run" / "ckpts" / "checkpoint.pt").is_file()
    assert "Train Epoch: [0][      0/" in (case / "train.log").read_text()  # upstream's trainer pads the step


@pytest.mark.slow
def test_upstream_trainer_resumes_with_optimizer_state_after_accum_steps_beyond_the_batch(patched, tmp_path) -> None:
    """#340: accum_steps 8 on 4 sequences (2, doubled by repeat_batch) trains; #279: the rerun resumes from it."""
    tree, _ = patched
    scenes = tmp_path / "scenes"
    generate = [UPSTREAM_PYTHON, "data/synthetic.py", "--out", str(scenes), "--category", "tv", "--sequences", "4",
                "--frames", "4", "--size", "112", "84"]  # fmt: skip
    subprocess.run(generate, cwd=tree / "training", env=upstream_env(tree), check=True, capture_output=True)
    launch = [UPSTREAM_PYTHON, "launch.py", "--config", "npu_synthetic", "device=cpu", "optim.amp.enabled=false",
              f"co3d_dir={scenes / 'co3d'}", f"co3d_annotation_dir={scenes / 'co3d_annotations'}",
              f"logging.log_dir={tmp_path / 'run'}", f"checkpoint.save_dir={tmp_path / 'run' / 'ckpts'}",
              "max_img_per_gpu=4", "accum_steps=8", "limit_train_batches=1", "limit_val_batches=0"]  # fmt: skip
    env = {**upstream_env(tree), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533", "RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_RANK": "0"}  # fmt: skip
    first = subprocess.run([*launch, "max_epochs=1"], cwd=tree / "training", env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Train Epoch: [0]" in first.stdout + first.stderr
    second = subprocess.run([*launch, "max_epochs=2"], cwd=tree / "training", env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "Loading optimizer state dict" in log
    assert "Train Epoch: [1]" in log and "Train Epoch: [0]" not in log

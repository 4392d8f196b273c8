"""Whole training runs through the launcher: kill and resume, DDP on two processes, learning on synthetic scenes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import free_port
from tests.training_helpers import ROOT, launch, parse_log, small_overrides
from training.data.co3d import Co3dDataset
from training.data.sampler import DynamicBatchSampler
from training.data.synthetic import generate_scenes

pytestmark = pytest.mark.slow
# test/common.sh's VGGT_SCENES, the scenes of `--data synthetic`
LAUNCHER_SCENES = {"num_sequences": 8, "frames_per_sequence": 8, "image_size": (160, 120), "seed": 0}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "ckpts" / "checkpoint.pt", weights_only=True)["model"]


def check_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(scenes_dir, tmp_path):
    args = small_overrides(scenes_dir) + [
        "deterministic=true",
        "max_epochs=2",
        "limit_train_batches=4",
        "checkpoint.save_every_steps=1",
        "data.val=null",
    ]
    check_ok(launch(args + [f"hydra.run.dir={tmp_path / 'straight'}"]))

    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "training.launch", "--config-name", "synthetic", *args]
    command.append(f"hydra.run.dir={interrupted}")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = interrupted / "log.txt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and "Train Epoch: [1][2/4]" in log.read_text():
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = torch.load(interrupted / "ckpts" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and 1 <= state["step"] < 4  # killed mid-epoch: the latest checkpoint is mid-epoch

    check_ok(launch(args + [f"hydra.run.dir={interrupted}"]))  # the same command resumes
    assert "resumed from" in log.read_text()
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(interrupted)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_two_process_ddp_matches_one_process_on_the_same_global_batch(scenes_dir, tmp_path):
    """Camera loss only (a per-frame mean): the mean of two ranks' losses is the global-batch loss.

    Equal final weights after 3 steps mean that rank 0 applied the global batch's gradient, i.e. the
    all-reduced gradient that every rank applies.
    """
    args = small_overrides(scenes_dir) + [
        "max_epochs=1",
        "limit_train_batches=3",
        "data.val=null",
        "model.enable_depth=false",
        "loss.depth=null",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "training.launch", "--config-name", "synthetic", *args,
            "data.train.batch_size=1", f"hydra.run.dir={tmp_path / 'ddp'}",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    check_ok(ddp)
    assert "world size 2" in (tmp_path / "ddp" / "log.txt").read_text()
    check_ok(launch(args + ["data.train.batch_size=2", f"hydra.run.dir={tmp_path / 'single'}"]))

    ddp_loss = [row["Loss/train_loss_camera"] for row in parse_log(tmp_path / "ddp" / "log.txt")]
    single_loss = [row["Loss/train_loss_camera"] for row in parse_log(tmp_path / "single" / "log.txt")]
    assert ddp_loss == pytest.approx(single_loss, rel=1e-4)
    two, one = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6, msg=key)


def test_tiny_model_learns_camera_and_depth_on_synthetic_scenes(scenes_dir, tmp_path):
    args = small_overrides(scenes_dir) + ["max_epochs=1", "limit_train_batches=300", "data.val=null", "log_freq=10"]
    check_ok(launch(args + [f"hydra.run.dir={tmp_path}"]))
    rows = parse_log(tmp_path / "log.txt")
    first, last = rows[0], rows[-1]
    for name, factor in (("Loss/train_loss_camera", 0.5), ("Loss/train_loss_reg_depth", 0.6)):
        assert last[name] < factor * first[name], (name, first[name], last[name])


def scenes_with_an_unreadable_sequence_for_rank_1(scenes_dir: Path) -> Path:
    """The launcher's synthetic scenes in `scenes_dir` with every image of rank 1's first sequence unreadable
    (the perf preset's sampler: seed 42, 2 frames, 1 sequence per rank, 2 ranks); returns the category folder."""
    scenes = generate_scenes(scenes_dir, **LAUNCHER_SCENES)
    dataset = Co3dDataset(
        scenes["co3d_dir"], scenes["annotation_dir"], categories=[scenes["category"]], min_num_images=2
    )

    def first_sequence(rank: int) -> int:
        sampler = DynamicBatchSampler(len(dataset), (2, 2), (1.0, 1.0), batch_size=1, rank=rank, world_size=2)
        return next(iter(sampler))[0].index

    bad = first_sequence(1)
    assert bad != first_sequence(0)  # met by rank 1 only
    for frame in dataset.sequence_frames(bad):
        frame.image_path.write_bytes(b"not an image")
    return scenes["co3d_dir"] / scenes["category"]


def launcher_command(scenes_dir: Path, *args: str) -> list[str]:
    """The perf launcher on 2 CPU ranks in all, synthetic data, 1 sequence per rank, 5 steps."""
    return [str(ROOT / "test" / "train_8p_vggt_perf.sh"), "--device", "cpu", "--data", "synthetic",
            "--batch-size", "1", "--max-steps", "5", "--scenes-dir", str(scenes_dir), *args]  # fmt: skip


# one intra-op thread per process however the ranks are spread: torchrun sets it only for --nproc > 1, and
# a different thread count changes float summation order, so one node of two and two nodes of one would differ
LAUNCHER_ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


def start_two_nodes(command: list[str], tmp_path: Path) -> list[subprocess.Popen]:
    """`command` started as nodes 0 and 1 of a job of one process per node (static rendezvous on this machine),
    node R writing under tmp_path / f"node{R}"."""
    port = str(free_port())
    return [
        subprocess.Popen(
            [
                *command,
                "--nproc",
                "1",
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
                "--output-root",
                str(tmp_path / f"node{rank}"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=LAUNCHER_ENV,
        )  # fmt: skip
        for rank in (0, 1)
    ]


def test_an_unreadable_frame_met_by_one_rank_ends_the_two_process_launcher_run_in_seconds_naming_it(tmp_path):
    """Rank 1 fails in its data loader at step 0 while rank 0 waits in DDP's all-reduce: the job must not hang."""
    category_dir = scenes_with_an_unreadable_sequence_for_rank_1(tmp_path / "scenes")
    start = time.monotonic()
    result = subprocess.run(
        launcher_command(tmp_path / "scenes", "--nproc", "2", "--output-root", str(tmp_path / "out")),
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=LAUNCHER_ENV,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 120, f"the failed job took {elapsed:.0f} s to end"  # it hung for the 30 min collective timeout
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("first failure (node 0, local rank 1): DatasetError: image "), result.stderr
    assert str(category_dir) in first_line and "cannot be read" in first_line
    # whether rank 0 is ended by the failure rank 1 posted (peer watch) or by torchrun's agent first is a race;
    # either ends it in seconds (the elapsed bound), and tests/test_peer_watch.py proves the peer watch alone


def test_a_failure_on_one_node_ends_every_node_in_seconds_naming_the_node_and_rank(tmp_path):
    category_dir = scenes_with_an_unreadable_sequence_for_rank_1(tmp_path / "scenes")
    start = time.monotonic()
    nodes = start_two_nodes(launcher_command(tmp_path / "scenes"), tmp_path)
    errors = [node.communicate(timeout=300)[1] for node in nodes]
    elapsed = time.monotonic() - start
    assert all(node.returncode != 0 for node in nodes)
    assert elapsed < 120, f"the failed job took {elapsed:.0f} s to end"
    # node 1 shows its own rank's error; node 0 shows that rank 1 on node 1 failed, and why
    assert errors[1].startswith("first failure (node 1, local rank 0): DatasetError: image "), errors[1]
    assert str(category_dir) in errors[1].splitlines()[0]
    node0_first = errors[0].splitlines()[0]
    assert node0_first.startswith("first failure (node 0, local rank 0): RuntimeError: rank 0 (node 0"), errors[0]
    assert "stops because rank 1 (node 1, local rank 0" in node0_first and "DatasetError" in node0_first


def test_two_nodes_of_one_process_train_as_one_node_of_two_and_write_one_checkpoint_and_one_summary(tmp_path):
    """Two torchrun agents on this machine (static rendezvous at 127.0.0.1), each through the perf launcher with
    its own --output-root, against one agent with two processes: same global batch, same losses and weights."""
    generate_scenes(tmp_path / "scenes", **LAUNCHER_SCENES)
    launcher = str(ROOT / "test" / "train_8p_vggt_perf.sh")
    common = [launcher, "--device", "cpu", "--data", "synthetic", "--batch-size", "1", "--max-steps", "3",
              "--scenes-dir", str(tmp_path / "scenes")]  # fmt: skip
    one = subprocess.run(
        [*common, "--nproc", "2", "--output-root", str(tmp_path / "one")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=LAUNCHER_ENV,
    )  # fmt: skip
    check_ok(one)
    nodes = start_two_nodes(common, tmp_path)
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (out, err) in zip(nodes, outputs):
        assert node.returncode == 0, out[-3000:] + err[-3000:]
    assert "the summary is written on node 0" in outputs[1][0]

    case = "VGGT_8p_perf"
    single_run, node0_run = tmp_path / "one" / case / "run", tmp_path / "node0" / case / "run"
    single_rows, node_rows = parse_log(single_run / "log.txt"), parse_log(node0_run / "log.txt")
    assert len(single_rows) == len(node_rows) == 3
    for single_row, node_row in zip(single_rows, node_rows):
        for name in (k for k in single_row if k.startswith("Loss/")):
            assert node_row[name] == pytest.approx(single_row[name], rel=1e-5, abs=1e-6), name
    single, multi = final_weights(single_run), final_weights(node0_run)
    assert single.keys() == multi.keys()
    for key in single:
        torch.testing.assert_close(multi[key], single[key], rtol=1e-5, atol=1e-7, msg=key)

    nodes_dirs = [tmp_path / "node0", tmp_path / "node1"]
    assert [p for d in nodes_dirs for p in d.rglob("checkpoint*.pt")] == [node0_run / "ckpts" / "checkpoint.pt"]
    assert [p for d in nodes_dirs for p in d.rglob(f"{case}.log")] == [tmp_path / "node0" / case / f"{case}.log"]
    summary = (tmp_path / "node0" / case / f"{case}.log").read_text()
    assert "RankSize = 2" in summary
    assert (tmp_path / "node1" / f"{case}_node1" / "train.log").is_file()  # every node keeps its own log


def test_ranks_that_would_resume_from_different_steps_stop_with_an_error_naming_the_shared_path(scenes_dir, tmp_path):
    """Node-local run directories: rank 0 finds a checkpoint, rank 1 (its own run dir here) does not."""
    args = small_overrides(scenes_dir) + ["limit_train_batches=1", "data.val=null", "data.train.batch_size=1"]
    check_ok(launch(args + ["max_epochs=1", f"hydra.run.dir={tmp_path / 'run0'}"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "training.launch", "--config-name", "synthetic", *args, "max_epochs=2",
            f"hydra.run.dir={tmp_path}/run${{oc.env:LOCAL_RANK}}",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert time.monotonic() - start < 120
    output = result.stdout + result.stderr
    assert "starts at epoch 0, step 0 but rank 0 at epoch 1, step 0" in output, output[-3000:]
    assert "filesystem every node shares" in output

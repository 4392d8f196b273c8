"""`vggt predict --out` replaces only what it wrote: the COLMAP scene layout, --overwrite, failures mid-write,
mid-swap and a process killed mid-swap, with every byte of the user's files checked afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vggt.predict.pipeline as pipeline
import vggt.predict.staging as staging
from tests.predict.conftest import predict_args, run_cli
from tests.predict.test_predict_inputs import copy_images
from vggt.predict.ownership import MANIFEST_NAME, check_output
from vggt.predict.staging import recover_interrupted, staged_output

REPO = Path(__file__).resolve().parents[2]


def tree(root: Path) -> dict[str, str]:
    """Every entry under `root` (hidden ones too) -> sha256 of a file's bytes, or "dir"."""
    return {
        path.relative_to(root).as_posix(): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
    }


def user_part(snapshot: dict[str, str], *own: str) -> dict[str, str]:
    return {key: value for key, value in snapshot.items() if key.split("/")[0] not in own}


@pytest.fixture
def scene(tmp_path: Path, scene_images: Path) -> Path:
    """A COLMAP user's scene folder: images/, a model in sparse/0 and a note, all theirs."""
    root = tmp_path / "scene"
    copy_images(scene_images, root / "images")
    (root / "sparse" / "0").mkdir(parents=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (root / "sparse" / "0" / name).write_bytes(hashlib.sha256(name.encode()).digest() * 50)
    (root / "notes.txt").write_text("shot on a cloudy day")
    return root


def manifest_entries(out: Path) -> set[str]:
    return set(json.loads((out / MANIFEST_NAME).read_text())["entries"])


# conflicts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_user_colmap_model_beside_the_images_stops_the_run_naming_it(scene, tiny_weights, overwrite) -> None:
    before = tree(scene)
    extra = ["--overwrite"] if overwrite else []
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, *extra))
    assert result.status == 2
    assert f"{scene / 'sparse'} exists but vggt predict did not write it" in result.stderr
    assert "--export colmap" in result.stderr and f"--out {scene / 'vggt'}" in result.stderr
    assert tree(scene) == before


def test_outputs_go_beside_the_user_files_and_overwrite_replaces_all_and_only_its_own(scene, tiny_weights) -> None:
    before = tree(scene)
    first = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply,depth"))
    assert first.status == 0, first.stderr
    assert manifest_entries(scene) == {"predictions.npz", "points.ply", "depth", "confidence"}
    after_first = tree(scene)
    assert user_part(after_first, "predictions.npz", "points.ply", "depth", "confidence", MANIFEST_NAME) == before

    again = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply,depth"))
    assert again.status == 2 and "outputs of an earlier vggt predict run" in again.stderr
    assert "--overwrite" in again.stderr
    assert tree(scene) == after_first

    replaced = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "preview", "--overwrite"))
    assert replaced.status == 0, replaced.stderr
    assert manifest_entries(scene) == {"predictions.npz", "preview"}
    assert not (scene / "points.ply").exists() and not (scene / "depth").exists()  # the stale exports went
    assert user_part(tree(scene), "predictions.npz", "preview", MANIFEST_NAME) == before
    assert not [p for p in scene.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("edit", ["points.ply was modified", "depth/my_notes.txt is new"])
def test_an_output_edited_since_is_left_alone_even_with_overwrite(scene, tiny_weights, edit) -> None:
    assert run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply,depth")).status == 0
    if edit.startswith("points.ply"):
        with open(scene / "points.ply", "ab") as file:
            file.write(b"my edit")
    else:
        (scene / "depth" / "my_notes.txt").write_text("added by hand")
    before = tree(scene)
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply", "--overwrite"))
    assert result.status == 2 and f"has changed since ({edit})" in result.stderr
    assert tree(scene) == before


def test_a_file_of_the_manifest_name_that_is_not_ours_is_left_alone(scene, tiny_weights) -> None:
    (scene / MANIFEST_NAME).write_text('{"my": "settings"}')
    before = tree(scene)
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply"))
    assert result.status == 2 and "is not a manifest written by vggt predict" in result.stderr
    assert tree(scene) == before


# inputs and outputs inside each other -------------------------------------------------------------
def test_an_input_inside_an_output_that_overwrite_would_replace_is_refused(scene, tiny_weights) -> None:
    assert run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "depth")).status == 0
    before = tree(scene)
    result = run_cli(*predict_args(scene / "depth", scene, tiny_weights, "--export", "depth", "--overwrite"))
    assert result.status == 2 and f"the input {scene / 'depth'}" in result.stderr
    assert tree(scene) == before


def test_an_output_inside_the_images_folder_leaves_the_images_alone(scene, tiny_weights) -> None:
    images = scene / "images"
    before = tree(images)
    for extra in ((), ("--overwrite",)):
        result = run_cli(*predict_args(images, images / "vggt", tiny_weights, "--export", "ply", *extra))
        assert result.status == 0, result.stderr
        with np.load(images / "vggt" / "predictions.npz") as data:
            assert len(data["image_names"]) == 2  # the output folder is never read as an input
    assert user_part(tree(images), "vggt") == before


# failures ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failure_mid_write_leaves_every_byte_as_it_was(scene, tiny_weights, monkeypatch, overwrite) -> None:
    """Without --overwrite: a first run into the user's scene folder; with it: a run replacing an earlier one."""
    if overwrite:
        assert run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply")).status == 0
    before = tree(scene)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline, "write_glb", disk_full)
    extra = ["--overwrite"] if overwrite else []
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply,glb", *extra))
    assert result.status == 2 and "No space left on device" in result.stderr
    assert tree(scene) == before


@pytest.mark.parametrize(("fail_at", "error"), [(2, OSError), (5, OSError), (5, KeyboardInterrupt)])
def test_a_failure_mid_swap_is_rolled_back(scene, tiny_weights, monkeypatch, fail_at, error) -> None:
    """The swap retires 3 entries (predictions.npz, points.ply, the manifest) and installs 3: failing at the 2nd
    move is mid-retire, at the 5th mid-install."""
    assert run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "ply")).status == 0
    before = tree(scene)
    moves = []
    real_move = staging._move

    def failing_move(source: int, target: int, name: str, where: Path) -> None:
        if len(moves) < fail_at:  # the rollback's moves after the failure are not counted
            moves.append(name)
            if len(moves) == fail_at:
                raise error("injected")
        real_move(source, target, name, where)

    monkeypatch.setattr(staging, "_move", failing_move)
    args = predict_args(scene / "images", scene, tiny_weights, "--export", "ply", "--overwrite")
    result = run_cli(*args)
    if error is KeyboardInterrupt:  # one line and Ctrl-C's exit status, no traceback (vggt.cli.main)
        assert result.status == 130 and "interrupted" in result.stderr and "rolled back" in result.stderr
    else:
        assert result.status == 2
    assert len(moves) == fail_at
    assert tree(scene) == before


SWAP_ENTRIES = ("predictions.npz", "points.ply", "preview", MANIFEST_NAME)
KILLED_SWAP = """
import os, sys
from pathlib import Path
import vggt.predict.staging as staging
from tests.predict.test_predict_ownership import write_run
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
moves = []
real_move = staging._move
def dying_move(*args):
    moves.append(args)
    if len(moves) == kill_at:
        os._exit(9)  # as SIGKILL does: no finally, no cleanup
    real_move(*args)
staging._move = dying_move
write_run(out, {"predictions.npz": b"new run", "preview": None})
"""


def write_run(out: Path, entries: dict[str, bytes | None]) -> None:
    """A staged run that writes files (bytes) and folders (None) and replaces an earlier run's outputs."""
    with staged_output(out, lambda: check_output(out, dict.fromkeys(SWAP_ENTRIES, "test"), True)) as stage:
        for name, content in entries.items():
            if content is None:
                (stage / name).mkdir()
            else:
                (stage / name).write_bytes(content)


@pytest.mark.parametrize("kill_at", [2, 4])
def test_a_run_killed_mid_swap_is_rolled_back_by_the_next_one(scene, tiny_weights, kill_at: int) -> None:
    """The swap retires 2 entries (predictions.npz and the manifest; points.ply is gone) and installs 3: killed at
    the 2nd move mid-retire, at the 4th mid-install."""
    write_run(scene, {"predictions.npz": b"earlier run", "points.ply": b"earlier points"})
    (scene / "points.ply").unlink()  # a recorded output the user deleted: nothing to retire
    before = tree(scene)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", KILLED_SWAP, str(scene), str(kill_at)]
    killed = subprocess.run(command, env=env, capture_output=True, cwd=REPO)
    assert killed.returncode == 9, killed.stderr.decode()
    assert tree(scene) != before  # the killed run left its work directory and journal (and maybe moved entries)
    assert [p for p in scene.iterdir() if p.name.startswith(staging.WORK_PREFIX)]

    # the next run rolls back first, then stops: the earlier outputs are there and it has no --overwrite
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "none"))
    assert "warning: rolled back an interrupted vggt predict run" in result.stderr
    assert result.status == 2 and "outputs of an earlier vggt predict run" in result.stderr
    assert tree(scene) == before


def test_a_second_run_into_the_same_out_while_one_is_writing_stops(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out, list) as stage:
        (stage / "predictions.npz").write_bytes(b"running")
        with pytest.raises(ValueError, match="another vggt predict is writing into"):
            recover_interrupted(out)
    assert sorted(p.name for p in out.iterdir()) == ["predictions.npz", MANIFEST_NAME]


def test_without_a_journal_a_killed_run_leaves_only_a_work_directory_that_the_next_run_deletes(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user")
    leftover = out / f"{staging.WORK_PREFIX}abc" / "new"
    leftover.mkdir(parents=True)
    (leftover / "predictions.npz").write_bytes(b"half")
    recover_interrupted(out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]

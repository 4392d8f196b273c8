"""`vggt predict --out` handed over by an attacker: crafted journals, manifests and links in the work folder or the
outputs touch nothing outside what predict itself recorded (issue 19's table, one test a row), through the staging
API with a stub writer and end to end through the CLI with the tiny model."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from tests.predict.conftest import predict_args, run_cli
from tests.predict.hostile import below, snapshot, stub_run, work_folder, write_manifest_text
from tests.predict.test_predict_inputs import copy_images
from vggt.predict.ownership import MANIFEST_NAME, check_output
from vggt.predict.staging import recover_interrupted


@pytest.fixture
def victims(tmp_path: Path) -> Path:
    """A user's file and folder beside --out (tmp_path/scene), and --out itself."""
    (tmp_path / "victim.txt").write_text("the user's thesis")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.bin").write_bytes(b"\x00\x01" * 100)
    out = tmp_path / "scene"
    out.mkdir()
    return out


def quietly(run, *args) -> list[str]:
    """Run, returning the warnings it gave (which name what was left alone)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(*args)
    return [str(w.message) for w in caught]


def test_a_journal_installing_names_beside_out_deletes_nothing_there(victims: Path) -> None:
    tmp = victims.parent
    work_folder(victims, {"retire": [], "install": ["../victim.txt", "../victim"]})
    before = snapshot(tmp)
    messages = quietly(stub_run, victims, False)
    after = snapshot(tmp)
    assert below(after, "victim.txt", "victim") == below(before, "victim.txt", "victim")
    assert (victims / "predictions.npz").read_bytes() == b"new"
    assert any("journal.json" in m and "left alone" in m for m in messages), messages


def test_a_journal_installing_a_name_through_a_link_in_out_deletes_nothing_where_it_points(victims: Path) -> None:
    tmp = victims.parent
    os.symlink(tmp, victims / "s")  # out/s -> the folder holding the user's victim/ (as `s -> /` reaches any folder)
    work = work_folder(victims, {"retire": [], "install": ["s/victim"]})
    (work / "new" / "s").mkdir()  # so that new/s/victim is a name a rename can target
    before = snapshot(tmp)
    quietly(stub_run, victims, False)
    after = snapshot(tmp)
    assert below(after, "victim.txt", "victim", "scene/s") == below(before, "victim.txt", "victim", "scene/s")


def test_a_journal_retiring_a_name_beside_out_does_not_replace_it(victims: Path) -> None:
    tmp = victims.parent
    work = work_folder(victims, {"retire": ["../victim.txt"], "install": []})
    (work / "victim.txt").write_text("the attacker's text")  # old/../victim.txt
    before = snapshot(tmp)
    quietly(stub_run, victims, False)
    assert (tmp / "victim.txt").read_text() == "the user's thesis"
    assert below(snapshot(tmp), "victim.txt") == below(before, "victim.txt")


def test_a_work_folder_whose_lock_is_a_link_creates_nothing_where_it_points(victims: Path) -> None:
    tmp = victims.parent
    work = work_folder(victims)
    (work / "lock").unlink()
    os.symlink(tmp / "created_by_predict", work / "lock")
    quietly(stub_run, victims, False)
    assert not os.path.lexists(tmp / "created_by_predict")


def test_a_null_manifest_record_does_not_make_a_folder_with_a_link_predicts(victims: Path) -> None:
    tmp = victims.parent
    photos = victims / "photos"
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"jpeg" * 50)
    os.symlink("../../victim/data.bin", photos / "annexed.jpg")  # as git-annex, DVC and the HF cache lay out files
    write_manifest_text(victims, {"photos": None})
    before = snapshot(tmp)
    with pytest.raises(ValueError, match=f"{victims / MANIFEST_NAME}"):
        stub_run(victims, True)
    assert snapshot(tmp) == before


def test_a_null_manifest_record_does_not_make_a_link_to_a_user_folder_predicts(victims: Path) -> None:
    tmp = victims.parent
    os.symlink(tmp / "victim", victims / "depth")
    write_manifest_text(victims, {"depth": None})
    before = snapshot(tmp)
    with pytest.raises(ValueError, match=f"{victims / MANIFEST_NAME}"):
        stub_run(victims, True)
    assert snapshot(tmp) == before


# end to end, through the CLI ------------------------------------------------------------------------
@pytest.fixture
def scene(victims: Path, scene_images: Path) -> Path:
    copy_images(scene_images, victims / "images")
    return victims


def test_cli_a_journal_installing_names_beside_out_deletes_nothing_there(scene: Path, tiny_weights: Path) -> None:
    tmp = scene.parent
    work_folder(scene, {"retire": [], "install": ["../victim.txt", "../victim"]})
    before = snapshot(tmp)
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "none"))
    assert result.status == 0, result.stderr
    assert below(snapshot(tmp), "victim.txt", "victim", "scene/images") == below(
        before, "victim.txt", "victim", "scene/images"
    )
    assert "warning:" in result.stderr and "journal.json" in result.stderr


def test_cli_a_work_folder_whose_lock_is_a_link_creates_nothing_where_it_points(scene, tiny_weights) -> None:
    tmp = scene.parent
    work = work_folder(scene)
    (work / "lock").unlink()
    os.symlink(tmp / "created_by_predict", work / "lock")
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "none"))
    assert result.status == 0, result.stderr
    assert not os.path.lexists(tmp / "created_by_predict")


def test_cli_overwrite_with_a_null_manifest_record_keeps_a_folder_holding_a_link(scene, tiny_weights) -> None:
    tmp = scene.parent
    (scene / "photos").mkdir()
    os.symlink("../../victim/data.bin", scene / "photos" / "annexed.jpg")
    write_manifest_text(scene, {"photos": None})
    before = snapshot(tmp)
    result = run_cli(*predict_args(scene / "images", scene, tiny_weights, "--export", "none", "--overwrite"))
    assert result.status == 2 and f"{scene / MANIFEST_NAME}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(tmp) == before


# what does not check out is left alone, named ------------------------------------------------------
def test_a_journal_of_the_earlier_format_is_left_alone_saying_how_to_finish_by_hand(victims: Path) -> None:
    work = work_folder(victims, {"retire": ["predictions.npz"], "install": ["predictions.npz"]})
    (work / "old" / "predictions.npz").write_bytes(b"the earlier run's")
    (victims / "predictions.npz").write_bytes(b"the interrupted run's")
    before = snapshot(victims.parent)
    (message,) = quietly(recover_interrupted, victims)
    assert snapshot(victims.parent) == before
    assert f"{work / 'journal.json'} is of an earlier version" in message
    assert f"move the entries of {work / 'old'}" in message and f"then delete {work}" in message


@pytest.mark.parametrize("record", [3, "x", [1, 2], None])
def test_a_manifest_record_of_the_wrong_type_is_a_one_line_error_naming_the_file(victims: Path, record) -> None:
    (victims / "predictions.npz").write_bytes(b"earlier")
    write_manifest_text(victims, {"predictions.npz": record})
    with pytest.raises(ValueError) as caught:
        check_output(victims, {"predictions.npz": "always written"}, True)
    message = str(caught.value)
    assert message.startswith(f"{victims / MANIFEST_NAME} is not a manifest written by vggt predict")
    assert "'predictions.npz'" in message and "\n" not in message

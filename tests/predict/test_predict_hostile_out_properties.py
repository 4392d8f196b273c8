"""Property tests: whatever an attacker leaves in --out (files, folders, links inside and outside, crafted manifests
and journals with `..`, absolute paths, nulls, wrong types and links in every position), `check_output`,
`staged_output` and `recover_interrupted` change no byte or link outside predict's own recorded entries; and a run
killed at any rename of its swap is rolled back by the next one to exactly what --out held before.

Proved from lstat/readlink snapshots with content hashes (tests/predict/hostile.py). An entry counts as recorded
only when the generated manifest or journal holds its true fingerprint, computed here by the test's own walk.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vggt.predict.staging as staging
from tests.predict.hostile import below, snapshot, stub_run
from vggt.predict.ownership import MANIFEST_NAME, check_output
from vggt.predict.staging import WORK_PREFIX, recover_interrupted

MANIFEST_LINE = "vggt-predict-manifest/1"  # the formats as the module docstrings specify them
JOURNAL_LINE = "vggt-predict-journal/2"
PROPERTY_SETTINGS = settings(
    max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow], database=None
)

NAMES = ["a", "photos", "predictions.npz", "depth", "s"]  # user names and names predict writes
KINDS = ["file", "dir", "dir_with_link", "link_to_outside_file", "link_to_outside_dir", "link_to_root",
         "link_inside", "dangling_link"]  # fmt: skip
CRAFTED = ["..", "../outside/victim.txt", "../outside/victim", "/", "s/victim", "", ".hidden", MANIFEST_NAME,
           "a\x00b", "outside/victim"]  # fmt: skip
BAD_RECORDS = [None, 3, "x", [], [1, 2], {".": "x"}, {".": [True, 2]}, {"victim.txt": [1, 2]}, {".": None}]
JOURNAL_KINDS = ["none", "old_format", "fingerprinted", "garbage", "link", "folder"]
PART_KINDS = ["dir", "link_to_outside_dir", "missing", "file"]
LOCK_KINDS = ["file", "link_to_outside", "dangling_link", "missing", "dir"]


def true_fingerprint(path: Path) -> dict[str, list[int] | None] | None:
    """The test's own fingerprint of an entry: [size, mtime_ns] per file, None per folder, None for a link."""
    found: dict[str, list[int] | None] = {}
    for current in [path, *sorted(path.rglob("*"))] if not path.is_symlink() and path.is_dir() else [path]:
        info = current.lstat()
        key = current.relative_to(path).as_posix()
        if stat.S_ISREG(info.st_mode):
            found[key] = [info.st_size, info.st_mtime_ns]
        elif stat.S_ISDIR(info.st_mode):
            found[key] = None
        else:
            return None
    return found


def make_entry(out: Path, name: str, kind: str, root: Path) -> None:
    path = out / name
    if kind == "file":
        path.write_bytes(f"user data {name}".encode())
    elif kind in ("dir", "dir_with_link"):
        (path / "inner").mkdir(parents=True)
        (path / "inner" / "f.bin").write_bytes(b"\x00" * 7)
        if kind == "dir_with_link":
            os.symlink(root / "outside" / "victim" / "data.bin", path / "annexed")
    elif kind == "link_to_outside_file":
        os.symlink(root / "outside" / "victim.txt", path)
    elif kind == "link_to_outside_dir":
        os.symlink(root / "outside" / "victim", path)
    elif kind == "link_to_root":
        os.symlink(root, path)  # as `s -> /` reaches every folder of the filesystem
    elif kind == "link_inside":
        os.symlink(".", path)
    else:
        os.symlink(root / "outside" / "created_by_predict", path)


record_values = st.sampled_from(["honest", *range(len(BAD_RECORDS))])
manifests = st.one_of(
    st.just(None),
    st.sampled_from(["link", "not_json", "no_format"]),
    st.dictionaries(st.sampled_from(NAMES + CRAFTED), record_values, max_size=4),
)
journal_parts = st.dictionaries(st.sampled_from(NAMES + CRAFTED), record_values, max_size=3)
work_folders = st.fixed_dictionaries(
    {
        "journal": st.sampled_from(JOURNAL_KINDS),
        "retire": journal_parts,
        "install": journal_parts,
        "lock": st.sampled_from(LOCK_KINDS),
        "new": st.sampled_from(PART_KINDS),
        "old": st.sampled_from(PART_KINDS),
        "new_entries": st.lists(st.sampled_from(NAMES + ["s/victim"]), max_size=2),
        "old_entries": st.lists(st.sampled_from(NAMES), max_size=2),
        "beside_old": st.booleans(),  # an attacker's file at old/../victim.txt
    }
)
scenarios = st.fixed_dictionaries(
    {
        "entries": st.dictionaries(st.sampled_from(NAMES), st.sampled_from(KINDS), max_size=4),
        "manifest": manifests,
        "work": st.lists(work_folders, max_size=2),
        "operation": st.sampled_from(["recover", "check", "run"]),
        "overwrite": st.booleans(),
        "out_is_link": st.booleans(),
    }
)


def record(value: object, directory: Path, name: str) -> object:
    """A manifest or journal record of `name`: its true fingerprint ("honest"; a made-up one for a crafted name,
    which is joined to no path here) or one of the crafted bad ones."""
    if value != "honest":
        return BAD_RECORDS[value]
    plain = name not in ("", ".", "..") and "/" not in name and "\0" not in name
    found = true_fingerprint(directory / name) if plain and os.path.lexists(directory / name) else None
    return {".": [1, 1]} if found is None else found


def build(root: Path, scenario: dict) -> tuple[Path, set[str]]:
    """Lay the scenario out under `root`: (the --out to pass, the names the generated records truly fingerprint)."""
    (root / "outside" / "victim").mkdir(parents=True)
    (root / "outside" / "victim.txt").write_text("the user's thesis")
    (root / "outside" / "victim" / "data.bin").write_bytes(b"\x01" * 33)
    out = root / "out"
    out.mkdir()
    for name, kind in scenario["entries"].items():
        make_entry(out, name, kind, root)
    claimable: set[str] = set()

    def honest(value: object, name: str) -> object:
        """A record of the entry `name` of --out; its true fingerprint makes it predict's to replace."""
        written = record(value, out, name)
        if value == "honest" and written != {".": [1, 1]}:
            claimable.add(name)
        return written

    manifest = scenario["manifest"]
    if manifest == "link":
        os.symlink(root / "outside" / "victim.txt", out / MANIFEST_NAME)
    elif manifest == "not_json":
        (out / MANIFEST_NAME).write_text("{not json")
    elif manifest == "no_format":
        (out / MANIFEST_NAME).write_text(json.dumps({"entries": {}}))
    elif manifest is not None:
        entries = {name: honest(value, name) for name, value in manifest.items()}
        (out / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_LINE, "entries": entries}))
        claimable.add(MANIFEST_NAME)
    for index, spec in enumerate(scenario["work"]):
        work = out / f"{WORK_PREFIX}{index}"
        work.mkdir()
        for part in ("new", "old"):
            kind = spec[part]
            if kind == "dir":
                (work / part).mkdir()
            elif kind == "link_to_outside_dir":
                os.symlink(root / "outside" / "victim", work / part)
            elif kind == "file":
                (work / part).write_text("not a folder")
        for part, names in (("new", spec["new_entries"]), ("old", spec["old_entries"])):
            for name in names:
                if spec[part] == "dir":
                    try:
                        (work / part / name).parent.mkdir(parents=True, exist_ok=True)
                    except FileExistsError:  # "s" and "s/victim": a file already holds the folder's name
                        continue
                    if not os.path.lexists(work / part / name):
                        (work / part / name).write_text("the attacker's text")
        if spec["beside_old"]:
            (work / "victim.txt").write_text("the attacker's text")
        lock = spec["lock"]
        if lock == "file":
            (work / "lock").write_bytes(b"")
        elif lock == "link_to_outside":
            os.symlink(root / "outside" / "victim.txt", work / "lock")
        elif lock == "dangling_link":
            os.symlink(root / "outside" / "created_by_predict", work / "lock")
        elif lock == "dir":
            (work / "lock").mkdir()
        journal = spec["journal"]
        if journal == "old_format":
            (work / "journal.json").write_text(
                json.dumps({"retire": list(spec["retire"]), "install": list(spec["install"])})
            )
        elif journal == "fingerprinted":
            parts = {
                "retire": {name: record(value, work / "old", name) for name, value in spec["retire"].items()},
                "install": {name: honest(value, name) for name, value in spec["install"].items()},
            }
            (work / "journal.json").write_text(json.dumps({"format": JOURNAL_LINE, **parts}))
        elif journal == "garbage":
            (work / "journal.json").write_bytes(b"\xff\xfe")
        elif journal == "link":
            os.symlink(root / "outside" / "victim.txt", work / "journal.json")
        elif journal == "folder":
            (work / "journal.json").mkdir()
    if scenario["out_is_link"]:
        os.symlink(out, root / "out_link")
        return root / "out_link", claimable
    return out, claimable


def left_alone_or_gone(before: dict, after: dict, work: str) -> bool:
    """A work folder afterwards: deleted, or as it was (plus, at most, the empty lock file a recovery creates)."""
    mine_after = below(after, f"out/{work}")
    if not mine_after:
        return True
    mine_before = below(before, f"out/{work}")
    lock = f"out/{work}/lock"
    if lock in mine_after and lock not in mine_before:
        mine_after = {key: value for key, value in mine_after.items() if key != lock}
    return mine_after == mine_before


@PROPERTY_SETTINGS
@given(scenario=scenarios)
def test_no_byte_or_link_outside_predicts_recorded_entries_changes(scenario: dict, tmp_path_factory) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    try:
        out, claimable = build(root, scenario)
        before = snapshot(root)
        written = {"predictions.npz": b"new run", "depth": None}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if scenario["operation"] == "recover":
                    recover_interrupted(out)
                elif scenario["operation"] == "check":
                    check_output(out, dict.fromkeys(written, "test"), scenario["overwrite"])
                else:
                    stub_run(out, scenario["overwrite"], written)
                succeeded = True
            except ValueError as err:  # a refusal, as one line naming what stops it
                assert "\n" not in str(err)
                succeeded = False
        after = snapshot(root)
        outside = [key for key in before if not key.startswith("out/") and key != "out"]
        assert {key: after.get(key) for key in outside} == {key: before[key] for key in outside}
        assert [key for key in after if key not in before and not key.startswith("out/")] == []
        top = {key.split("/")[1] for key in before if key.startswith("out/")}
        for name in top - claimable:
            if name.startswith(WORK_PREFIX):
                assert left_alone_or_gone(before, after, name), name
            else:
                assert below(after, f"out/{name}") == below(before, f"out/{name}"), name
        if scenario["operation"] == "run" and succeeded:
            assert (root / "out" / "predictions.npz").read_bytes() == b"new run"
    finally:
        shutil.rmtree(root)


# a kill at the k-th rename -------------------------------------------------------------------------
user_entries = st.dictionaries(
    st.sampled_from(["notes", "photos", "link", "sparse"]), st.sampled_from(KINDS), max_size=3
)
run_entries = st.dictionaries(
    st.sampled_from(["predictions.npz", "depth", "points.ply"]), st.sampled_from([b"one", b"two", None]), min_size=1
)


def killed_at(out: Path, k: int, entries: dict) -> int:
    """Run stub_run(out, overwrite) in a forked child that dies (as by SIGKILL: no cleanup) at its k-th rename;
    the child's exit status (9 when killed, 0 when the run finished first)."""
    child = os.fork()
    if child == 0:
        status = 3
        try:
            renames = []
            real_rename = os.rename

            def dying_rename(*args, **kwargs) -> None:
                renames.append(args)
                if len(renames) == k:
                    os._exit(9)
                real_rename(*args, **kwargs)

            os.rename = dying_rename
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stub_run(out, True, entries)
            status = 0
        finally:
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill is a forked child")
@settings(max_examples=100, deadline=4000, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(user=user_entries, earlier=run_entries, later=run_entries, k=st.integers(1, 10), out_is_link=st.booleans())
def test_a_run_killed_at_any_rename_is_rolled_back_to_exactly_what_out_held(
    user: dict, earlier: dict, later: dict, k: int, out_is_link: bool, tmp_path_factory
) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    try:
        (root / "outside" / "victim").mkdir(parents=True)
        (root / "outside" / "victim.txt").write_text("the user's thesis")
        (root / "outside" / "victim" / "data.bin").write_bytes(b"\x01" * 33)
        (root / "out").mkdir()
        for name, kind in user.items():
            make_entry(root / "out", name, kind, root)
        out = root / "out"
        if out_is_link:
            os.symlink(out, root / "out_link")
            out = root / "out_link"
        stub_run(out, False, earlier)  # the earlier run, recorded in the manifest
        before = snapshot(root)
        status = killed_at(out, k, later)
        assert status in (0, 9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recover_interrupted(out)
        after = snapshot(root)
        if status == 9:
            assert after == before
        else:
            own = {"predictions.npz", "depth", "points.ply", MANIFEST_NAME}
            keep = [key for key in before if key.split("/")[:2][-1] not in own]
            assert {key: after.get(key) for key in keep} == {key: before[key] for key in keep}
        assert not [path for path in (root / "out").iterdir() if path.name.startswith(staging.WORK_PREFIX)]
    finally:
        shutil.rmtree(root)

"""Helpers for the hostile --out tests: lstat snapshots of a tree and the pieces an attacker leaves in --out."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from vggt.predict.ownership import MANIFEST_NAME, check_output
from vggt.predict.staging import WORK_PREFIX, staged_output

MANIFEST_FORMAT_LINE = "vggt-predict-manifest/1"


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry at and below `root`, never through a link: a link's target, a folder's mode, a file's mode,
    inode, modification time and sha256."""
    found: dict[str, tuple[object, ...]] = {}
    pending = [root]
    while pending:
        path = pending.pop()
        info = path.lstat()
        key = path.relative_to(root).as_posix()
        if stat.S_ISLNK(info.st_mode):
            found[key] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            found[key] = ("dir", info.st_mode)
            pending.extend(path.iterdir())
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[key] = ("file", info.st_mode, info.st_ino, info.st_mtime_ns, digest)
    return found


def below(snap: Mapping[str, tuple[object, ...]], *prefixes: str) -> dict[str, tuple[object, ...]]:
    """The part of a snapshot at and below any of `prefixes` (paths relative to its root)."""
    return {
        key: value
        for key, value in snap.items()
        if any(key == p or key.startswith(p.rstrip("/") + "/") for p in prefixes)
    }


def work_folder(out: Path, journal: object | None = None, suffix: str = "x") -> Path:
    """An interrupted run's work folder as the attacker leaves it: new/, old/, a lock and optionally a journal."""
    work = out / f"{WORK_PREFIX}{suffix}"
    (work / "new").mkdir(parents=True)
    (work / "old").mkdir()
    (work / "lock").write_bytes(b"")
    if journal is not None:
        (work / "journal.json").write_text(json.dumps(journal))
    return work


def write_manifest_text(out: Path, entries: object) -> None:
    (out / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_FORMAT_LINE, "entries": entries}))


def stub_run(out: Path, overwrite: bool, entries: Mapping[str, bytes | None] | None = None) -> None:
    """A predict run without a model: writes `entries` (bytes: a file, None: a folder; by default a
    predictions.npz) through the staging."""
    entries = {"predictions.npz": b"new"} if entries is None else entries
    planned = dict.fromkeys(entries, "test")
    with staged_output(out, lambda: check_output(out, planned, overwrite)) as stage:
        for name, content in entries.items():
            if content is None:
                (stage / name).mkdir()
            else:
                (stage / name).write_bytes(content)

"""What in an output directory `vggt predict` may replace: its manifest, and the proof that an entry is still its own.

Predict records every top-level entry it writes in OUT/vggt_predict_manifest.json, with the size and modification
time (ns) of each file under it. An existing entry is predict's to replace only when the manifest lists it and its
files are still exactly the recorded ones. A same-named entry the manifest does not list (a user's `sparse/` or an
output of a version without manifests), or a recorded output the user has since edited or added to, is a conflict:
the run stops before any work, whatever the flags. Everything else in OUT is never looked into.

Nothing read is trusted: a manifest names only plain entries directly in OUT, each with a list of plain files and
folders; a symbolic link, or a folder holding one, is never predict's (it never writes them), so no record proves
it; and no name below OUT is looked up through a link (nofollow.py).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from vggt.predict.nofollow import MAX_DEPTH, entry_mode, exists, opened_directory, read_file

MANIFEST_NAME = "vggt_predict_manifest.json"
MANIFEST_FORMAT = "vggt-predict-manifest/1"

Fingerprint = dict[str, "list[int] | None"]  # path below the entry ("." for itself) -> [size, mtime_ns] or None (dir)


def fingerprint(dir_fd: int, name: str) -> Fingerprint | None:
    """Every file ([size, mtime_ns]) and folder (None) at and below the entry `name` of the directory `dir_fd`;
    None when it is or holds anything else (a symbolic link, a socket) or is deeper than predict ever writes, as
    predict never records such an entry as its own."""
    found: Fingerprint = {}
    return found if _walk(dir_fd, name, ".", found, 0) else None


def _walk(dir_fd: int, name: str, key: str, found: Fingerprint, depth: int) -> bool:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISREG(info.st_mode):
        found[key] = [info.st_size, info.st_mtime_ns]
        return True
    if not stat.S_ISDIR(info.st_mode) or depth > MAX_DEPTH:
        return False
    found[key] = None
    with opened_directory(name, dir_fd) as inner:
        children = sorted(os.listdir(inner))
        return all(
            _walk(inner, child, child if key == "." else f"{key}/{child}", found, depth + 1) for child in children
        )


def is_fingerprint(value: object) -> bool:
    """Whether `value` (read from a manifest or journal) has the form fingerprint() returns, None excluded."""
    return (
        isinstance(value, dict)
        and "." in value
        and all(
            isinstance(key, str)
            and (
                record is None or isinstance(record, list) and len(record) == 2 and all(type(n) is int for n in record)
            )
            for key, record in value.items()
        )
    )


def write_manifest(dir_fd: int, names: Iterable[str]) -> None:
    """Record the entries `names` of the directory `dir_fd` (as they are now) in its manifest."""
    entries = {name: fingerprint(dir_fd, name) for name in sorted(names)}
    links = [name for name, found in entries.items() if found is None]
    if links:
        raise ValueError(f"{links[0]} is or holds a symbolic link or special file, which vggt predict never writes")
    text = json.dumps({"format": MANIFEST_FORMAT, "entries": entries}, indent=1) + "\n"
    descriptor = os.open(MANIFEST_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def plain_name(name: object) -> bool:
    """A name a manifest may record: one visible path component other than the manifest's own."""
    return (
        isinstance(name, str)
        and name not in ("", MANIFEST_NAME)
        and not name.startswith(".")
        and "/" not in name
        and os.sep not in name
        and "\0" not in name
    )


def _manifest_problem(record: object) -> str | None:
    """Why `record` (a manifest's parsed JSON) is not one write_manifest wrote, or None."""
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        return f'no "format": "{MANIFEST_FORMAT}" line'
    entries = record.get("entries")
    if not isinstance(entries, dict):
        return 'no "entries" record'
    for name, found in entries.items():
        if not plain_name(name):
            return f"it names {name!r}, not an entry directly in this folder"
        if not is_fingerprint(found):
            return f"its record of {name!r} is not a list of files and folders"
    return None


def read_manifest(out: Path, out_fd: int) -> dict[str, Fingerprint]:
    """The entries an earlier run recorded in OUT (open as `out_fd`; {} without a manifest); a file of that name
    that is not one of ours is an error, as it may be the user's."""
    if entry_mode(out_fd, MANIFEST_NAME) is None:
        return {}
    try:
        record = json.loads(read_file(out_fd, MANIFEST_NAME))
        problem = _manifest_problem(record)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"unreadable: {err}"
    if problem is not None:
        raise ValueError(
            f"{out / MANIFEST_NAME} is not a manifest written by vggt predict ({problem}), so it may be yours and "
            "is left alone; move it away or choose another --out"
        )
    return record["entries"]


def _difference(name: str, recorded: Fingerprint, found: Fingerprint | None) -> str:
    """A short reason why the entry `name` no longer matches its record."""
    if found is None:
        return f"{name} is or holds a symbolic link or special file"
    added = sorted(set(found) - set(recorded))
    removed = sorted(set(recorded) - set(found))
    changed = sorted(key for key in set(found) & set(recorded) if found[key] != recorded[key])
    for label, keys in (("is new", added), ("is gone", removed), ("was modified", changed)):
        if keys:
            return f"{Path(name, keys[0]).as_posix()} {label}"
    return "it differs from the record"


def _inside(path: Path, entry: Path) -> bool:
    return path == entry or entry in path.parents


def check_output(out: Path, planned: Mapping[str, str], overwrite: bool, inputs: Sequence[Path] = ()) -> list[str]:
    """The recorded entries of an earlier run that this run replaces, or a ValueError naming what stops it.

    `planned` maps each entry this run may write to what writes it (e.g. "sparse" -> "--export colmap"); `inputs`
    are the files the run reads, which must not lie in an entry it would replace.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory; pass a directory path")
    if not out.is_dir():
        return []
    with opened_directory(out) as out_fd:  # --out itself may be a link; nothing below it is followed
        recorded = read_manifest(out, out_fd)
        existing = {name for name in recorded if exists(out_fd, name)}
        found = {name: fingerprint(out_fd, name) for name in existing}
        taken = {name for name in planned if name != MANIFEST_NAME and exists(out_fd, name)}
    changed = {
        name: _difference(name, recorded[name], found[name]) for name in existing if found[name] != recorded[name]
    }
    for name, source in planned.items():
        entry = out / name
        if name in taken and name not in recorded:
            raise ValueError(
                f"{entry} exists but vggt predict did not write it (it is not in {out / MANIFEST_NAME}; outputs of "
                "versions without manifests count as not written), so it is left alone, with or without "
                f"--overwrite. This run would write {name} ({source}): choose another --out (e.g. --out "
                f"{out / 'vggt'}), move {entry} away, or drop what writes it"
            )
    if not existing:
        return []
    if changed:
        name, why = sorted(changed.items())[0]
        raise ValueError(
            f"{out / name} was written by an earlier vggt predict run but has changed since ({why}), so it is left "
            f"alone, with or without --overwrite: move or delete it yourself, or choose another --out"
        )
    if not overwrite:
        raise ValueError(
            f"{out} holds the outputs of an earlier vggt predict run ({', '.join(sorted(existing))}); pass "
            "--overwrite to replace all of them (nothing else in it is touched), or choose another --out"
        )
    for path in inputs:
        resolved = Path(path).resolve()
        for name in sorted(existing):
            if _inside(resolved, (out / name).resolve()):
                raise ValueError(
                    f"the input {path} lies in {out / name}, an output of an earlier run that --overwrite would "
                    "replace; copy it somewhere else first or choose another --out"
                )
    return sorted(existing)

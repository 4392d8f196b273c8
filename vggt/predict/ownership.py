"""What in an output directory `vggt predict` may replace: its manifest, and the proof that an entry is still its own.

Predict records every top-level entry it writes in OUT/vggt_predict_manifest.json, with the size and modification
time (ns) of each file under it. An existing entry is predict's to replace only when the manifest lists it and its
files are still exactly the recorded ones. A same-named entry the manifest does not list (a user's `sparse/` or an
output of a version without manifests), or a recorded output the user has since edited or added to, is a conflict:
the run stops before any work, whatever the flags. Everything else in OUT is never looked into.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

MANIFEST_NAME = "vggt_predict_manifest.json"
MANIFEST_FORMAT = "vggt-predict-manifest/1"

Fingerprint = dict[str, "list[int] | None"]  # path below the entry ("." for itself) -> [size, mtime_ns] or None (dir)


def fingerprint(path: Path) -> Fingerprint | None:
    """Every file ([size, mtime_ns]) and folder (None) at and below `path`; None when `path` is or holds anything
    else (a symbolic link, a socket), which predict never writes."""
    found: Fingerprint = {}
    pending = [path]
    while pending:
        current = pending.pop()
        info = current.lstat()
        key = current.relative_to(path).as_posix()
        if stat.S_ISREG(info.st_mode):
            found[key] = [info.st_size, info.st_mtime_ns]
        elif stat.S_ISDIR(info.st_mode):
            found[key] = None
            pending.extend(current.iterdir())
        else:
            return None
    return found


def write_manifest(directory: Path, names: Iterable[str]) -> None:
    """Record the entries `names` of `directory` (as they are now) in its manifest."""
    entries = {name: fingerprint(directory / name) for name in sorted(names)}
    text = json.dumps({"format": MANIFEST_FORMAT, "entries": entries}, indent=1)
    (directory / MANIFEST_NAME).write_text(text + "\n")


def _plain_name(name: object) -> bool:
    """A name a manifest may record: one visible path component other than the manifest's own."""
    return (
        isinstance(name, str)
        and name not in ("", MANIFEST_NAME)
        and not name.startswith(".")
        and "/" not in name
        and os.sep not in name
    )


def read_manifest(out: Path) -> dict[str, Fingerprint]:
    """The entries an earlier run recorded in OUT ({} without a manifest); a file of that name that is not one of
    ours is an error, as it may be the user's."""
    path = out / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        record = None
    entries = record.get("entries") if isinstance(record, dict) and record.get("format") == MANIFEST_FORMAT else None
    if not isinstance(entries, dict) or not all(map(_plain_name, entries)):
        raise ValueError(
            f"{path} is not a manifest written by vggt predict, so it may be yours and is left alone; move it away "
            "or choose another --out"
        )
    return entries


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
    recorded = read_manifest(out)
    existing = {name for name in recorded if (out / name).exists() or (out / name).is_symlink()}
    found = {name: fingerprint(out / name) for name in existing}
    changed = {
        name: _difference(name, recorded[name], found[name]) for name in existing if found[name] != recorded[name]
    }
    for name, source in planned.items():
        entry = out / name
        if name == MANIFEST_NAME or not (entry.exists() or entry.is_symlink()):
            continue
        if name not in recorded:
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

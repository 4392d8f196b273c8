"""All-or-nothing writes into an output directory that may hold the user's files (ownership.py says what is ours).

A run writes its entries into a hidden work directory, OUT/.vggt_predict.partial-XXXX/new. Once all are there the
swap begins: journal.json (the entries to retire and to install) is written and synced, the earlier run's recorded
entries move into .../old, the new ones and the new manifest into OUT, and deleting the journal commits; then the
work directory goes. An exception or Ctrl-C at any point before the commit rolls back at once, so OUT holds exactly
what it held before. A killed process (SIGKILL, power loss) cannot clean up: killed while writing it leaves the work
directory; killed mid-swap it also leaves the journal, and OUT may hold some new entries while some old ones wait
in the work directory. The next run on OUT (or `recover_interrupted`) rolls such a journal back and deletes the
work directory before anything else. Only entries named in the journal are ever moved; the rest of OUT is not.
One run at a time per OUT: each run locks its work directory, and a run that meets a locked one stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from vggt.predict.ownership import MANIFEST_NAME, write_manifest

WORK_PREFIX = ".vggt_predict.partial-"
JOURNAL = "journal.json"
LOCK = "lock"


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` and those of its ancestors that do not exist yet, outermost first."""
    missing = []
    for candidate in (path.resolve(), *path.resolve().parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing[::-1]


def _sync_directory(path: Path) -> None:
    """Make the renames inside `path` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _move(source: Path, target: Path) -> None:
    """Rename, never over an existing entry (the checks before the swap make that impossible; this is the guard)."""
    if os.path.lexists(target):
        raise FileExistsError(f"{target} appeared while vggt predict was writing; it is left alone")
    os.rename(source, target)


def _lock(work: Path) -> int:
    """An exclusive lock on `work` for as long as the returned descriptor is open; a live holder is an error."""
    descriptor = os.open(work / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ValueError(
            f"another vggt predict is writing into {work.parent} ({work}); wait for it to finish or pick another --out"
        ) from None
    return descriptor


def _write_journal(work: Path, retire: list[str], install: list[str]) -> None:
    temporary = work / f"{JOURNAL}.tmp"
    with open(temporary, "w") as file:
        json.dump({"retire": retire, "install": install}, file)
        file.flush()
        os.fsync(file.fileno())
    os.rename(temporary, work / JOURNAL)
    _sync_directory(work)


def _roll_back(out: Path, work: Path) -> None:
    """Undo the swap in work's journal: installed entries back into new/, retired ones back into OUT. Idempotent."""
    journal = work / JOURNAL
    try:
        record = json.loads(journal.read_text())
        retire, install = list(record["retire"]), list(record["install"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"cannot read {journal} ({err}), left by an interrupted vggt predict; {out} may hold a mix of two runs: "
            f"the earlier run's entries are in {work / 'old'}, the new ones in {out}"
        ) from err
    for name in install:  # an entry is either still in new/ or already in OUT: renames are atomic
        if not os.path.lexists(work / "new" / name) and os.path.lexists(out / name):
            os.rename(out / name, work / "new" / name)
    for name in retire:
        if os.path.lexists(work / "old" / name):
            os.rename(work / "old" / name, out / name)
    _sync_directory(out)
    journal.unlink()


def recover_interrupted(out: Path) -> None:
    """Roll back and delete what killed runs left in OUT (see the module docstring); a live run's is an error."""
    if not out.is_dir():
        return
    for work in sorted(out.glob(f"{WORK_PREFIX}*")):
        if work.is_symlink() or not work.is_dir():
            continue
        descriptor = _lock(work)
        try:
            if (work / JOURNAL).exists():
                _roll_back(out, work)
                warnings.warn(
                    f"rolled back an interrupted vggt predict run in {out}: it holds what it held before", stacklevel=2
                )
            shutil.rmtree(work)
        finally:
            os.close(descriptor)


def _swap(out: Path, work: Path, retire: list[str]) -> None:
    """Replace the entries `retire` (and the old manifest) of OUT by everything in work/new plus a new manifest."""
    stage = work / "new"
    written = sorted(path.name for path in stage.iterdir())
    write_manifest(stage, written)
    install = [*written, MANIFEST_NAME]  # the manifest last: while it is old, the old one still describes OUT
    retire = [*retire, *([MANIFEST_NAME] if os.path.lexists(out / MANIFEST_NAME) else [])]
    (work / "old").mkdir()
    _write_journal(work, retire, install)
    for name in retire:
        _move(out / name, work / "old" / name)
    for name in install:
        _move(stage / name, out / name)
    _sync_directory(out)
    (work / JOURNAL).unlink()  # the commit


@contextlib.contextmanager
def staged_output(out: Path, check: Callable[[], list[str]]) -> Iterator[Path]:
    """Yield an empty directory to write into; when the block succeeds, its entries replace in OUT the entries
    `check()` returns (an earlier run's, proven predict's), all or nothing. `check` runs again right before the
    swap, so a conflict that appeared during the run still stops it. OUT and its parents are created as needed
    and removed again, if still empty, after a failure."""
    recover_interrupted(out)
    check()
    created = _missing_ancestors(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=out))
    descriptor = _lock(work)
    (work / "new").mkdir()
    committed = False
    try:
        yield work / "new"
        _swap(out, work, check())
        committed = True
    finally:
        try:
            if (work / JOURNAL).exists():
                _roll_back(out, work)  # failed mid-swap: put everything back before the error travels on
            shutil.rmtree(work, ignore_errors=True)
        finally:
            os.close(descriptor)
        if not committed:
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    directory.rmdir()

"""All-or-nothing writes into an output directory that may hold the user's files (ownership.py says what is ours).

A run writes its entries into a hidden work directory, OUT/.vggt_predict.partial-XXXX/new. Once all are there the
swap begins: journal.json (the entries to retire and to install, each with its fingerprint) is written and synced,
the earlier run's recorded entries move into .../old, the new ones and the new manifest into OUT, and deleting the
journal commits; then the work directory goes. An exception or Ctrl-C at any point before the commit rolls back at
once, so OUT holds exactly what it held before. A killed process (SIGKILL, power loss) cannot clean up: killed
while writing it leaves the work directory; killed mid-swap it also leaves the journal, and OUT may hold some new
entries while some old ones wait in the work directory. The next run on OUT (or `recover_interrupted`) rolls such a
journal back and deletes the work directory before anything else.

An --out may come from someone else, so a journal proves nothing by itself: it may name only plain entries
directly in OUT, and an entry moves back only when its fingerprint is the one the journal recorded for it (which
also means it is no link). A work directory whose journal, lock, new/ or old/ does not check out, or a journal
of an earlier version (no fingerprints), is left alone with all it names, in one warning that says how to finish
by hand. No name below OUT is followed through a link (nofollow.py); OUT itself may be one.
One run at a time per OUT: each run locks its work directory, and a run that meets a locked one stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from vggt.predict.nofollow import exists, opened_directory, read_file, remove
from vggt.predict.ownership import MANIFEST_NAME, Fingerprint, fingerprint, is_fingerprint, plain_name, write_manifest

WORK_PREFIX = ".vggt_predict.partial-"
JOURNAL = "journal.json"
JOURNAL_FORMAT = "vggt-predict-journal/2"
LOCK = "lock"


class LeftAlone(Exception):
    """A work directory that does not check out; the message names it and how to finish by hand."""


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` and those of its ancestors that do not exist yet, outermost first."""
    missing = []
    for candidate in (path.resolve(), *path.resolve().parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing[::-1]


def _move(source: int, target: int, name: str, where: Path) -> None:
    """Rename `name` from the directory `source` into `target` (`where`, for the message), never over an existing
    entry (the checks before make that impossible; this is the guard)."""
    if exists(target, name):
        raise FileExistsError(f"{where / name} appeared while vggt predict was writing; it is left alone")
    os.rename(name, name, src_dir_fd=source, dst_dir_fd=target)


def _lock(work_fd: int, work: Path, create: bool) -> int:
    """An exclusive lock on `work` for as long as the returned descriptor is open; a live holder is an error, a
    lock that is a link or no plain file leaves `work` alone. `create`: the lock must be new (our own `work`)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_EXCL if create else 0)
    try:
        descriptor = os.open(LOCK, flags, 0o644, dir_fd=work_fd)
    except OSError as err:
        raise LeftAlone(
            f"{work / LOCK} cannot be opened as a plain file ({err.strerror}), so {work} is left alone"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise LeftAlone(f"{work / LOCK} is not a plain file, so {work} is left alone")
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ValueError(
            f"another vggt predict is writing into {work.parent} ({work}); wait for it to finish or pick another --out"
        ) from None
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _write_journal(work_fd: int, record: dict[str, object]) -> None:
    temporary = f"{JOURNAL}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=work_fd)
    with os.fdopen(descriptor, "w") as file:
        json.dump(record, file)
        file.flush()
        os.fsync(file.fileno())
    os.rename(temporary, JOURNAL, src_dir_fd=work_fd, dst_dir_fd=work_fd)
    os.fsync(work_fd)


def _by_hand(out: Path, work: Path, why: str) -> LeftAlone:
    """The error for a journal that does not check out: what is left alone and how to finish by hand."""
    return LeftAlone(
        f"{work / JOURNAL} {why}, so {work} and everything it names are left alone. It was left by an interrupted "
        f'vggt predict; to finish by hand, delete from {out} the entries it lists under "install" that are not in '
        f"{work / 'new'} (the interrupted run's), move the entries of {work / 'old'} (the earlier run's) back into "
        f"{out}, then delete {work}"
    )


def _read_journal(out: Path, work: Path, work_fd: int) -> tuple[dict[str, Fingerprint], dict[str, Fingerprint]]:
    """(retire, install) of work's journal: entry name -> fingerprint; LeftAlone unless every part checks out."""
    try:
        record = json.loads(read_file(work_fd, JOURNAL))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _by_hand(out, work, f"cannot be read ({err})") from None
    if isinstance(record, dict) and "format" not in record and isinstance(record.get("install"), list):
        raise _by_hand(
            out, work, "is of an earlier version of vggt predict, without the fingerprints that prove what it moved"
        )
    if not isinstance(record, dict) or record.get("format") != JOURNAL_FORMAT:
        raise _by_hand(out, work, f'has no "format": "{JOURNAL_FORMAT}" line')
    parts = record.get("retire"), record.get("install")
    for part in parts:
        if not isinstance(part, dict):
            raise _by_hand(out, work, 'has no "retire" and "install" records')
        for name, found in part.items():
            if name != MANIFEST_NAME and not plain_name(name):
                raise _by_hand(out, work, f"names {name!r}, not an entry directly in {out}")
            if not is_fingerprint(found):
                raise _by_hand(out, work, f"has no list of the files and folders of {name!r}")
    return parts


def _matches(dir_fd: int, name: str, recorded: Fingerprint) -> bool:
    try:
        return fingerprint(dir_fd, name) == recorded
    except OSError:
        return False


def _roll_back(out: Path, out_fd: int, work: Path, work_fd: int) -> None:
    """Undo the swap in work's journal: installed entries back into new/, retired ones back into OUT, each only
    when it is what the journal recorded, and all or none. Idempotent; LeftAlone (nothing moved) otherwise."""
    retire, install = _read_journal(out, work, work_fd)
    with contextlib.ExitStack() as stack:
        try:
            new_fd = stack.enter_context(opened_directory("new", work_fd))
            old_fd = stack.enter_context(opened_directory("old", work_fd))
        except OSError as err:
            raise _by_hand(out, work, f"comes without folders new/ and old/ ({err.strerror})") from None
        back = [name for name in install if not exists(new_fd, name) and exists(out_fd, name)]  # already installed
        restore = [name for name in retire if exists(old_fd, name)]  # already retired
        problems = [
            f"{out / name} is not what it installed" for name in back if not _matches(out_fd, name, install[name])
        ]
        problems += [
            f"{work / 'old' / name} is not what it retired"
            for name in restore
            if not _matches(old_fd, name, retire[name])
        ]
        problems += [f"{out / name} is in the way" for name in restore if exists(out_fd, name) and name not in back]
        if problems:
            raise _by_hand(out, work, f"does not check out ({'; '.join(problems)})")
        for name in back:
            _move(out_fd, new_fd, name, work / "new")
        for name in restore:
            _move(old_fd, out_fd, name, out)
    os.fsync(out_fd)
    os.unlink(JOURNAL, dir_fd=work_fd)


def _recover(out: Path, out_fd: int, name: str) -> bool:
    """Roll back (when it has a journal) and delete the work directory `name`; whether it had a journal."""
    work = out / name
    with contextlib.ExitStack() as stack:
        try:
            work_fd = stack.enter_context(opened_directory(name, out_fd))
        except OSError:
            raise LeftAlone(f"{work} is not a folder (a link or a file), so it is left alone") from None
        stack.callback(os.close, _lock(work_fd, work, create=False))
        journal = exists(work_fd, JOURNAL)
        if journal:
            _roll_back(out, out_fd, work, work_fd)
        try:
            remove(out_fd, name)
        except OSError as err:
            raise LeftAlone(f"{work} could not be deleted ({err}); delete it yourself") from None
    return journal


def recover_interrupted(out: Path) -> None:
    """Roll back and delete what killed runs left in OUT (see the module docstring); a live run's is an error, and
    one warning names whatever does not check out, which is left alone."""
    if not out.is_dir():
        return
    rolled_back, left_alone = False, []
    with opened_directory(out) as out_fd:
        for name in sorted(entry for entry in os.listdir(out_fd) if entry.startswith(WORK_PREFIX)):
            try:
                rolled_back |= _recover(out, out_fd, name)
            except LeftAlone as err:
                left_alone.append(str(err))
    if rolled_back:
        warnings.warn(
            f"rolled back an interrupted vggt predict run in {out}: it holds what it held before", stacklevel=2
        )
    if left_alone:
        warnings.warn(" ".join(left_alone), stacklevel=2)


def _fingerprints(where: Path, dir_fd: int, names: list[str]) -> dict[str, Fingerprint]:
    found = {name: fingerprint(dir_fd, name) for name in names}
    for name, record in found.items():
        if record is None:
            raise ValueError(
                f"{where / name} is or holds a symbolic link, which vggt predict never writes; nothing was replaced"
            )
    return found


def _swap(out: Path, out_fd: int, work: Path, work_fd: int, new_fd: int, retire: list[str]) -> None:
    """Replace the entries `retire` (and the old manifest) of OUT by everything in work/new plus a new manifest."""
    written = sorted(os.listdir(new_fd))
    write_manifest(new_fd, written)
    install = [*written, MANIFEST_NAME]  # the manifest last: while it is old, the old one still describes OUT
    retire = [*retire, *([MANIFEST_NAME] if exists(out_fd, MANIFEST_NAME) else [])]
    os.mkdir("old", dir_fd=work_fd)
    with opened_directory("old", work_fd) as old_fd:
        journal = {
            "format": JOURNAL_FORMAT,
            "retire": _fingerprints(out, out_fd, retire),
            "install": _fingerprints(work / "new", new_fd, install),
        }
        _write_journal(work_fd, journal)
        for name in retire:
            _move(out_fd, old_fd, name, work / "old")
        for name in install:
            _move(new_fd, out_fd, name, out)
    os.fsync(out_fd)
    os.unlink(JOURNAL, dir_fd=work_fd)  # the commit


def _make_work_directory(out_fd: int) -> str:
    while True:
        name = f"{WORK_PREFIX}{secrets.token_hex(4)}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=out_fd)
            return name


def _clean_up(out: Path, out_fd: int, work: Path, work_fd: int) -> None:
    """After the block: roll back a swap that failed midway (before the error travels on), delete the work
    directory; a rollback that does not check out leaves it, with a warning."""
    if exists(work_fd, JOURNAL):
        try:
            _roll_back(out, out_fd, work, work_fd)
        except LeftAlone as err:
            warnings.warn(str(err), stacklevel=4)
            return
    with contextlib.suppress(OSError):
        remove(out_fd, work.name)


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
    committed = False
    try:
        with contextlib.ExitStack() as stack:
            out_fd = stack.enter_context(opened_directory(out))
            work = out / _make_work_directory(out_fd)
            work_fd = stack.enter_context(opened_directory(work.name, out_fd))
            stack.callback(os.close, _lock(work_fd, work, create=True))
            stack.callback(_clean_up, out, out_fd, work, work_fd)
            os.mkdir("new", dir_fd=work_fd)
            new_fd = stack.enter_context(opened_directory("new", work_fd))
            yield work / "new"
            _swap(out, out_fd, work, work_fd, new_fd, check())
            committed = True
    finally:
        if not committed:
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    directory.rmdir()

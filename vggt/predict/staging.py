"""An output directory that appears complete or not at all.

Everything is written into a hidden sibling directory, which replaces the destination in one rename once every
file is in place; on any error (or Ctrl-C) the sibling is deleted and the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def check_destination(out: Path, overwrite: bool) -> None:
    """Fail early, before any work, when `out` cannot be (re)placed."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory; pass a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} exists and is not empty; pass --overwrite to replace it, or another --out")


def _missing_ancestors(path: Path) -> list[Path]:
    """The ancestors of `path` that do not exist yet, outermost first."""
    missing = []
    for parent in path.resolve().parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing[::-1]


def _swap_in(staging: Path, out: Path) -> None:
    """Rename `staging` to `out`; an existing `out` is moved aside first and put back if the rename fails."""
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(retired / out.name)
    try:
        staging.rename(out)
    except BaseException:
        (retired / out.name).rename(out)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging directory; on success it becomes `out` (replacing it when `overwrite`)."""
    check_destination(out, overwrite)
    created = _missing_ancestors(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for ancestor in reversed(created):  # the directories this call made, if still empty
            with contextlib.suppress(OSError):
                ancestor.rmdir()
        raise

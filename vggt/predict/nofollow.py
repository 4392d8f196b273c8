"""The entries below a directory descriptor, reached without ever following a symbolic link.

`vggt predict` may be handed an --out that holds links anywhere (an attacker's, or git-annex, DVC and the Hugging
Face cache, which are full of them). --out itself and its parents may be links: it is opened once, by path, and
every name below it is then taken relative to that descriptor with O_NOFOLLOW, so a link is only ever seen, moved
or unlinked as itself, never looked through.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

MAX_DEPTH = 64  # deeper than predict ever writes: a deeper tree is not ours, and stops recursion early


@contextlib.contextmanager
def opened_directory(name: str | Path, dir_fd: int | None = None) -> Iterator[int]:
    """A descriptor of the directory `name` (relative to `dir_fd`, not through a link; with no `dir_fd` a path
    that may itself be a link), closed on leaving."""
    flags = os.O_RDONLY | os.O_DIRECTORY | (os.O_NOFOLLOW if dir_fd is not None else 0)
    descriptor = os.open(name, flags, dir_fd=dir_fd)
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def entry_mode(dir_fd: int, name: str) -> int | None:
    """The st_mode of the entry `name` itself (a link's own), or None when there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None


def exists(dir_fd: int, name: str) -> bool:
    """Whether `dir_fd` holds an entry `name` of any kind, a dangling link included."""
    return entry_mode(dir_fd, name) is not None


def remove(dir_fd: int, name: str, depth: int = 0) -> None:
    """Delete the entry `name`: a link or file is unlinked, a directory emptied the same way and removed."""
    mode = entry_mode(dir_fd, name)
    if mode is None:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if depth > MAX_DEPTH:
        raise OSError(f"{name}: more than {MAX_DEPTH} folders deep")
    with opened_directory(name, dir_fd) as inner:
        for child in os.listdir(inner):
            remove(inner, child, depth + 1)
    os.rmdir(name, dir_fd=dir_fd)


def read_file(dir_fd: int, name: str, limit: int = 1 << 26) -> bytes:
    """The bytes of the plain file `name` (at most `limit`); OSError naming why for a link, a folder, a pipe or a
    file too large to be one predict wrote."""
    descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{name} is not a plain file")
        if info.st_size > limit:
            raise OSError(f"{name} holds {info.st_size} bytes, more than predict writes")
        return file.read(limit + 1)

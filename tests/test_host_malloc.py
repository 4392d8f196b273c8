"""glibc malloc keeps freed host memory for the next tensor (vggt.runtime.host_malloc), unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vggt.runtime import host_malloc

FREED_SCRIPT = """
import sys
import torch
from vggt.runtime.host_malloc import keep_freed_host_memory
from vggt.runtime.procfs import resident_memory_bytes
kept = keep_freed_host_memory() if sys.argv[1] == "keep" else False
before = resident_memory_bytes()
buffer = torch.ones(64 * 2**20)  # 256 MiB, every page written
del buffer
print(kept, (resident_memory_bytes() - before) // 2**20)
"""

glibc = pytest.mark.skipif(host_malloc._glibc_mallopt() is None, reason="the C library is not glibc")


def run_freed_script(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in host_malloc.GLIBC_ENV}
    out = subprocess.run(
        [sys.executable, "-c", FREED_SCRIPT, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


@glibc
def test_freed_tensor_memory_stays_with_the_process_only_once_kept() -> None:
    kept, held_mib = run_freed_script("keep")
    assert kept == "True" and held_mib >= 200  # the next tensor of that size reuses these pages, no page faults
    kept, held_mib = run_freed_script("default")
    assert kept == "False" and held_mib < 64  # glibc's default: the block was mmapped and unmapped on free


def test_malloc_is_left_alone_where_the_environment_sets_it_or_the_library_is_not_glibc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    glibc_mallopt, calls = host_malloc._glibc_mallopt, []
    monkeypatch.setattr(host_malloc, "_glibc_mallopt", lambda: lambda *args: calls.append(args) or 1)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")  # a memory benchmark's (or the user's) own choice
    assert not host_malloc.keep_freed_host_memory() and not calls
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    for name in host_malloc.GLIBC_ENV:
        monkeypatch.delenv(name, raising=False)
    assert host_malloc.keep_freed_host_memory()
    assert calls == [(host_malloc.M_MMAP_MAX, 0), (host_malloc.M_TRIM_THRESHOLD, host_malloc.TRIM_NEVER)]
    monkeypatch.setattr(sys, "platform", "darwin")
    assert glibc_mallopt() is None

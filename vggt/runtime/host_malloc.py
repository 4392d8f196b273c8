"""glibc malloc set up for tensor work on a CPU: freed blocks stay in the process for the next tensor.

glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mmap and unmaps it when it is
freed, so each large tensor's first write page-faults and zero-fills its memory again. VGGT's DPT heads and the
backward of the camera head allocate such tensors by the hundred: on an AMD EPYC (Zen 5, 2 threads), VGGT-1B at
8 x 224 px, a DPT head took 1.19 instead of 1.66 s and the camera head's backward at 2 x 2 frames 1.10 instead of
2.41 s with every block served from malloc's heap and the heap never trimmed (what tcmalloc and jemalloc do too).
The cost: memory freed at a peak stays with the process until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_NEVER = 2**31 - 1  # mallopt takes a C int: 2 GiB of free heap top before glibc hands any back
GLIBC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def _glibc_mallopt():
    """glibc's mallopt, or None where the C library is not glibc (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return libc.mallopt


def keep_freed_host_memory() -> bool:
    """Serve every host allocation from malloc's heap and keep freed memory there (glibc). Left alone when the
    environment already sets glibc's malloc (one of GLIBC_ENV: the user's, or a memory benchmark's choice).
    Returns whether malloc now keeps freed memory."""
    if any(name in os.environ for name in GLIBC_ENV):
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_NEVER))

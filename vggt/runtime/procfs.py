"""Memory figures of this process and host, and the CPU's description, from Linux procfs (None elsewhere).

Standard library only, so that a process without this package on its path (benchmarks/working_memory.py
measuring upstream's model) can load this file by path and read its memory the same way.
"""

from __future__ import annotations

from pathlib import Path

PROC_STATUS = Path("/proc/self/status")
PROC_MEMINFO = Path("/proc/meminfo")
PROC_CPUINFO = Path("/proc/cpuinfo")


def _proc_kilobytes(path: Path, field: str) -> int | None:
    """The `field` line of a Linux /proc file (kB) in bytes; None without procfs."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return None


def resident_memory_bytes(peak: bool = False) -> int | None:
    """This process's resident set size in bytes, from Linux /proc/self/status: now (VmRSS) or, with `peak`,
    its high-water mark (VmHWM). The CPU's counterpart of the allocator statistics; None without procfs.
    """
    return _proc_kilobytes(PROC_STATUS, "VmHWM:" if peak else "VmRSS:")


def host_available_bytes() -> int | None:
    """The kernel's estimate of memory available to new processes (MemAvailable); None off Linux."""
    return _proc_kilobytes(PROC_MEMINFO, "MemAvailable:")


def cpuinfo_field(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo (e.g. "flags", "vendor_id"); None without procfs."""
    if not PROC_CPUINFO.is_file():
        return None
    for line in PROC_CPUINFO.read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return None

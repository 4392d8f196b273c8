"""Helpers shared by the benchmark scripts: argument types, resolution checks, timing, tables, environment.

The scripts import this file as `common`; running `python benchmarks/<script>.py` puts this folder
first on sys.path, which is what makes that import work without packaging benchmarks/.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from vggt.runtime import device_name, synchronize


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def patch_multiple_error(flag: str, value: int, patch: int) -> str | None:
    """Why `value` of option `flag` is not a usable image side (with the two nearest that are); None if it is."""
    if value % patch == 0:
        return None
    return (
        f"{flag} {value} is not a multiple of the patch size {patch}; "
        f"try {max(patch, value // patch * patch)} or {(value // patch + 1) * patch}"
    )


def time_calls(
    call: Callable[[], Any], device: torch.device, warmup: int, repeats: int, label: str | None = None
) -> list[float]:
    """Seconds of each of `repeats` synchronized calls of `call`, after `warmup` untimed calls.

    With a `label`, every call's time is also printed to stderr as progress.
    """
    for i in range(warmup):
        start = time.perf_counter()
        call()
        synchronize(device)
        if label is not None:
            print(f"  {label} warmup {i + 1}/{warmup}: {time.perf_counter() - start:.3f} s", file=sys.stderr)
    seconds = []
    for i in range(repeats):
        synchronize(device)  # start from an idle device so queued work is not billed to this call
        start = time.perf_counter()
        call()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        if label is not None:
            print(f"  {label} repeat {i + 1}/{repeats}: {seconds[-1]:.3f} s", file=sys.stderr)
    return seconds


def aligned_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A header and rows of cell texts as a plain-text table with aligned ` | ` columns."""
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    lines = [" | ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in [header, *cells]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on besides the arguments: software versions, hardware, threads."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
    }


def environment_line(env: dict[str, Any]) -> str:
    """The `# torch ... | device ...` header line that opens every script's table output."""
    return (
        f"# torch {env['torch']} | python {env['python']} | device {env['device']}: {env['device_name']} | "
        f"threads {env['threads']}"
    )

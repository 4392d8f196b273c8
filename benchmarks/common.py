"""Helpers shared by the benchmark scripts: options, argument types, resolution checks, timing, memory, tables.

The scripts import this file as `common`; running `python benchmarks/<script>.py` puts this folder
first on sys.path, which is what makes that import work without packaging benchmarks/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from vggt.runtime import (
    configure_process,
    device_name,
    kernels,
    peak_memory_bytes,
    reset_peak_memory,
    resident_memory_bytes,
    resolve_device,
    synchronize,
)
from vggt.runtime.precision import DTYPES

GIB = 1024**3
CLEAR_REFS = Path("/proc/self/clear_refs")
# upstream README at 97bbde5 (section 3.7 of the spec): aggregator only, one H100, Flash Attention 3;
# frames -> (seconds, memory GB)
UPSTREAM_H100 = {1: (0.04, 1.88), 2: (0.05, 2.07), 4: (0.07, 2.45), 8: (0.11, 3.23), 10: (0.14, 3.63)}
UPSTREAM_H100.update({20: (0.31, 5.58), 50: (1.04, 11.41), 100: (3.12, 21.15), 200: (8.75, 40.63)})
# (accelerator, dtype, dense TFLOP/s, what torch's name of the device contains): vendor datasheet numbers, no
# sparsity; a more specific name comes before a shorter one that it contains
PUBLISHED_PEAKS = (
    ("NVIDIA A100 (SXM, PCIe)", "bf16 / fp16", 312.0, "A100"),
    ("NVIDIA A100 (SXM, PCIe)", "tf32", 156.0, "A100"),
    ("NVIDIA H100 PCIe", "bf16 / fp16", 756.0, "H100 PCIe"),
    ("NVIDIA H100 SXM", "bf16 / fp16", 989.0, "H100"),
    ("NVIDIA H100 SXM", "tf32", 495.0, "H100"),
    ("NVIDIA H200 (the H100 SXM's tensor cores)", "bf16 / fp16", 989.0, "H200"),
    ("Huawei Ascend 910B (Atlas 800T A2)", "bf16 / fp16", 313.0, "910B"),
)


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


def check_resolution(parser: argparse.ArgumentParser, args: argparse.Namespace, patch: int) -> None:
    """Exit with a usage error unless --height and --width are multiples of the patch size."""
    for name in ("height", "width"):
        error = patch_multiple_error(f"--{name}", getattr(args, name), patch)
        if error:
            parser.error(error)


def add_threads_and_json(parser: argparse.ArgumentParser) -> None:
    """The --threads and --json options every per-row benchmark shares."""
    parser.add_argument(
        "--threads",
        type=int_at_least(1),
        default=None,
        help="torch.set_num_threads, the CPU intra-op thread count (default: torch's own choice)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the environment and the rows to this JSON file"
    )


def add_device_and_timing(
    parser: argparse.ArgumentParser, dtype_help: str, timed: str, warmup: int, repeats: int
) -> None:
    """The --device, --dtype, --warmup and --repeats options; `timed` names what is timed ("forwards", "calls")."""
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default="float32", help=f"{dtype_help} (default: %(default)s)"
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device name such as cpu, cuda:0 or npu:0 (default: an NPU, else a GPU, else the CPU)",
    )
    parser.add_argument(
        "--warmup",
        type=int_at_least(0),
        default=warmup,
        help=f"untimed {timed} before each timing (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int_at_least(1), default=repeats, help=f"timed {timed} per timing (default: %(default)s)"
    )


def prepare_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """--device resolved (a usage error if it is not usable), --threads applied, the process configured for it."""
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    configure_process(device)  # the settings the model runs under (NPU binary kernels, TF32 / HF32)
    return device


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


@contextlib.contextmanager
def forced_backend(backend: str) -> Iterator[None]:
    """Route every kernel call of the block to `backend` through VGGT_KERNELS; the old value comes back after."""
    previous = os.environ.get(kernels.KERNELS_ENV)
    os.environ[kernels.KERNELS_ENV] = backend
    try:
        yield
    finally:
        if previous is None:
            del os.environ[kernels.KERNELS_ENV]
        else:
            os.environ[kernels.KERNELS_ENV] = previous


def published_peak(device_name: str, dtype: str = "bf16") -> tuple[float, str] | None:
    """The dense peak TFLOP/s of PUBLISHED_PEAKS for a device name and a dtype ("bf16", "tf32") and the row's
    accelerator; None when no row's name fragment is in `device_name` (a CPU, an unlisted card)."""
    for accelerator, dtypes, tflops, fragment in PUBLISHED_PEAKS:
        if fragment in device_name and dtype in dtypes.split(" / "):
            return tflops, accelerator
    return None


def gemm_size(device: torch.device) -> int:
    """The square GEMM the measured peak times: large enough to saturate the matrix units, small enough for a
    CPU to run a few in seconds."""
    return 2048 if device.type == "cpu" else 8192


def measured_gemm_peak_tflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> tuple[float, str]:
    """The best TFLOP/s of `repeats` square `gemm_size` matmuls in `dtype` on `device` (the CPU: with torch's
    current thread count), after one warm-up: the denominator of a measured MFU, where no published peak
    applies (a CPU) or to check one. Also returns how it was measured, for the report."""
    n = gemm_size(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = time_calls(lambda: torch.mm(a, b), device, 1, repeats)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    how = f"measured: best of {repeats} {n}x{n} {str(dtype).removeprefix('torch.')} GEMMs{threads}"
    return 2 * n**3 / min(seconds) / 1e12, how


# memory ----------------------------------------------------------------------------------------
def _ru_maxrss_bytes() -> int | None:
    """getrusage's lifetime peak RSS in bytes; None where the resource module does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def _reset_vmhwm() -> bool:
    """Reset VmHWM to the current RSS by writing "5" to /proc/self/clear_refs; True when that worked."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class MemoryProbe:
    """Peak memory of one configuration: allocator statistics on an accelerator, peak RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.on_allocator = peak_memory_bytes(device) is not None
        self.resets_rss = not self.on_allocator and resident_memory_bytes(peak=True) is not None and _reset_vmhwm()
        if self.on_allocator:
            self.kind = "allocator peak"
        elif self.resets_rss:
            self.kind = "RSS peak (VmHWM, reset per row)"
        elif resident_memory_bytes(peak=True) is not None:
            self.kind = "RSS peak (VmHWM, process lifetime)"
        elif _ru_maxrss_bytes() is not None:
            self.kind = "RSS peak (ru_maxrss, process lifetime)"
        else:
            self.kind = "unavailable"
        self.baseline = self._current()

    def _current(self) -> int | None:
        """What the process holds now: allocated bytes on an accelerator, resident bytes on the CPU."""
        gc.collect()  # drop garbage from loading so it does not count as held
        if self.on_allocator:
            reset_peak_memory(self.device)  # the peak restarts at what is allocated now
            return peak_memory_bytes(self.device)
        rss = resident_memory_bytes()
        return rss if rss is not None else _ru_maxrss_bytes()

    def start(self) -> None:
        """Begin a configuration: restart the peak where the backend or the kernel allows it."""
        gc.collect()
        if self.on_allocator:
            reset_peak_memory(self.device)
        elif self.resets_rss:
            _reset_vmhwm()

    def peak(self) -> int | None:
        """The peak since start() (or since process start, for lifetime kinds)."""
        if self.on_allocator:
            return peak_memory_bytes(self.device)
        hwm = resident_memory_bytes(peak=True)
        return hwm if hwm is not None else _ru_maxrss_bytes()


def format_gib(value: int | None) -> str:
    """Bytes as GiB with three decimals; "n/a" for None."""
    return "n/a" if value is None else f"{value / GIB:.3f}"


# output ----------------------------------------------------------------------------------------
def aligned_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A header and rows of cell texts as a plain-text table with aligned ` | ` columns."""
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    lines = [" | ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in [header, *cells]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def write_json(path: Path | None, env: dict[str, Any], rows: Sequence[Any]) -> None:
    """--json: the environment and the rows (dataclass instances) into `path`; nothing when it is None."""
    if path is None:
        return
    payload = {"environment": env, "rows": [dataclasses.asdict(row) for row in rows]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


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

"""Shared test helpers: fixture paths, reference key lists, reference tolerances, benchmark scripts."""

from __future__ import annotations

import contextlib
import importlib
import io
import socket
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def read_keys_tsv(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) rows of a reference key list, in file order."""
    rows = (FIXTURES / name).read_text().splitlines()[1:]
    return [(key, tuple(int(s) for s in shape.split(","))) for key, shape in (row.split("\t") for row in rows)]


def assert_within_reference_tolerance(name: str, ours: torch.Tensor | np.ndarray, reference: np.ndarray) -> None:
    """The fixture README's bound for dense outputs: max |diff| <= 1e-4 * max(1, max |reference|)."""
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    assert ours.shape == reference.shape, f"{name}: shape {ours.shape} != reference {reference.shape}"
    bound = 1e-4 * max(1.0, float(np.abs(reference).max()))
    diff = float(np.abs(ours - reference).max())
    assert diff <= bound, f"{name}: max |diff| {diff:.3g} exceeds {bound:.3g}"


def assert_close_to_reference(
    actual: torch.Tensor | np.ndarray,
    expected: torch.Tensor | np.ndarray,
    *,
    ulps: float,
    what: str,
    scale: float | None = None,
) -> None:
    """Elementwise |actual - expected| <= ulps * (spacing(|expected|) + eps * scale), in float32 steps.

    Why steps and not a fixed number: one float32 step is 3e-5 at a focal length of 300 and 2.4e-4 at 3000,
    and vectorised math (tan, exp, reductions) rounds a step or two differently on AVX2, AVX-512 and AMX
    CPUs, so an absolute bound below the step passes where the fixture was made and fails elsewhere.
    `ulps` is how many steps the computation may drift: a few (2-16) for a couple of ops, more for a forward.
    The floor `eps * scale` covers values near zero, whose error comes from the magnitude of the inputs they
    were computed from, not their own: `scale` is that magnitude (default: max |expected|).
    Arrays are float32 (the dtype every reference and computation here uses); NaN and inf must match exactly.

    Args:
        actual: the value computed here, any shape.
        expected: the reference, same shape.
        ulps: allowed drift in float32 steps of each expected value.
        what: the quantity's name, for the failure message.
        scale: magnitude of the quantity's inputs for the near-zero floor (default max |expected|).
    """
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != reference {expected.shape}"
    finite = np.isfinite(expected)
    assert np.array_equal(actual[~finite], expected[~finite], equal_nan=True), f"{what}: NaN or inf differ"
    if not finite.any():
        return
    actual, expected = np.where(finite, actual, 0).astype(np.float64), np.where(finite, expected, 0).astype(np.float64)
    magnitude = np.abs(expected)
    floor = np.finfo(np.float32).eps * (float(magnitude.max()) if scale is None else scale)
    steps = np.abs(actual - expected) / (np.spacing(magnitude.astype(np.float32)).astype(np.float64) + floor)
    worst = np.unravel_index(int(np.argmax(steps)), steps.shape)
    where = ", ".join(str(int(i)) for i in worst)
    assert steps[worst] <= ulps, (
        f"{what}[{where}]: {actual[worst]:.9g} vs reference {expected[worst]:.9g}, off by "
        f"{abs(actual[worst] - expected[worst]):.3g} = {steps[worst]:.1f} float32 steps (allowed {ulps})"
    )


def assert_tracks_within_reference_tolerance(out: dict, ref: np.lib.npyio.NpzFile) -> None:
    """Tracks: 1 px max and 0.2 px mean; visibility and confidence: 0.05."""
    track_diff = np.abs(out["track"].numpy() - ref["track"])
    assert track_diff.max() <= 1.0 and track_diff.mean() <= 0.2, (track_diff.max(), track_diff.mean())
    for key in ("vis", "conf"):
        assert out[key].shape == ref[key].shape
        assert np.abs(out[key].numpy() - ref[key]).max() <= 0.05, key


@contextlib.contextmanager
def benchmark_script(name: str) -> Iterator[ModuleType]:
    """benchmarks/<name>.py imported as a module for the block, the way running the script sees it.

    benchmarks/ is a folder of scripts that import their shared `common` module by its bare name,
    which works because a script's own folder comes first on sys.path: the same is arranged here.
    """
    folder = str(BENCHMARKS)
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(folder)
        for module in (name, "common"):  # the next import sees the files as they are then
            sys.modules.pop(module, None)


TORCH_HAS_CPU_FUSED_ADAMW = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 4)
CPU_ADAMW = "torch.optim.adamw.AdamW (fused)" if TORCH_HAS_CPU_FUSED_ADAMW else "torch.optim.adamw.AdamW"  # its name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a rendezvous or a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose IHDR chunk claims `width` x `height` (with a valid CRC): Pillow reads that size from the
    header alone, so a decompression-bomb check fires without any large allocation."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = 8 + 8  # PNG signature, then the IHDR chunk's length and type
    data[start : start + 8] = struct.pack(">II", width, height)
    data[start + 13 : start + 17] = struct.pack(">I", zlib.crc32(bytes(data[start - 4 : start + 13])))
    path.write_bytes(bytes(data))
    return path

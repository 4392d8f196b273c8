"""Forward latency and peak memory of VGGT inference for a config, frame counts and a resolution.

The model carries deterministic synthetic weights (no download, no random-init cost), runs in
eval mode under torch.inference_mode, and is timed with time.perf_counter around synchronized
forwards. Each (frames, part) pair is one measured configuration and one output row.

Memory: on an accelerator, the allocator's peak (reset before each configuration). On the CPU,
the process's peak resident set size (VmHWM), which holds the weights as well; it is reset per
configuration through /proc/self/clear_refs where the kernel allows it, and is otherwise a
process-lifetime high-water mark. Every row also gives the peak over the loaded-model baseline.

Sweep (--sweep): one fresh process per frame count, so that peaks never mix, then a CSV and a PNG of
latency and peak memory against frames. On the CPU each count runs benchmarks/working_memory.py
(working memory = peak RSS - RSS after loading, the model loaded tensor by tensor onto the meta
device; with --nproc N over N gloo processes of sequence-parallel inference); on an accelerator each
count runs this script once (allocator peak). Upstream's published H100 aggregator table is drawn
as reference points when the device is an H100.

Example: python benchmarks/bench_infer.py --config tiny --frames 1 2 8 --height 518 --width 518
         python benchmarks/bench_infer.py --config vggt_1b --height 112 --width 112 --frames 8 16 32 64 \
             --sweep --csv sweep.csv --png sweep.png
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from common import (
    UPSTREAM_H100,
    MemoryProbe,
    add_device_and_timing,
    add_threads_and_json,
    aligned_table,
    check_resolution,
    environment,
    environment_line,
    format_gib,
    int_at_least,
    prepare_device,
    time_calls,
    write_json,
)

from vggt.config import VGGTConfig
from vggt.models.vggt import VGGT
from vggt.runtime import autocast, device_name
from vggt.runtime.precision import DTYPES
from vggt.synthetic_weights import synthetic_model

PRESETS = ("vggt_1b", "small_reference", "tiny")
PARTS = {"aggregator": ("aggregator",), "model": ("model",), "both": ("aggregator", "model")}
SEED = 0
HERE = Path(__file__).resolve().parent
SWEEP_FIELDS = (
    "config",
    "frames",
    "height",
    "width",
    "dtype",
    "nproc",
    "device",
    "seconds",
    "peak_bytes",
    "memory_kind",
)


@dataclass
class Row:
    """One measured configuration: what ran, how long it took, how much memory it held."""

    config: str
    part: str
    frames: int
    batch: int
    height: int
    width: int
    dtype: str
    device: str
    query_points: int
    repeats: int
    mean_s: float
    min_s: float
    std_s: float
    peak_bytes: int | None
    over_baseline_bytes: int | None
    memory_kind: str


# model and inputs ------------------------------------------------------------------------------
def load_model(config: VGGTConfig, device: torch.device) -> VGGT:
    """VGGT with the deterministic synthetic weights, in eval mode, on `device`."""
    return synthetic_model(config).to(device)


def make_inputs(
    batch: int, frames: int, height: int, width: int, query_points: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Seeded random images [B, S, 3, H, W] in [0, 1] and, if asked, N query pixels [B, N, 2] of frame 0."""
    generator = torch.Generator().manual_seed(SEED)  # CPU generator: the same inputs on every device
    images = torch.rand(batch, frames, 3, height, width, generator=generator)
    if query_points == 0:
        return images.to(device), None
    scale = torch.tensor([width - 1, height - 1], dtype=images.dtype)
    points = torch.rand(batch, query_points, 2, generator=generator) * scale
    return images.to(device), points.to(device)


# output ----------------------------------------------------------------------------------------
def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table."""
    header = (
        "config",
        "part",
        "frames",
        "B",
        "HxW",
        "queries",
        "dtype",
        "device",
        "mean s",
        "min s",
        "std s",
        "peak GiB",
        "over model GiB",
        "memory kind",
    )
    cells = [
        (
            r.config,
            r.part,
            str(r.frames),
            str(r.batch),
            f"{r.height}x{r.width}",
            str(r.query_points),
            r.dtype,
            r.device,
            f"{r.mean_s:.4f}",
            f"{r.min_s:.4f}",
            f"{r.std_s:.4f}",
            format_gib(r.peak_bytes),
            format_gib(r.over_baseline_bytes),
            r.memory_kind,
        )
        for r in rows
    ]
    return aligned_table(header, cells)


# sweep: one process per frame count -------------------------------------------------------------
def sweep_row(args: argparse.Namespace, frames: int, device: torch.device) -> dict:
    """Run one frame count in a fresh process and return its SWEEP_FIELDS row."""
    shape = ["--config", args.config, "--frames", str(frames), "--height", str(args.height), "--width", str(args.width)]
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    if device.type == "cpu":
        command = [sys.executable, str(HERE / "working_memory.py"), *shape, "--dtype", args.dtype]
        command += ["--frames-chunk-size", str(args.frames_chunk_size), "--nproc", str(args.nproc), *threads]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        seconds, peak, kind = row["seconds"], row["working_bytes"], "working RSS (peak - after loading), largest rank"
    else:
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_infer_{os.getpid()}_{frames}.json"
        command = [sys.executable, str(HERE / "bench_infer.py"), *shape, "--dtype", args.dtype, "--part", "model"]
        command += ["--device", str(device), "--warmup", "1", "--repeats", "1", "--json", str(out), *threads]
        subprocess.run(command, check=True, capture_output=True, text=True)
        row = json.loads(out.read_text())["rows"][0]
        out.unlink()
        seconds, peak, kind = row["mean_s"], row["peak_bytes"], row["memory_kind"]
    return {
        "config": args.config,
        "frames": frames,
        "height": args.height,
        "width": args.width,
        "dtype": args.dtype,
        "nproc": args.nproc,
        "device": str(device),
        "seconds": seconds,
        "peak_bytes": peak,
        "memory_kind": kind,
    }


def write_plot(rows: Sequence[dict], path: Path, device_label: str) -> None:
    """PNG of latency and peak memory against frames; upstream's H100 points when the device is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [r["frames"] for r in rows]
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4))
    latency.plot(frames, [r["seconds"] for r in rows], "o-", label=f"ours ({device_label})")
    memory.plot(frames, [r["peak_bytes"] / 1e9 for r in rows], "o-", label=f"ours ({device_label})")
    if "H100" in device_label:
        counts = sorted(UPSTREAM_H100)
        latency.plot(counts, [UPSTREAM_H100[n][0] for n in counts], "s--", label="upstream, H100 (published)")
        memory.plot(counts, [UPSTREAM_H100[n][1] for n in counts], "s--", label="upstream, H100 (published)")
    first = rows[0]
    title = (
        f"{first['config']} {first['height']}x{first['width']} {first['dtype']}, {first['nproc']} process(es); "
        f"memory: {first['memory_kind']}"
    )
    for axis, label in ((latency, "forward latency (s)"), (memory, "peak memory (GB)")):
        axis.set_xlabel("frames")
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_sweep(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """--sweep: every frame count in its own process, then the CSV, the PNG and a table on stdout."""
    rows = []
    for frames in args.frames:
        print(f"sweep: {frames} frames ...", file=sys.stderr)
        rows.append(sweep_row(args, frames, device))
        print(f"  {rows[-1]['seconds']:.3f} s, {rows[-1]['peak_bytes'] / 1e6:.1f} MB", file=sys.stderr)
    if args.csv is not None:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SWEEP_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    if args.png is not None:
        write_plot(rows, args.png, device_name(device))
    header = ("frames", "seconds", "peak MB", "MB per added frame")
    cells = []
    for previous, row in zip([None, *rows], rows):
        slope = (
            ""
            if previous is None
            else f"{(row['peak_bytes'] - previous['peak_bytes']) / 1e6 / (row['frames'] - previous['frames']):.2f}"
        )
        cells.append((str(row["frames"]), f"{row['seconds']:.3f}", f"{row['peak_bytes'] / 1e6:.1f}", slope))
    print(aligned_table(header, cells))
    return rows


# command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Time VGGT inference (synthetic weights, eval mode, no grad) and measure its peak memory.\n"
            "Prints one table row per frame count and part to stdout; progress goes to stderr."
        ),
        epilog=(
            "memory:\n"
            "  accelerator: the allocator peak (max_memory_allocated), reset before every row.\n"
            "  CPU: the peak resident set size (VmHWM), which includes the weights and the torch runtime;\n"
            "  reset before every row via /proc/self/clear_refs where the kernel allows it, otherwise a\n"
            "  process-lifetime high-water mark. 'over model' is the peak minus what the loaded model held.\n"
            "\n"
            "examples:\n"
            "  python benchmarks/bench_infer.py --config tiny --frames 1 2 8\n"
            "  python benchmarks/bench_infer.py --config vggt_1b --frames 2 --part aggregator --json 1b.json\n"
            "  python benchmarks/bench_infer.py --config vggt_1b --frames 8 --dtype bfloat16 --query-points 256"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", choices=PRESETS, default="tiny", help="VGGT architecture preset (default: %(default)s)"
    )
    parser.add_argument(
        "--frames",
        type=int_at_least(1),
        nargs="+",
        default=[1, 2, 8],
        help="frame counts S; each gets its own rows (default: 1 2 8)",
    )
    parser.add_argument(
        "--height", type=int_at_least(1), default=518, help="image height, a multiple of 14 (default: %(default)s)"
    )
    parser.add_argument(
        "--width", type=int_at_least(1), default=518, help="image width, a multiple of 14 (default: %(default)s)"
    )
    parser.add_argument("--batch", type=int_at_least(1), default=1, help="batch size B (default: %(default)s)")
    add_device_and_timing(
        parser, dtype_help="autocast dtype; float32 runs without autocast", timed="forwards", warmup=1, repeats=3
    )
    parser.add_argument(
        "--part",
        choices=tuple(PARTS),
        default="both",
        help="time the aggregator alone, the full model (aggregator + heads), or both (default: %(default)s)",
    )
    parser.add_argument(
        "--query-points",
        type=int_at_least(0),
        default=0,
        help="random query points for the track head in model rows; 0 skips tracking (default: %(default)s)",
    )
    sweep = parser.add_argument_group("sweep (one process per frame count)")
    sweep.add_argument("--sweep", action="store_true", help="run every --frames count in a fresh process")
    sweep.add_argument("--csv", type=Path, default=None, help="--sweep: write the rows to this CSV file")
    sweep.add_argument("--png", type=Path, default=None, help="--sweep: plot latency and memory to this PNG")
    sweep.add_argument(
        "--nproc",
        type=int_at_least(1),
        default=1,
        help="--sweep on the CPU: sequence-parallel over this many gloo processes (default: %(default)s)",
    )
    sweep.add_argument(
        "--frames-chunk-size",
        type=int_at_least(0),
        default=8,
        help="--sweep on the CPU: frames per chunk of token-wise work, 0 for none (default: %(default)s)",
    )
    add_threads_and_json(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row] | list[dict]:
    """Run the benchmark for the command line `argv` (default sys.argv[1:]) and return its rows (dicts: --sweep)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = VGGTConfig.preset(args.config)
    patch = config.patch_size
    check_resolution(parser, args, patch)
    device = prepare_device(parser, args)
    if args.sweep:
        if device.type != "cpu" and args.nproc > 1:
            parser.error("--nproc in a sweep runs gloo processes on the CPU; use --device cpu")
        return run_sweep(args, device)
    if args.csv or args.png or args.nproc > 1:
        parser.error("--csv, --png and --nproc belong to --sweep")
    dtype = DTYPES[args.dtype]

    print(f"loading {args.config} with synthetic weights on {device} ...", file=sys.stderr)
    model = load_model(config, device)
    probe = MemoryProbe(device)
    env = environment(device)

    rows = []
    for frames in args.frames:
        images, query_points = make_inputs(args.batch, frames, args.height, args.width, args.query_points, device)
        try:
            model.check_inputs(images, query_points)  # fail before timing, with the model's own advice
        except ValueError as err:
            parser.error(str(err))
        for part in PARTS[args.part]:
            if part == "aggregator":
                forward = functools.partial(model.aggregator, images)
            else:
                forward = functools.partial(model, images, query_points=query_points)
            label = f"{part} S={frames} {args.height}x{args.width}"
            print(f"{label}:", file=sys.stderr)
            probe.start()
            with torch.inference_mode(), autocast(device, dtype):
                seconds = time_calls(forward, device, args.warmup, args.repeats, label)
            peak = probe.peak()
            over = None if peak is None or probe.baseline is None else peak - probe.baseline
            rows.append(
                Row(
                    config=args.config,
                    part=part,
                    frames=frames,
                    batch=args.batch,
                    height=args.height,
                    width=args.width,
                    dtype=args.dtype,
                    device=str(device),
                    query_points=args.query_points if part == "model" else 0,
                    repeats=args.repeats,
                    mean_s=statistics.fmean(seconds),
                    min_s=min(seconds),
                    std_s=statistics.pstdev(seconds),
                    peak_bytes=peak,
                    over_baseline_bytes=over,
                    memory_kind=probe.kind,
                )
            )

    print(environment_line(env))
    if not probe.on_allocator:
        print(
            f"# memory: {probe.kind}; CPU RSS includes the weights and the Python/torch runtime "
            f"(loaded-model baseline {format_gib(probe.baseline)} GiB); 'over model' is peak minus that baseline"
        )
    print(format_table(rows))
    write_json(args.json, env, rows)
    return rows


if __name__ == "__main__":
    main()

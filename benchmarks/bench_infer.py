"""Forward latency and peak memory of VGGT inference for a config, frame counts and a resolution.

The model carries deterministic synthetic weights (no download, no random-init cost), runs in
eval mode under torch.inference_mode, and is timed with time.perf_counter around synchronized
forwards. Each (frames, part) pair is one measured configuration and one output row.

Memory: on an accelerator, the allocator's peak (reset before each configuration). On the CPU,
the process's peak resident set size (VmHWM), which holds the weights as well; it is reset per
configuration through /proc/self/clear_refs where the kernel allows it, and is otherwise a
process-lifetime high-water mark. Every row also gives the peak over the loaded-model baseline.

Example: python benchmarks/bench_infer.py --config tiny --frames 1 2 8 --height 518 --width 518
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from common import (
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
from vggt.runtime import autocast
from vggt.runtime.precision import DTYPES
from vggt.synthetic_weights import synthetic_model

PRESETS = ("vggt_1b", "small_reference", "tiny")
PARTS = {"aggregator": ("aggregator",), "model": ("model",), "both": ("aggregator", "model")}
SEED = 0


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
    add_threads_and_json(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmark for the command line `argv` (default sys.argv[1:]) and return its rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = VGGTConfig.preset(args.config)
    patch = config.patch_size
    check_resolution(parser, args, patch)
    device = prepare_device(parser, args)
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

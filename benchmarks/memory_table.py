"""Frames of VGGT inference that fit a device, from the memory model (vggt/memory_plan.py): the README's table.

For each device size, one device and N of them (sequence parallelism), without and with host offload: the most
frames whose estimate fits the memory left after the runtime's context (a CUDA context takes 0.3-0.5 GiB: 0.5 is
planned), and the host memory then needed (rank 0's images and float32 predictions and, with offload, every rank's
kept layers: all ranks on one host). Nothing runs on a device: this is the model, which CPU measurements check
(benchmarks/README.md).

Example: python benchmarks/memory_table.py                       # VGGT-1B, bf16, 518 x 518 and 518 x 294
         python benchmarks/memory_table.py --sizes 294x518 --devices 8 80 --processes 8
"""

from __future__ import annotations

import argparse

import torch

from vggt.config import VGGTConfig
from vggt.memory_plan import GIB, estimate_inference_memory, inference_weight_bytes, largest_fitting

CONTEXT_GIB = 0.5  # what a CUDA context takes before the first allocation (0.3-0.5 GiB measured by others)
MAX_FRAMES = 1_000_000


def parse_size(text: str) -> tuple[int, int]:
    """ "294x518" -> (height, width)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 294x518") from err
    return height, width


def most_frames(config, height, width, dtype, processes, offload, budget_bytes, chunk) -> tuple[int, float]:
    """(frames that fit `budget_bytes` of one device, rank 0's host GiB at that count)."""
    weights = inference_weight_bytes(config, dtype)

    def estimate(frames: int):
        return estimate_inference_memory(
            config, frames, height, width, dtype, chunk, processes, weights_bytes=weights, offload=offload
        )

    frames = largest_fitting(lambda n: estimate(n).device_bytes <= budget_bytes, MAX_FRAMES)
    return frames, estimate(max(frames, 1)).host_bytes / GIB


def table(args: argparse.Namespace) -> list[str]:
    config, dtype = VGGTConfig.preset(args.config), getattr(torch, args.dtype)
    header = "| image (H x W) | device | " + " | ".join(
        f"{n} device{'s' if n > 1 else ''}{', offload' if offload else ''}: frames (host GiB)"
        for offload in (False, True)
        for n in (1, args.processes)
    )
    lines = [header + " |", "|" + "---|" * (2 + 4)]
    for height, width in args.sizes:
        for device_gib in args.devices:
            budget = int((device_gib - CONTEXT_GIB) * GIB)
            cells = []
            for offload in (False, True):
                for processes in (1, args.processes):
                    frames, host = most_frames(
                        config, height, width, dtype, processes, offload, budget, args.frames_chunk_size
                    )
                    cells.append(f"{frames} ({host:.0f})")
            lines.append(f"| {height} x {width} | {device_gib:g} GiB | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vggt_1b", help="VGGTConfig preset (default: %(default)s)")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, default=[(518, 518), (294, 518)], metavar="HxW",
        help="image sizes (default: 518x518 294x518, the square and 16:9 at width 518)",
    )  # fmt: skip
    parser.add_argument(
        "--devices", nargs="+", type=float, default=[8, 24, 32, 64, 80], metavar="GIB", help="device sizes in GiB"
    )
    parser.add_argument("--processes", type=int, default=8, help="devices in the multi-device columns (default 8)")
    parser.add_argument("--frames-chunk-size", type=int, default=8, help="as vggt predict (default 8)")
    print("\n".join(table(parser.parse_args())))


if __name__ == "__main__":
    main()

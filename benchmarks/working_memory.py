"""One inference run in a fresh process, measured the way issue 13 fixes: working memory = peak RSS - RSS after loading.

The model is built on the meta device and takes its synthetic weights one tensor at a time (loading
never holds more than the model), glibc hands freed blocks back to the kernel
(MALLOC_MMAP_THRESHOLD_=65536, MALLOC_TRIM_THRESHOLD_=0: the script re-executes itself with them
when they are missing), and the peak is the kernel's exact ru_maxrss, not a sampled figure. Prints one
JSON line. `bench_infer.py --sweep` runs it once per frame count so that peaks never mix.

Example: python benchmarks/working_memory.py --config vggt_1b --frames 32 --height 112 --width 112
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Sequence

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def ensure_malloc_env() -> None:
    """Re-execute this script with MALLOC_ENV unless the process already runs under it."""
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})


def rss_bytes() -> int:
    """Current resident set size (VmRSS) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vggt_1b", help="VGGTConfig preset (default: %(default)s)")
    parser.add_argument("--frames", type=int, required=True, help="frame count S")
    parser.add_argument("--height", type=int, default=112, help="image height, a multiple of 14")
    parser.add_argument("--width", type=int, default=112, help="image width, a multiple of 14")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="autocast dtype")
    parser.add_argument(
        "--frames-chunk-size",
        type=int,
        default=8,
        help="frames per chunk of token-wise work; 0 runs every frame at once (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    import torch

    from vggt.config import VGGTConfig
    from vggt.synthetic_weights import synthetic_tensor
    from vggt.weights import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(VGGTConfig.preset(args.config))
    for name, tensor in model.state_dict().items():
        model.load_state_dict({name: synthetic_tensor(name, tensor.shape)}, strict=False, assign=True)
    model.eval().requires_grad_(False)
    images = torch.rand(1, args.frames, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    loaded = rss_bytes()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
        model(images, frames_chunk_size=args.frames_chunk_size or None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "config": args.config,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "dtype": args.dtype,
        "frames_chunk_size": args.frames_chunk_size,
        "seconds": round(seconds, 3),
        "rss_after_load_bytes": loaded,
        "peak_rss_bytes": peak,
        "working_bytes": peak - loaded,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    ensure_malloc_env()
    main()

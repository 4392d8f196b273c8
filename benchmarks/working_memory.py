"""One inference run in a fresh process, measured the way issue 13 fixes: working memory = peak RSS - RSS after loading.

The model is built on the meta device and takes its synthetic weights one tensor at a time (loading
never holds more than the model), glibc hands freed blocks back to the kernel
(MALLOC_MMAP_THRESHOLD_=65536, MALLOC_TRIM_THRESHOLD_=0: the script re-executes itself with them
when they are missing), and the peak is the kernel's exact high-water mark of this process's RSS (VmHWM),
not a sampled figure. Not ru_maxrss: across exec it keeps the peak of the process that spawned this one (a
large pytest or sweep parent would then set the figure). Prints one JSON line. `bench_infer.py --sweep` runs
it once per frame count so that peaks never mix.

With --nproc N the frames are split over N gloo processes (sequence-parallel inference) and the row
gives the largest working memory of a rank.

Example: python benchmarks/working_memory.py --config vggt_1b --frames 32 --height 112 --width 112
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def ensure_malloc_env() -> None:
    """Re-execute this script with MALLOC_ENV unless the process already runs under it."""
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vggt_1b", help="VGGTConfig preset (default: %(default)s)")
    parser.add_argument("--frames", type=int, required=True, help="frame count S")
    parser.add_argument("--height", type=int, default=112, help="image height, a multiple of 14")
    parser.add_argument("--width", type=int, default=112, help="image width, a multiple of 14")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="autocast dtype (default: float32)",
    )
    parser.add_argument(
        "--frames-chunk-size",
        type=int,
        default=8,
        help="frames per chunk of token-wise work; 0 runs every frame at once (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (per process)")
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="sequence-parallel over this many gloo processes; the row reports the largest rank (default: 1)",
    )
    return parser


def measure(args: argparse.Namespace, rank: int = 0, world_size: int = 1) -> dict:
    """Load, run one forward (this rank's frames when world_size > 1) and return the row of this process."""
    import torch  # imported here, after ensure_malloc_env's re-exec: imported before it, torch would load twice

    from vggt.config import VGGTConfig
    from vggt.models.vggt import VGGT
    from vggt.parallel import sequence_parallel_forward, shard_frames
    from vggt.runtime import resident_memory_bytes
    from vggt.synthetic_weights import synthetic_tensor
    from vggt.weights import build_on_meta_device

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_on_meta_device(VGGT, VGGTConfig.preset(args.config))
    for name, tensor in model.state_dict().items():
        model.load_state_dict({name: synthetic_tensor(name, tensor.shape)}, strict=False, assign=True)
    model.eval().requires_grad_(False)
    images = torch.rand(1, args.frames, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    start, end = shard_frames(args.frames, world_size)[rank]
    images = images[:, start:end].clone()  # this process holds only its frames
    loaded = resident_memory_bytes()
    if loaded is None:
        raise RuntimeError("working_memory.py reads the RSS from /proc/self/status, which only Linux has")
    chunk = args.frames_chunk_size or None
    begin = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        if world_size > 1:
            sequence_parallel_forward(model, images, frames_chunk_size=chunk)
        else:
            model(images, frames_chunk_size=chunk)
    seconds = time.perf_counter() - begin
    peak = resident_memory_bytes(peak=True)
    return {
        "config": args.config,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "dtype": args.dtype,
        "frames_chunk_size": args.frames_chunk_size,
        "nproc": world_size,
        "seconds": round(seconds, 3),
        "rss_after_load_bytes": loaded,
        "peak_rss_bytes": peak,
        "working_bytes": peak - loaded,
    }


def _rank(rank: int, args: argparse.Namespace, folder: str) -> None:
    import torch
    import torch.distributed as dist

    from vggt.parallel.launch import init_group

    init_group(torch.device("cpu"), rank, args.nproc, f"file://{folder}/rendezvous")  # gloo, via the runtime
    row = measure(args, rank, args.nproc)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(row))
    dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.nproc == 1:
        result = measure(args)
    else:  # one process per rank; the row reports the largest rank's working memory and the slowest rank's time
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory(prefix="working-memory-") as folder:
            mp.spawn(_rank, args=(args, folder), nprocs=args.nproc, join=True)
            rows = [json.loads((Path(folder) / f"rank{r}.json").read_text()) for r in range(args.nproc)]
        result = max(rows, key=lambda row: row["working_bytes"])
        result["seconds"] = max(row["seconds"] for row in rows)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    ensure_malloc_env()
    main()

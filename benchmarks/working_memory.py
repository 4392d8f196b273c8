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

Upstream side by side: --upstream-dir DIR measures upstream's VGGT (the 1B default) from the checkout DIR
instead of ours, in a process of upstream's Python with DIR first on sys.path and this repository off it
(both trees hold a package named `vggt`). That process loads vggt/synthetic_recipe.py and
vggt/runtime/procfs.py by file path, so both models get the same weights, one tensor at a time, and the
same measurement. Upstream's model cannot be built under torch.device("meta") (its constructor reads a
tensor's value), so its parameters are moved to the meta device as they are registered.
Several --frames, or --upstream-python PY (with --upstream-dir), run each count in its own process, ours
and (with PY) upstream's, print one JSON row per run and a last JSON line with the working MB per added
frame of each (first to last count).

Speed like for like: --time-parts K times the aggregator and the camera + depth + point heads apart, K times
after one warm-up, both models called the same way (aggregator under the autocast of --dtype, then the heads with
autocast off, as upstream runs them on a GPU; upstream's own off switch is CUDA-only and misses CPU autocast).
--heads-autocast runs the heads under the autocast instead (upstream on a CPU as it stands; ours with
--heads-autocast). Timed runs keep glibc's default allocator (their memory columns are then less exact: freed
blocks may stay in the process). With --upstream-python, --rounds R repeats ours and upstream's back to back R
times, and the last line gives each side's median and minimum seconds per part and upstream's median over ours.
--profile-ops N adds, from one more untimed run under torch.profiler, each part's N ops of most self CPU time.
Ours runs as `vggt predict` does: under bf16 / fp16 the aggregator's matmul weights are held in that dtype, the
camera head's linears are laid out for its few rows (VGGT.lay_out_for_cpu_inference), and in timed runs glibc's
malloc keeps freed blocks for reuse (vggt.runtime.host_malloc); upstream's process keeps glibc's default unless
the environment sets malloc for both (e.g. MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647).

Examples:
    python benchmarks/working_memory.py --config vggt_1b --frames 32 --height 112 --width 112
    python benchmarks/working_memory.py --frames 8 --height 224 --width 224 --dtype bfloat16 --time-parts 2 \
        --rounds 3 --threads 2 --upstream-dir ../vggt --upstream-python ../venv/bin/python
    python benchmarks/working_memory.py --frames 32 64 --upstream-dir ../vggt --upstream-python ../venv/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported after the re-exec of ensure_malloc_env
    import torch

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
REPO = Path(__file__).resolve().parents[1]
UPSTREAM_CHUNK = 8  # upstream's DPT heads run 8 frames at a time, fixed in their forward


def ensure_malloc_env() -> None:
    """Re-execute this script with MALLOC_ENV unless the process already runs under it, or times (--time-parts):
    an mmap per large block page-faults every allocation afresh, which cost ~40 % of a bf16 forward here."""
    if any(arg.startswith("--time-parts") for arg in sys.argv) or all(
        os.environ.get(k) == v for k, v in MALLOC_ENV.items()
    ):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vggt_1b", help="VGGTConfig preset (default: %(default)s)")
    parser.add_argument(
        "--frames",
        type=int,
        nargs="+",
        required=True,
        help="frame count S; several counts run one process each and report the MB per added frame",
    )
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
        "--query-points",
        type=int,
        default=0,
        help="track this many points of frame 0 (uniform, seed 1) through the track head; ours, one process "
        "(default: 0, no tracking)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="sequence-parallel over this many gloo processes; the row reports the largest rank (default: 1)",
    )
    parser.add_argument(
        "--time-parts",
        type=int,
        default=0,
        metavar="K",
        help="time the aggregator and the heads apart, K runs after a warm-up (default: 0, one whole forward)",
    )
    parser.add_argument(
        "--heads-autocast",
        action="store_true",
        help="with --time-parts: the heads run under the autocast too (default: autocast off, as on a GPU)",
    )
    parser.add_argument(
        "--profile-ops",
        type=int,
        default=0,
        metavar="N",
        help="with --time-parts: after the timed runs, one more (untimed) under torch.profiler adds each part's N "
        "ops of most self CPU time to the row, and the last line gives the last round's (default: 0, no profile)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --upstream-python: ours and upstream's back to back this many times (default: %(default)s)",
    )
    parser.add_argument(
        "--upstream-dir",
        type=Path,
        default=None,
        help="an upstream VGGT checkout: alone, measure its VGGT-1B in this process (start it with upstream's "
        "Python); with --upstream-python, measure ours and upstream's side by side",
    )
    parser.add_argument(
        "--upstream-python",
        default=None,
        help="upstream's Python interpreter: run every count with ours and with upstream's model (--upstream-dir)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the combinations the probe supports."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(frames < 1 for frames in args.frames):
        parser.error(f"--frames must be positive, got {args.frames}")
    if args.query_points and (args.nproc != 1 or args.upstream_dir is not None):
        parser.error("--query-points measures our model in one process: leave out --nproc and --upstream-dir")
    if args.time_parts < 0 or args.rounds < 1:
        parser.error(f"--time-parts must be >= 0 and --rounds >= 1, got {args.time_parts} and {args.rounds}")
    if args.time_parts and (args.nproc != 1 or args.query_points):
        parser.error("--time-parts times one process without tracking: leave out --nproc and --query-points")
    if (args.heads_autocast or args.profile_ops) and not args.time_parts:
        parser.error("--heads-autocast and --profile-ops apply to --time-parts")
    if args.profile_ops < 0:
        parser.error(f"--profile-ops must be >= 0, got {args.profile_ops}")
    if args.upstream_python and args.upstream_dir is None:
        parser.error("--upstream-python needs --upstream-dir, the checkout whose model it runs")
    if args.upstream_dir is not None:
        if not (args.upstream_dir / "vggt" / "models" / "vggt.py").is_file():
            parser.error(f"--upstream-dir {args.upstream_dir} holds no vggt/models/vggt.py: give upstream's checkout")
        if args.config != "vggt_1b" or args.nproc != 1 or args.frames_chunk_size != UPSTREAM_CHUNK:
            parser.error(
                "upstream's model is VGGT-1B in one process with its heads' fixed chunk of "
                f"{UPSTREAM_CHUNK} frames: use --config vggt_1b --nproc 1 --frames-chunk-size {UPSTREAM_CHUNK}"
            )
    return args


PARTS = ("aggregator_s", "heads_s", "total_s")


def part_statistics(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Median and minimum seconds of each part over every timed run of `rows` (total: aggregator + heads)."""
    import statistics

    runs = {
        "aggregator_s": [t for row in rows for t in row["aggregator_s"]],
        "heads_s": [t for row in rows for t in row["heads_s"]],
        "total_s": [a + h for row in rows for a, h in zip(row["aggregator_s"], row["heads_s"])],
    }
    return {
        part: {"median": round(statistics.median(times), 3), "min": round(min(times), 3), "runs": len(times)}
        for part, times in runs.items()
    }


def slope_mb_per_frame(rows: Sequence[dict]) -> float:
    """Working memory added per frame, in MB (1e6 bytes), from the fewest to the most frames of `rows`."""
    first, last = min(rows, key=lambda row: row["frames"]), max(rows, key=lambda row: row["frames"])
    if first["frames"] == last["frames"]:
        raise ValueError(f"a slope needs two frame counts, got only {first['frames']}")
    return (last["working_bytes"] - first["working_bytes"]) / 1e6 / (last["frames"] - first["frames"])


def fill_synthetic(model: torch.nn.Module, synthetic_tensor: Callable) -> None:
    """Give a model on the meta device its synthetic weights one tensor at a time (never more than the model)."""
    for name, tensor in model.state_dict().items():  # each in the dtype the model holds it in (bf16 storage)
        model.load_state_dict({name: synthetic_tensor(name, tensor.shape).to(tensor.dtype)}, strict=False, assign=True)
    left = [name for name, param in model.named_parameters() if param.is_meta]
    if left:
        raise RuntimeError(f"parameters left without weights: {left[:5]}")
    model.eval().requires_grad_(False)


def timed_parts(args: argparse.Namespace, model: torch.nn.Module, images: torch.Tensor, chunk: int | None) -> dict:
    """Seconds of the aggregator and of the camera + depth + point heads, each of args.time_parts runs after a
    warm-up, inside measured_row's no_grad and autocast. Both models take these calls (ours with `chunk`:
    upstream's aggregator has no chunking). With args.profile_ops, one more untimed run under torch.profiler
    adds each part's ops of most self CPU time."""
    import torch

    heads_precision = nullcontext() if args.heads_autocast else torch.autocast("cpu", enabled=False)
    aggregator_args = {} if chunk is None else {"frames_chunk_size": chunk}

    def aggregator() -> tuple[list, int]:
        return model.aggregator(images, **aggregator_args)

    def heads(tokens: list, patch_start_idx: int) -> None:
        with heads_precision:
            model.camera_head(tokens)
            model.depth_head(tokens, images, patch_start_idx, UPSTREAM_CHUNK)
            model.point_head(tokens, images, patch_start_idx, UPSTREAM_CHUNK)

    seconds = {"aggregator_s": [], "heads_s": []}
    for run in range(args.time_parts + 1):
        begin = time.perf_counter()
        tokens, patch_start_idx = aggregator()
        middle = time.perf_counter()
        heads(tokens, patch_start_idx)
        end = time.perf_counter()
        if run:  # run 0 warms up (kernel selection, allocator)
            seconds["aggregator_s"].append(round(middle - begin, 3))
            seconds["heads_s"].append(round(end - middle, 3))
    if not args.profile_ops:
        return seconds
    with op_profile(args.profile_ops) as aggregator_ops:
        tokens, patch_start_idx = aggregator()
    with op_profile(args.profile_ops) as heads_ops:
        heads(tokens, patch_start_idx)
    return {**seconds, "aggregator_ops": aggregator_ops, "heads_ops": heads_ops}


@contextmanager
def op_profile(count: int) -> Iterator[list]:
    """Record the block with torch.profiler; the yielded list then holds its `count` ops of most self CPU time,
    as [op name, calls, self seconds] (the profiler's own overhead included)."""
    from torch.profiler import ProfilerActivity, profile

    ops = []
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        yield ops
    events = sorted(recorded.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    ops.extend([e.key, e.count, round(e.self_cpu_time_total / 1e6, 3)] for e in events)


def measured_row(args: argparse.Namespace, side: str, forward: Callable[[], object], rss: Callable, **fields) -> dict:
    """Run forward() without autograd (autocast unless float32) between two RSS readings; the row of this run.

    rss: resident_memory_bytes of vggt/runtime/procfs.py (peak=True reads VmHWM); fields: the row's own columns.
    """
    import torch

    loaded = rss()
    if loaded is None:
        raise RuntimeError("working_memory.py reads the RSS from /proc/self/status, which only Linux has")
    begin = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    # no autocast object at all for float32: torch < 2.3 refuses a float32 CPU autocast dtype even when disabled
    precision = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else nullcontext()
    with torch.no_grad(), precision:
        parts = forward()
    seconds = time.perf_counter() - begin
    peak = rss(peak=True)
    shape = {"config": args.config, "height": args.height, "width": args.width, "dtype": args.dtype}
    readings = {"seconds": round(seconds, 3), "rss_after_load_bytes": loaded, "peak_rss_bytes": peak}
    row = {"model": side, **shape, **fields, **readings, "working_bytes": peak - loaded}
    if args.time_parts:
        row |= {**parts, "heads_autocast": args.heads_autocast}
    return row


def synthetic_images(args: argparse.Namespace) -> torch.Tensor:
    """The input of every run: [1, S, 3, H, W] uniform in [0, 1), seed 0."""
    import torch

    (frames,) = args.frames
    return torch.rand(1, frames, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))


def measure(args: argparse.Namespace, rank: int = 0, world_size: int = 1) -> dict:
    """Load, run one forward (this rank's frames when world_size > 1) and return the row of this process."""
    import torch  # imported here, after ensure_malloc_env's re-exec: imported before it, torch would load twice

    from vggt.config import VGGTConfig
    from vggt.models.vggt import VGGT
    from vggt.parallel import sequence_parallel_forward, shard_frames
    from vggt.runtime import configure_process, resident_memory_bytes
    from vggt.synthetic_weights import synthetic_tensor
    from vggt.weights import build_on_meta_device

    if args.threads:
        torch.set_num_threads(args.threads)
    configure_process(torch.device("cpu"))  # as vggt predict: malloc keeps freed blocks, unless MALLOC_ENV is set
    model = build_on_meta_device(VGGT, VGGTConfig.preset(args.config))
    if args.dtype != "float32":  # as vggt predict loads it: straight into bf16, never the float32 model whole
        model.hold_in_compute_dtype(getattr(torch, args.dtype))
    fill_synthetic(model, synthetic_tensor)
    model.heads_under_autocast = args.heads_autocast
    model = model.to_inference_device(torch.device("cpu"))  # as vggt predict runs it
    images = synthetic_images(args)
    start, end = shard_frames(images.shape[1], world_size)[rank]
    images = images[:, start:end].clone()  # this process holds only its frames
    chunk = args.frames_chunk_size or None
    forward = partial(sequence_parallel_forward, model, output_rank=0) if world_size > 1 else model  # as predict
    queries = None
    if args.query_points:
        corner = torch.rand(args.query_points, 2, generator=torch.Generator().manual_seed(1))
        queries = corner * torch.tensor([args.width - 1, args.height - 1])
    run = partial(forward, images, queries, frames_chunk_size=chunk)
    if args.time_parts:
        run = partial(timed_parts, args, model, images, chunk)
    fields = {"frames": args.frames[0], "frames_chunk_size": args.frames_chunk_size, "nproc": world_size}
    fields |= {"query_points": args.query_points} if args.query_points else {}
    return measured_row(args, "ours", run, resident_memory_bytes, **fields)


def load_by_path(name: str, path: Path) -> ModuleType:
    """Execute the file at `path` as a module called `name`, outside any package on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device (buffers stay where they are made)."""
    import torch
    from torch import nn

    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        with torch.no_grad():  # the constructor's init then writes into meta tensors: no memory, no work
            yield
    finally:
        nn.Module.register_parameter = register


def measure_upstream(args: argparse.Namespace) -> dict:
    """measure() for upstream's VGGT-1B from args.upstream_dir: same weights, same loading, same readings."""
    tree = args.upstream_dir.resolve()
    sys.path[:] = [str(tree)] + [p for p in sys.path if Path(p or ".").resolve() != REPO]
    import torch

    from vggt.models.vggt import VGGT  # upstream's

    source = Path(sys.modules[VGGT.__module__].__file__).resolve()  # upstream's `vggt` is a namespace package
    if not source.is_relative_to(tree):
        raise RuntimeError(f"VGGT came from {source}, not from {tree}: take this repository off the path")
    recipe = load_by_path("synthetic_recipe", REPO / "vggt" / "synthetic_recipe.py")
    procfs = load_by_path("procfs", REPO / "vggt" / "runtime" / "procfs.py")
    if args.threads:
        torch.set_num_threads(args.threads)
    with parameters_on_meta():
        model = VGGT()
    fill_synthetic(model, recipe.synthetic_tensor)
    images = synthetic_images(args)
    fields = {"frames": args.frames[0], "frames_chunk_size": UPSTREAM_CHUNK, "nproc": 1}
    run = partial(timed_parts, args, model, images, None) if args.time_parts else partial(model, images)
    return measured_row(args, f"upstream {tree}", run, procfs.resident_memory_bytes, **fields)


def one_run_command(args: argparse.Namespace, frames: int, upstream: bool) -> list[str]:
    """The command that measures one count in a fresh process: ours, or upstream's under its own Python."""
    command = [args.upstream_python if upstream else sys.executable, str(Path(__file__).resolve())]
    command += ["--config", args.config, "--frames", str(frames), "--height", str(args.height)]
    command += ["--width", str(args.width), "--dtype", args.dtype, "--frames-chunk-size", str(args.frames_chunk_size)]
    command += ["--nproc", str(args.nproc)] + ([] if args.threads is None else ["--threads", str(args.threads)])
    command += ["--query-points", str(args.query_points)] if args.query_points else []
    command += ["--time-parts", str(args.time_parts)] if args.time_parts else []
    command += ["--heads-autocast"] if args.heads_autocast else []
    command += ["--profile-ops", str(args.profile_ops)] if args.profile_ops else []
    return command + (["--upstream-dir", str(args.upstream_dir.resolve())] if upstream else [])


def compare(args: argparse.Namespace) -> dict:
    """Every count with ours (and upstream's with --upstream-python), one process each; rows and slopes."""
    sides = (False, True) if args.upstream_python else (False,)
    runs = [(frames, upstream) for _ in range(args.rounds) for frames in args.frames for upstream in sides]
    rows = {"ours": [], "upstream": []}
    for index, (frames, upstream) in enumerate(runs, 1):
        side = "upstream" if upstream else "ours"
        print(f"[{index}/{len(runs)}] {side}, {frames} frames ...", file=sys.stderr, flush=True)
        env = {**os.environ, **({} if args.time_parts else MALLOC_ENV)}  # timing: glibc's default allocator
        if upstream:  # upstream's `vggt` must not meet ours, and its checkout gets no __pycache__ from us
            env.pop("PYTHONPATH", None)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        done = subprocess.run(one_run_command(args, frames, upstream), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the {side} run of {frames} frames failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows[side].append(row)
        print(json.dumps(row), flush=True)
    summary = {"frames": [min(args.frames), max(args.frames)]}
    if len(args.frames) > 1:
        summary["mb_per_added_frame"] = {side: round(slope_mb_per_frame(rows[side]), 3) for side in rows if rows[side]}
    if args.time_parts:
        summary["seconds"] = {side: part_statistics(rows[side]) for side in rows if rows[side]}
        if args.upstream_python:
            medians = {side: {part: summary["seconds"][side][part]["median"] for part in PARTS} for side in rows}
            summary["upstream_over_ours"] = {
                part: round(medians["upstream"][part] / medians["ours"][part], 3) for part in PARTS
            }
    if args.profile_ops:
        parts_ops = ("aggregator_ops", "heads_ops")
        summary["ops"] = {side: {part: rows[side][-1][part] for part in parts_ops} for side in rows if rows[side]}
    print(json.dumps(summary))
    return summary


def _rank(rank: int, args: argparse.Namespace, folder: str) -> None:
    import torch
    import torch.distributed as dist

    from vggt.parallel.launch import init_group

    init_group(torch.device("cpu"), rank, args.nproc, f"file://{folder}/rendezvous")  # gloo, via the runtime
    row = measure(args, rank, args.nproc)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(row))
    dist.barrier()  # no rank closes its gloo connections while a peer may still be receiving from it
    dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if len(args.frames) > 1 or args.upstream_python or args.rounds > 1:
        return compare(args)
    if args.upstream_dir is not None:
        result = measure_upstream(args)
    elif args.nproc == 1:
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

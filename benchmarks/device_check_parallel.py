"""Sequence-parallel inference over 2 processes (one card each) against one card's forward of the same scene.

Both processes load VGGT with the synthetic weights; rank 0 owns the scene, vggt.parallel.launch splits it by
frames, and rank 0 then runs the whole scene alone and compares the dense outputs (float32, TF32 / HF32 off).
On an accelerator: VGGT-1B, 8 frames at 518 px; on the CPU (gloo, for a check of this script): tiny, 4 frames
at 56 px.

Example: python benchmarks/device_check_parallel.py --result parallel.json
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from vggt.config import VGGTConfig
from vggt.parallel.launch import launch, parallel_forward, process_device
from vggt.runtime import configure_process, default_device, device_name, synchronize
from vggt.synthetic_weights import synthetic_model

WORLD_SIZE = 2
DENSE = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
TOLERANCE = 1e-3  # of the largest single-card output magnitude (at least 1): float32, another summation order
SIZES = {"cpu": ("tiny", 4, 56), "accelerator": ("vggt_1b", 8, 518)}  # config, frames, side in px
SEED = 0


def _rank(result: str, device_kind: str, config_name: str, frames: int, side: int) -> None:
    """One rank's part: the parallel forward, then on rank 0 the single-card forward and the comparison."""
    device = process_device(device_kind)
    configure_process(device, allow_tf32=False)
    model = synthetic_model(VGGTConfig.preset(config_name)).to(device)
    images = torch.rand(frames, 3, side, side, generator=torch.Generator().manual_seed(SEED)).to(device)
    rank = dist.get_rank()
    synchronize(device)
    start = time.perf_counter()
    parallel = parallel_forward(model, images if rank == 0 else None, None, frames_chunk_size=8)
    synchronize(device)
    parallel_s = time.perf_counter() - start
    if rank == 0:
        compare_with_single_device(result, model, images, parallel, parallel_s, device, config_name, frames, side)
    dist.barrier()  # no rank closes its gloo connections while rank 0 still runs (gloo then aborts with SIGABRT)


def compare_with_single_device(
    result: str, model, images, parallel, parallel_s: float, device, config_name: str, frames: int, side: int
) -> None:
    """Rank 0: the single-card forward, the comparison, and the JSON summary written to `result`."""
    start = time.perf_counter()
    with torch.no_grad():
        single = model(images[None])
    synchronize(device)
    single_s = time.perf_counter() - start
    errors = {}
    for key in DENSE:
        scale = max(1.0, single[key].abs().max().item())
        errors[key] = (parallel[key] - single[key]).abs().max().item() / scale
    summary = {
        "device": str(device),
        "device_name": device_name(device),
        "world_size": dist.get_world_size(),
        "config": config_name,
        "frames": frames,
        "height": side,
        "width": side,
        "parallel_s": parallel_s,
        "single_s": single_s,
        "relative_errors": errors,
        "tolerance": TOLERANCE,
        "passed": max(errors.values()) <= TOLERANCE,
    }
    Path(result).write_text(json.dumps(summary, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, required=True, help="rank 0 writes its comparison to this JSON file")
    args = parser.parse_args(argv)
    kind = default_device().type  # VGGT_DEVICE pins one
    config_name, frames, side = SIZES["cpu" if kind == "cpu" else "accelerator"]
    launch(WORLD_SIZE, kind, functools.partial(_rank, str(args.result), kind, config_name, frames, side))
    summary = json.loads(args.result.read_text())
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

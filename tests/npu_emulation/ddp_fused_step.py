"""One rank of DDP runs (gloo, CPU) stepping the emulated NpuFusedAdamW twice; started 2x by torchrun in a test.

    python -m torch.distributed.run --nproc_per_node 2 -m tests.npu_emulation.ddp_fused_step --profile 2.14.0 --out DIR

Two runs, with and without gradient_as_bucket_view. Each rank writes DIR/rank<R>.pt: per run (keyed by the
bucket-view flag) the error the steps raised (or None), the flat grad buffers' element count, the parameters'
element count and the final parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tests.npu_emulation import profiles
from tests.npu_emulation.install import activate_in_this_process


def model() -> torch.nn.Module:
    """A small seeded MLP: 4 parameters, all in one DDP bucket."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank- and step-specific inputs and targets (so that DDP's averaging matters)."""
    generator = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(4, 6, generator=generator), torch.randn(4, 3, generator=generator)


def run(torch_npu: ModuleType, rank: int, bucket_view: bool) -> dict[str, Any]:
    """Two steps of a fresh model under DDP with the fused optimizer; what they left."""
    net = model()
    ddp = DistributedDataParallel(net, gradient_as_bucket_view=bucket_view)
    optimizer = torch_npu.optim.NpuFusedAdamW(net.parameters(), lr=0.05, weight_decay=0.01)
    error = None
    try:
        for step in range(2):
            optimizer.zero_grad(set_to_none=False)
            inputs, targets = batch(rank, step)
            torch.nn.functional.mse_loss(ddp(inputs), targets).backward()
            optimizer.step()
    except RuntimeError as err:
        error = str(err)
    return {
        "error": error,
        "flat_grad_elements": sum(g.numel() for g in optimizer.get_combined_grads() if g is not None),
        "param_elements": sum(p.numel() for p in net.parameters()),
        "params": [p.detach().clone() for p in net.parameters()],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default=profiles.NEWEST)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args(argv)
    torch_npu = activate_in_this_process(options.profile, visible_cards=0, register_npu_device=False)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = {bucket_view: run(torch_npu, rank, bucket_view) for bucket_view in (True, False)}
    torch.save(results, options.out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])

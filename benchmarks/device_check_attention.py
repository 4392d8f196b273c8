"""The device's fused attention against the reference on long sequences, rows checked a chunk at a time.

Two cases per device. "global" has the shape of VGGT-1B's global attention at 32 frames of 518 px (16 heads
of 64, 32 x 1374 tokens). "beyond_limit" has S just above npu_fusion_attention's documented limit of
1048576 tokens (2 heads of 64, so that it fits in memory and time): on an NPU it runs only when
vggt/runtime/npu.py has the VGGT_NPU_ATTENTION_MAX_SEQ knob of its exact split (skipped otherwise, with
the reason), on a GPU it is SDPA at that length. On the CPU, "global" shrinks to 2048 tokens (the kernel
is torch's CPU SDPA there: mostly a check of this harness) and "beyond_limit" is skipped.

The reference is the definition vggt.runtime.reference.attention computes, softmax(q k^T / sqrt(D)) v,
written out as float32 matmuls (TF32 / HF32 off): the reference's own body, F.scaled_dot_product_attention,
could pick on a GPU the very fused kernel under test. It cannot hold S x S scores at a million tokens, so it
is computed for a set of query rows only, 16 rows at a time against all keys, from the same inputs. Each
checked row has a "needle": one key, some rows' before the limit and some beyond it, set to a multiple of
the row's query so that its logit dominates; a kernel that dropped or mis-weighted keys past a split
boundary moves those rows' outputs far from the reference, where uniform random keys would average out.

Example: python benchmarks/device_check_attention.py --result attention.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vggt.runtime import configure_process, default_device, device_name, kernels, npu, synchronize

KNOB = "VGGT_NPU_ATTENTION_MAX_SEQ"
FUSED_MAX_SEQ = 1048576  # npu_fusion_attention's documented S limit (shared/spec/npu.md section 2.1)
PAST_LIMIT = 4096  # tokens beyond the limit in the beyond_limit case
NEEDLE_GAIN = 3.0  # needle logit = 3 |q|^2 / sqrt(D), about 24 for D = 64, against about 5 for the best random key
ROW_CHUNK = 16
RANDOM_ROWS = 24
SEED = 0


@dataclass(frozen=True)
class Case:
    """One attention shape [B, H, S, D] in one dtype, and how far the kernel may be from the reference."""

    name: str
    batch: int
    heads: int
    seq: int
    dim: int
    dtype: str
    tolerance: float  # of the largest reference output magnitude (at least 1)
    limit: int | None = None  # the split boundary the needles straddle; None: the middle of the sequence


def cases(device: torch.device) -> list[Case | tuple[str, str]]:
    """The cases for `device`: Case to run, or (name, why it is skipped)."""
    if device.type == "cpu":
        beyond = ("beyond_limit", "no accelerator: a million-token attention would take hours on the CPU")
        return [Case("global", 1, 2, 2048, 64, "float32", 1e-4), beyond]  # SDPA's CPU kernel against the matmuls
    vggt_global = [
        Case("global", 1, 16, 32 * 1374, 64, dtype, tol) for dtype, tol in (("bfloat16", 2e-2), ("float32", 2e-3))
    ]
    limit = int(os.environ.get(KNOB, FUSED_MAX_SEQ))
    if device.type == "npu" and KNOB not in Path(npu.__file__).read_text():
        beyond = (
            "beyond_limit",
            f"vggt/runtime/npu.py has no {KNOB}: this checkout has no exact split of npu_fusion_attention beyond "
            f"S = {FUSED_MAX_SEQ}, and calling the op unsplit there would test its documented limit, not our code",
        )
        return [*vggt_global, beyond]
    return [*vggt_global, Case("beyond_limit", 1, 2, limit + PAST_LIMIT, 64, "bfloat16", 2e-2, limit)]


def checked_rows(case: Case, generator: torch.Generator) -> list[int]:
    """Query rows to compare: both ends, both sides of the boundary, and random ones."""
    boundary = case.seq // 2 if case.limit is None else case.limit
    fixed = {0, 1, boundary - 1, boundary, boundary + 1, case.seq - 2, case.seq - 1}
    rand = torch.randint(0, case.seq, (RANDOM_ROWS,), generator=generator).tolist()
    return sorted(fixed | set(rand))


def needle_inputs(
    case: Case, rows: Sequence[int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q, k, v [B, H, S, D] (float32, CPU) with each checked row's needle key planted.

    Needles alternate between keys before and beyond the boundary, at distinct positions.
    """
    shape = (case.batch, case.heads, case.seq, case.dim)
    q, k, v = (torch.randn(shape, generator=generator) for _ in range(3))
    boundary = case.seq // 2 if case.limit is None else case.limit
    before = torch.randperm(boundary, generator=generator)[: len(rows)].tolist()
    beyond = (boundary + torch.randperm(case.seq - boundary, generator=generator)[: len(rows)]).tolist()
    for i, row in enumerate(rows):
        key = beyond[i] if i % 2 else before[i]
        k[:, :, key] = NEEDLE_GAIN * q[:, :, row]
    return q, k, v


def reference_rows(q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v in float32 matmuls: q_rows [B, H, R, D], k and v [B, H, S, D] -> [B, H, R, D]."""
    scores = q_rows.float() @ k.float().transpose(-2, -1) / math.sqrt(q_rows.shape[-1])
    return scores.softmax(dim=-1) @ v.float()


def run_case(case: Case, device: torch.device) -> dict[str, Any]:
    """The kernel's output on `device` against the chunked float32 reference on the checked rows."""
    generator = torch.Generator().manual_seed(SEED)
    rows = checked_rows(case, generator)
    dtype = getattr(torch, case.dtype)
    q, k, v = (t.to(device, dtype) for t in needle_inputs(case, rows, generator))
    synchronize(device)
    start = time.perf_counter()
    out = kernels.attention(q, k, v)
    synchronize(device)
    seconds = time.perf_counter() - start
    k32, v32 = k.float(), v.float()
    worst, scale = 0.0, 1.0
    for first in range(0, len(rows), ROW_CHUNK):
        index = torch.tensor(rows[first : first + ROW_CHUNK], device=device)
        expected = reference_rows(q.index_select(2, index), k32, v32)
        worst = max(worst, (out.index_select(2, index).float() - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    return {
        **asdict(case),
        "backend": kernels.backend_for(q),
        "rows_checked": len(rows),
        "seconds": seconds,
        "max_abs_error": worst,
        "reference_scale": scale,
        "passed": worst <= case.tolerance * scale,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, default=None, help="write the cases to this JSON file")
    args = parser.parse_args(argv)
    device = default_device()  # VGGT_DEVICE pins one
    configure_process(device, allow_tf32=False)  # the float32 case compares true float32 matmuls
    results: dict[str, Any] = {"device": str(device), "device_name": device_name(device), "cases": []}
    for case in cases(device):
        if isinstance(case, tuple):
            results["cases"].append({"name": case[0], "skipped": case[1]})
            continue
        print(
            f"attention {case.name}: B={case.batch} H={case.heads} S={case.seq} D={case.dim} {case.dtype}", flush=True
        )
        try:
            results["cases"].append(run_case(case, device))
        except RuntimeError as err:  # out of memory, a rejected shape: the case fails, the others still run
            results["cases"].append({**asdict(case), "passed": False, "error": str(err).splitlines()[0]})
        print(json.dumps(results["cases"][-1]), flush=True)
    if args.result is not None:
        args.result.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

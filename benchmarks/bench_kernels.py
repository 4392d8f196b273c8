"""Latency, correctness and peak memory of the runtime kernels (attention, RoPE, GELU) at VGGT-1B shapes.

Every backend of vggt.runtime.kernels that can run on the chosen device is forced in turn through
the VGGT_KERNELS environment variable (restored afterwards) and timed on the same seeded inputs,
forward alone (under torch.inference_mode) and forward plus backward (torch.autograd.grad of a
fixed output gradient). Each row also gives the largest absolute difference of the output, and of
the input gradients, from the torch backend, whose functions are the reference numerics.

Shapes, from the VGGT-1B config and the image size: P = 5 + (H/14)(W/14) tokens per frame (camera
token, 4 registers, patches), 16 heads of width 64, MLP hidden 4096.

Example: python benchmarks/bench_kernels.py --frames 8 --dtype bfloat16 --json kernels.json
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from common import (
    add_device_and_timing,
    add_threads_and_json,
    aligned_table,
    check_resolution,
    environment,
    environment_line,
    forced_backend,
    int_at_least,
    prepare_device,
    time_calls,
    write_json,
)

from vggt.config import VGGTConfig
from vggt.layers.rope import RopeTables
from vggt.runtime import kernels, parse_dtype, peak_memory_bytes, reset_peak_memory

DEVICE_BACKENDS = {"cpu": ("torch", "cuda"), "cuda": ("torch", "cuda"), "npu": ("torch", "npu")}
KERNEL_DESCRIPTIONS = {
    "attention_frame": "attention(q, k, v), q/k/v [S, heads, P, head_dim]: frame attention",
    "attention_global": "attention(q, k, v), q/k/v [1, heads, S*P, head_dim]: global attention",
    "rope": "RopeTables.apply(q), q [S, heads, P, head_dim]: rotary_mul on both 32-channel halves "
    "([1, 1, P, 32] tables, angles in [0, pi]) and cat",
    "gelu": "exact GELU of the MLP hidden [S, P, 4 * embed_dim]",
}
SEED = 0
MIB = 1024**2


@dataclass
class Case:
    """One kernel at one shape: its call on fixed inputs, the inputs it differentiates, the output gradient."""

    kernel: str
    shape: str
    call: Callable[[], torch.Tensor]
    differentiable: tuple[torch.Tensor, ...]
    grad_output: torch.Tensor | None


@dataclass
class Row:
    """One (kernel, backend) measurement: times in milliseconds, differences from the torch backend, memory."""

    kernel: str
    shape: str
    dtype: str
    device: str
    backend: str
    warmup: int
    repeats: int
    fwd_mean_ms: float
    fwd_min_ms: float
    fwd_bwd_mean_ms: float | None
    fwd_bwd_min_ms: float | None
    max_abs_diff: float
    grad_max_abs_diff: float | None
    peak_bytes: int | None


# inputs ----------------------------------------------------------------------------------------
@dataclass
class Shapes:
    """The VGGT-1B numbers the kernels see for S frames of H x W images."""

    frames: int
    tokens: int
    heads: int
    head_dim: int
    hidden: int

    @classmethod
    def vggt_1b(cls, frames: int, height: int, width: int) -> Shapes:
        config = VGGTConfig.vggt_1b()
        patches = (height // config.patch_size) * (width // config.patch_size)
        return cls(
            frames=frames,
            tokens=1 + config.num_register_tokens + patches,  # camera token, registers, patches
            heads=config.num_heads,
            head_dim=config.embed_dim // config.num_heads,
            hidden=int(config.embed_dim * config.mlp_ratio),
        )


def build_cases(shapes: Shapes, device: torch.device, dtype: torch.dtype, backward: bool) -> Iterator[Case]:
    """The four kernel cases, each built only when the previous one is done with (its memory is freed first)."""
    generator = torch.Generator().manual_seed(SEED)  # CPU generator: the same inputs on every device

    def normal(shape: tuple[int, ...], requires_grad: bool = True) -> torch.Tensor:
        tensor = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        return tensor.requires_grad_(requires_grad)

    def gradient(shape: tuple[int, ...]) -> torch.Tensor | None:
        return normal(shape, requires_grad=False) if backward else None

    def attention(kernel: str, shape: tuple[int, ...]) -> Case:
        q, k, v = normal(shape), normal(shape), normal(shape)
        return Case(kernel, _dims(shape), lambda: kernels.attention(q, k, v), (q, k, v), gradient(shape))

    def rope(shape: tuple[int, ...]) -> Case:
        x = normal(shape)
        half = (1, 1, shape[2], shape[3] // 2)
        angles = [torch.rand(half, generator=generator) * math.pi for _ in range(2)]  # y and x angles
        cos_sin = (f(a).to(device=device, dtype=dtype) for a in angles for f in (torch.cos, torch.sin))
        tables = RopeTables(*cos_sin)  # cos_y, sin_y, cos_x, sin_x in x's dtype: apply()'s casts are no-ops
        return Case("rope", _dims(shape), lambda: tables.apply(x), (x,), gradient(shape))

    def gelu(shape: tuple[int, ...]) -> Case:
        x = normal(shape)
        return Case("gelu", _dims(shape), lambda: kernels.gelu(x), (x,), gradient(shape))

    s, p, h, d = shapes.frames, shapes.tokens, shapes.heads, shapes.head_dim
    yield attention("attention_frame", (s, h, p, d))
    yield attention("attention_global", (1, h, s * p, d))
    yield rope((s, h, p, d))
    yield gelu((s, p, shapes.hidden))


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


# measuring -------------------------------------------------------------------------------------
def evaluate(case: Case) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The case's output and, when it has an output gradient, its input gradients; both float32 on the CPU."""
    if case.grad_output is None:
        with torch.inference_mode():
            return case.call().float().cpu(), ()
    out = case.call()
    grads = torch.autograd.grad(out, case.differentiable, case.grad_output)
    return out.detach().float().cpu(), tuple(g.float().cpu() for g in grads)  # on the CPU: out of the memory peaks


def max_abs_diff(ours: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> float:
    """The largest |a - b| over pairs of same-shaped tensors."""
    return max(float((a - b).abs().max()) for a, b in zip(ours, reference))


def measure(
    case: Case,
    backend: str,
    reference: tuple[torch.Tensor, tuple[torch.Tensor, ...]],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> Row:
    """Check `case` under `backend` against the reference, then time it and take the allocator peak."""
    with forced_backend(backend):
        out, grads = evaluate(case)
        diff = max_abs_diff([out], [reference[0]])
        grad_diff = max_abs_diff(grads, reference[1]) if grads else None
        del out, grads
        gc.collect()
        reset_peak_memory(device)  # from here the peak counts the inputs and what the calls allocate
        with torch.inference_mode():
            forward = time_calls(case.call, device, warmup, repeats)
        backward = None
        if case.grad_output is not None:
            backward = time_calls(
                lambda: torch.autograd.grad(case.call(), case.differentiable, case.grad_output), device, warmup, repeats
            )
        peak = peak_memory_bytes(device)
    return Row(
        kernel=case.kernel,
        shape=case.shape,
        dtype=str(case.differentiable[0].dtype).removeprefix("torch."),
        device=str(device),
        backend=backend,
        warmup=warmup,
        repeats=repeats,
        fwd_mean_ms=1e3 * statistics.fmean(forward),
        fwd_min_ms=1e3 * min(forward),
        fwd_bwd_mean_ms=None if backward is None else 1e3 * statistics.fmean(backward),
        fwd_bwd_min_ms=None if backward is None else 1e3 * min(backward),
        max_abs_diff=diff,
        grad_max_abs_diff=grad_diff,
        peak_bytes=peak,
    )


# output ----------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table."""
    header = (
        "kernel",
        "shape",
        "dtype",
        "backend",
        "fwd mean ms",
        "fwd min ms",
        "fwd+bwd mean ms",
        "fwd+bwd min ms",
        "max diff",
        "grad diff",
        "peak MiB",
    )
    cells = [
        (
            r.kernel,
            r.shape,
            r.dtype,
            r.backend,
            _ms(r.fwd_mean_ms),
            _ms(r.fwd_min_ms),
            _ms(r.fwd_bwd_mean_ms),
            _ms(r.fwd_bwd_min_ms),
            f"{r.max_abs_diff:.2e}",
            "n/a" if r.grad_max_abs_diff is None else f"{r.grad_max_abs_diff:.2e}",
            "n/a" if r.peak_bytes is None else f"{r.peak_bytes / MIB:.1f}",
        )
        for r in rows
    ]
    return aligned_table(header, cells)


def notes(device: torch.device, backends: Sequence[str], on_allocator: bool) -> list[str]:
    """The comment lines printed above the table: what each kernel row ran and what the columns mean."""
    lines = [f"# {kernel}: {text}" for kernel, text in KERNEL_DESCRIPTIONS.items()]
    lines.append(
        "# ms: host wall clock per synchronized call; diff: max |output - torch backend|; "
        "grad diff: the same over the input gradients"
    )
    if device.type == "cpu" and "cuda" in backends:
        lines.append(
            "# cpu: the cuda backend's SDPA (flash / efficient / math kernels only) runs PyTorch's CPU "
            "flash-attention kernel on CPU tensors, as the torch backend does"
        )
    if "cuda" in backends:
        lines.append(
            "# the cuda backend has no rotary_mul or gelu of its own: its rope and gelu rows run the torch code"
        )
    if on_allocator:
        lines.append("# peak MiB: allocator peak over the row's timed calls, inputs and output gradient included")
    else:
        lines.append(f"# peak MiB: n/a on {device.type} (no allocator statistics)")
    return lines


# command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    kernel_lines = "\n".join(f"  {kernel}: {text}" for kernel, text in KERNEL_DESCRIPTIONS.items())
    parser = argparse.ArgumentParser(
        description=(
            "Time the runtime kernels (attention, RoPE rotary_mul, exact GELU) at VGGT-1B shapes for every\n"
            "kernel backend that runs on the device, forward and forward+backward, and check each backend\n"
            "against the torch reference. Prints one table row per kernel and backend to stdout; progress\n"
            "goes to stderr."
        ),
        epilog=(
            f"kernels (S frames, P = 5 + (H/14)(W/14) tokens per frame, 16 heads, head_dim 64):\n{kernel_lines}\n"
            "\n"
            "backends (forced one at a time with VGGT_KERNELS, restored afterwards):\n"
            "  cpu: torch, cuda (the cuda backend's SDPA runs PyTorch's CPU flash-attention kernel on CPU tensors)\n"
            "  cuda: torch, cuda        npu: torch, npu\n"
            "  The cuda backend routes rotary_mul and gelu to the torch code; npu has fused ops for all three.\n"
            "\n"
            "columns:\n"
            "  fwd: the call under torch.inference_mode; fwd+bwd: the call plus torch.autograd.grad of a fixed\n"
            "  random output gradient w.r.t. the inputs (q, k, v or x). Times are host wall clock in ms around\n"
            "  synchronized calls, so launch overhead counts. max diff / grad diff: largest |difference| from the\n"
            "  torch backend of the output / input gradients (0 for the torch rows by definition). peak MiB: the\n"
            "  allocator peak over the row's timed calls on an accelerator, inputs included; n/a on the CPU.\n"
            "\n"
            "examples:\n"
            "  python benchmarks/bench_kernels.py\n"
            "  python benchmarks/bench_kernels.py --dtype bfloat16 --frames 8 --json kernels.json\n"
            "  python benchmarks/bench_kernels.py --device cuda --backends cuda --no-backward --repeats 50"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--frames", type=int_at_least(1), default=2, help="frame count S (default: %(default)s)")
    parser.add_argument(
        "--height", type=int_at_least(1), default=518, help="image height, a multiple of 14 (default: %(default)s)"
    )
    parser.add_argument(
        "--width", type=int_at_least(1), default=518, help="image width, a multiple of 14 (default: %(default)s)"
    )
    add_device_and_timing(
        parser, dtype_help="dtype of the input tensors; no autocast", timed="calls", warmup=2, repeats=10
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=kernels.BACKENDS,
        default=None,
        help="kernel backends to time, each valid for the device (default: all of them: cpu and cuda devices "
        "torch cuda, npu devices torch npu)",
    )
    parser.add_argument(
        "--no-backward", action="store_true", help="time the forward only (no fwd+bwd timing, no grad diff)"
    )
    add_threads_and_json(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmark for the command line `argv` (default sys.argv[1:]) and return its rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    patch = VGGTConfig.vggt_1b().patch_size
    check_resolution(parser, args, patch)
    device = prepare_device(parser, args)
    valid = DEVICE_BACKENDS[device.type]
    backends = list(dict.fromkeys(args.backends or valid))  # keeps the order given, drops repeats
    for backend in backends:
        if backend not in valid:
            parser.error(f"--backends {backend} does not run on {device}; there use {' or '.join(valid)}")
    dtype = parse_dtype(args.dtype, device)
    shapes = Shapes.vggt_1b(args.frames, args.height, args.width)
    env = environment(device)

    rows = []
    for case in build_cases(shapes, device, dtype, backward=not args.no_backward):
        with forced_backend("torch"):
            reference = evaluate(case)
        for backend in backends:
            print(f"{case.kernel} {case.shape} {args.dtype} {backend} ...", file=sys.stderr)
            rows.append(measure(case, backend, reference, device, args.warmup, args.repeats))
        del case, reference  # the next case is then built without this one's tensors alive

    print(environment_line(env))
    for line in notes(device, backends, on_allocator=peak_memory_bytes(device) is not None):
        print(line)
    print(format_table(rows))
    write_json(args.json, env, rows)
    return rows


if __name__ == "__main__":
    main()

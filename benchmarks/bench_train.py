"""Training throughput, peak memory and model FLOPs utilisation of one training config.

The config is composed like the launcher composes it (a preset of training/config plus Hydra
overrides) and the trainer of training/trainer.py is built from it, so the model, the frozen
modules, the optimizer, the precision and the batch shapes are exactly those of a real run. The
batches come from the trainer's own loader but are all read before timing starts: the timed
steps exclude data loading (in real runs the trainer's "Data Time" log column reports it). Each
timed step is `trainer.train_step(trainer.to_device(batch))`, bracketed by device synchronisations.

Throughput follows the published FPS definition, sequences per second: per-device sequences per
step x world size / step time (summed over the timed steps when batch shapes vary). FLOPs are
counted with torch.utils.flop_counter.FlopCounterMode on extra, untimed steps, one per distinct
batch shape; MFU is the achieved FLOP rate over a peak the user gives with --peak-tflops, or measured (auto).

Example: python benchmarks/bench_train.py --config-name synthetic device=cpu
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from common import (
    PUBLISHED_PEAKS,
    MemoryProbe,
    aligned_table,
    environment,
    environment_line,
    forced_backend,
    format_gib,
    int_at_least,
    measured_gemm_peak_tflops,
    time_calls,
    write_json,
)
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

import training
from training.trainer import Trainer
from training.utils import distributed
from training.utils.logging import LOGGER
from training.utils.optim import step_unless_nonfinite
from vggt.runtime import synchronize

CONFIG_DIR = Path(training.__file__).resolve().parent / "config"
CONFIG_NAMES = ("synthetic", "perf", "full", "default")
SCENES_DIR = "runs/bench_train_scenes"
# a benchmark starts fresh (before the user's overrides) and never validates (after them, so that
# data.val.* overrides copied from a training command still compose)
FIRST_OVERRIDES = ("checkpoint.resume=null", "model.random_frozen_weights=true")  # throughput needs no weights
LAST_OVERRIDES = ("data.val=null",)
# generated scenes in place of Co3D: 24 frames per sequence cover every preset's img_nums and min_num_images
SYNTHETIC_DATA_OVERRIDES = (
    "data.train.kind=synthetic",
    f"++data.train.cache_dir={SCENES_DIR}",
    "++data.train.num_sequences=8",
    "++data.train.frames_per_sequence=24",
    "++data.train.scene_size=[160,120]",
    "++data.train.scene_seed=0",
    "data.train.co3d_dir=null",
    "data.train.annotation_dir=null",
)


@dataclass
class Row:
    """One measured training configuration: what ran, how fast, how much memory, how many FLOPs."""

    config_name: str
    overrides: list[str]
    synthetic_data: bool
    device: str
    world_size: int
    model: str
    frozen: list[str]
    trainable_params: int
    total_params: int
    amp_dtype: str
    optimizer: str  # the class the runtime chose for the device, and how it steps (fused, foreach)
    warmup: int
    steps: int
    batch_shapes: dict[str, int]  # "BxSxHxW" of the per-device images -> timed steps with that shape
    sequences_per_step: float  # per device, mean over the timed steps
    images_per_step: float  # per device: sequences x frames, mean over the timed steps
    mean_step_s: float
    min_step_s: float
    std_step_s: float
    steps_per_s: float
    sequences_per_s: float  # over all devices
    images_per_s: float  # over all devices
    peak_bytes: int | None
    baseline_bytes: int | None
    memory_kind: str
    flops_per_step: float  # per device, mean over the timed steps
    attention_flops_counted: bool
    achieved_tflops: float  # per device
    peak_tflops: float | None
    peak_source: str | None  # "given" (--peak-tflops X) or how --peak-tflops auto measured it
    mfu: float | None
    skip_flag_read_s: float | None = None  # per step: the host read of the non-finite flag (None: device-side skip)
    notes: list[str] = field(default_factory=list)


# config -----------------------------------------------------------------------------------------
def compose_config(config_name: str, overrides: Sequence[str], synthetic_data: bool) -> DictConfig:
    """The preset with the user's overrides after the benchmark's own, so that theirs win (data.val aside)."""
    first = [*FIRST_OVERRIDES, *(SYNTHETIC_DATA_OVERRIDES if synthetic_data else ())]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=[*first, *overrides, *LAST_OVERRIDES])


# FLOPs ------------------------------------------------------------------------------------------
def _dims(x: Any) -> tuple[int, ...]:
    """A tensor's shape, or a shape as is (FlopCounterMode hands formulas one or the other by version)."""
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(x)


def attention_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """Softmax attention forward: q k^T and p v, 2 FLOPs per multiply-add (torch's own SDPA formula)."""
    *batch, s_q, d_q = _dims(query)
    s_k, d_v = _dims(key)[-2], _dims(value)[-1]
    return 2 * math.prod(batch) * s_q * s_k * (d_q + d_v)


def attention_backward_flops(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """Softmax attention backward as torch counts its fused kernels: q k^T again, then dP, dV, dQ, dK."""
    *batch, s_q, d_q = _dims(query)
    s_k, d_v = _dims(key)[-2], _dims(value)[-1]
    return 2 * math.prod(batch) * s_q * s_k * (3 * d_q + 2 * d_v)


# attention ops that SDPA reaches on the CPU and on out-of-tree devices, for which FlopCounterMode has
# no formula of its own (in torch 2.13 at least); where a torch has one, it is the same formula
ATTENTION_OPS = {
    "_scaled_dot_product_flash_attention_for_cpu": attention_flops,
    "_scaled_dot_product_flash_attention_for_cpu_backward": attention_backward_flops,
    "_scaled_dot_product_fused_attention_overrideable": attention_flops,
    "_scaled_dot_product_fused_attention_overrideable_backward": attention_backward_flops,
}


def attention_formulas() -> dict[Any, Callable[..., int]]:
    """FlopCounterMode custom_mapping for the ATTENTION_OPS that exist in this torch (they vary by version)."""
    ops = {name: getattr(torch.ops.aten, name, None) for name in ATTENTION_OPS}
    return {op: ATTENTION_OPS[name] for name, op in ops.items() if op is not None}


def count_flops(trainer: Trainer, batches: Sequence[dict[str, Any]]) -> tuple[list[int], bool]:
    """FLOPs of one train step on each batch, and whether attention was among the counted ops.

    Counted once per distinct batch shape, on extra steps that update the weights like any other.
    The kernels are forced to the torch backend for these steps: attention then goes through SDPA,
    which FlopCounterMode knows, where a vendor's fused op would be invisible to it.
    """
    per_shape: dict[tuple[int, ...], int] = {}
    attention_counted = True
    for batch in batches:
        shape = tuple(batch["images"].shape)
        if shape in per_shape:
            continue
        counter = FlopCounterMode(display=False, custom_mapping=attention_formulas())
        with forced_backend("torch"), counter:
            trainer.train_step(trainer.to_device(batch))
        per_shape[shape] = counter.get_total_flops()
        counted_ops = counter.get_flop_counts().get("Global", {})
        attention_counted = attention_counted and any("attention" in str(op) for op in counted_ops)
    return [per_shape[tuple(batch["images"].shape)] for batch in batches], attention_counted


# the non-finite skip's host read --------------------------------------------------------------------
def skip_flag_read_cost(trainer: Trainer, batches: Sequence[dict[str, Any]]) -> float | None:
    """Seconds per step that the host read of the non-finite-gradient flag costs, or None when nothing reads it
    (an optimizer that skips on the device, or the GradScaler's own skip under float16 loss scaling).

    The steps run back to back with one synchronisation at the end (so the device can run ahead of the host, as
    in training), once as the trainer runs them and once with an unconditional optimizer step; each way twice,
    interleaved, the faster of each kept. The difference per step is what the read costs.
    """
    if trainer.scaler.is_enabled() or getattr(trainer.optimizer, "_step_supports_amp_scaling", False):
        return None

    def run(stepper: Callable[[torch.optim.Optimizer, torch.Tensor], None]) -> float:
        with mock.patch("training.trainer.step_unless_nonfinite", stepper):
            synchronize(trainer.device)
            start = time.perf_counter()
            for batch in batches:
                trainer.train_step(trainer.to_device(batch))
            synchronize(trainer.device)
            return time.perf_counter() - start

    def unconditional(optimizer: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
        optimizer.step()

    timings = {"read": [], "no read": []}
    for _ in range(2):
        timings["read"].append(run(step_unless_nonfinite))
        timings["no read"].append(run(unconditional))
    return (min(timings["read"]) - min(timings["no read"])) / len(batches)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class with its fused / foreach switch, e.g. "torch.optim.adamw.AdamW (fused)"."""
    kind = type(optimizer)
    modes = [mode for mode in ("fused", "foreach") if optimizer.defaults.get(mode)]
    return f"{kind.__module__}.{kind.__qualname__}" + (f" ({', '.join(modes)})" if modes else "")


# measuring --------------------------------------------------------------------------------------
def build_trainer(cfg: DictConfig, run_dir: Path) -> Trainer:
    """The trainer of `cfg`, its log lines sent to stderr so that stdout carries only the results."""
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's log handler binds sys.stdout when created
        return Trainer(cfg, run_dir)


def close_trainer(trainer: Trainer) -> None:
    """Close what the trainer opened in its run dir (TensorBoard, log file) and leave the process group."""
    trainer.tensorboard.close()
    for handler in LOGGER.handlers:
        handler.close()
    LOGGER.handlers.clear()
    distributed.teardown()


def preload(trainer: Trainer, count: int) -> list[dict[str, Any]]:
    """The first `count` batches of epoch 0 from the trainer's loader, held in host memory."""
    loader = trainer.loader(trainer.train_set, trainer.cfg.data.train, epoch=0, start_step=0, num_batches=count)
    return list(loader)


def measure(trainer: Trainer, args: argparse.Namespace) -> Row:
    """Warm up, time `args.steps` train steps with their memory peak, then count their FLOPs."""
    device, is_main = trainer.device, trainer.dist.is_main
    if is_main:
        print(f"reading {args.warmup + args.steps} batches before timing ...", file=sys.stderr)
    batches = preload(trainer, args.warmup + args.steps)
    queue = iter(batches)
    trainer.set_train_mode()

    def step() -> None:
        trainer.train_step(trainer.to_device(next(queue)))

    label = "train step" if is_main else None
    time_calls(step, device, args.warmup, 0, label)
    probe = MemoryProbe(device)  # after warm-up: the baseline holds the optimizer state too
    probe.start()
    seconds = time_calls(step, device, 0, args.steps, label)
    peak = probe.peak()

    timed = batches[args.warmup :]
    if is_main:
        shapes = len({b["images"].shape for b in timed})
        print(f"counting FLOPs with FlopCounterMode on {shapes} extra steps ...", file=sys.stderr)
    flops, attention_counted = count_flops(trainer, timed)
    if is_main:
        print("timing the non-finite skip's host read (4 x the timed steps, back to back) ...", file=sys.stderr)
    skip_read = skip_flag_read_cost(trainer, timed)

    total_s = sum(seconds)
    sequences = [b["images"].shape[0] for b in timed]
    images = [b["images"].shape[0] * b["images"].shape[1] for b in timed]
    world = trainer.dist.world_size
    achieved = sum(flops) / total_s / 1e12
    params = list(trainer.model.parameters())
    base = trainer.cfg.model.config
    peak_tflops, peak_source = args.peak_tflops, None if args.peak_tflops is None else "given"
    if args.peak_tflops == "auto":
        if is_main:
            print(f"measuring the {trainer.amp_dtype} GEMM peak of {device} ...", file=sys.stderr)
        peak_tflops, peak_source = measured_gemm_peak_tflops(device, trainer.amp_dtype)
    notes = []
    if not attention_counted:
        notes.append("no attention op was counted: FLOPs, TFLOP/s and MFU leave attention out (lower bounds)")
    return Row(
        config_name=args.config_name,
        overrides=list(args.overrides),
        synthetic_data=args.synthetic_data,
        device=str(device),
        world_size=world,
        model=base if isinstance(base, str) else "custom (model.config mapping)",
        frozen=list(trainer.frozen),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_params=sum(p.numel() for p in params),
        amp_dtype=str(trainer.amp_dtype).removeprefix("torch."),
        optimizer=describe_optimizer(trainer.optimizer),
        warmup=args.warmup,
        steps=args.steps,
        batch_shapes=dict(Counter("x".join(map(str, b["images"].shape[:2] + b["images"].shape[3:])) for b in timed)),
        sequences_per_step=statistics.fmean(sequences),
        images_per_step=statistics.fmean(images),
        mean_step_s=statistics.fmean(seconds),
        min_step_s=min(seconds),
        std_step_s=statistics.pstdev(seconds),
        steps_per_s=len(seconds) / total_s,
        sequences_per_s=sum(sequences) * world / total_s,
        images_per_s=sum(images) * world / total_s,
        peak_bytes=peak,
        baseline_bytes=probe.baseline,
        memory_kind=probe.kind,
        flops_per_step=statistics.fmean(flops),
        attention_flops_counted=attention_counted,
        achieved_tflops=achieved,
        peak_tflops=peak_tflops,
        peak_source=peak_source,
        mfu=achieved / peak_tflops if peak_tflops else None,
        skip_flag_read_s=skip_read,
        notes=notes,
    )


# output -----------------------------------------------------------------------------------------
def format_table(row: Row) -> str:
    """The row as an aligned two-column table of metric and value."""
    shapes = ", ".join(f"{shape}: {count}" for shape, count in row.batch_shapes.items())
    cells = [
        ("model", f"{row.model} (frozen: {', '.join(row.frozen) or 'nothing'})"),
        ("parameters trainable / total", f"{row.trainable_params:,} / {row.total_params:,}"),
        ("amp dtype", row.amp_dtype),
        ("optimizer", row.optimizer),
        ("device x world size", f"{row.device} x {row.world_size}"),
        ("batch shapes per device BxSxHxW: timed steps", shapes),
        ("sequences / images per step per device", f"{row.sequences_per_step:g} / {row.images_per_step:g}"),
        ("step time mean / min / std s", f"{row.mean_step_s:.4f} / {row.min_step_s:.4f} / {row.std_step_s:.4f}"),
        ("steps/s", f"{row.steps_per_s:.4f}"),
        ("sequences/s (all devices)", f"{row.sequences_per_s:.4f}"),
        ("images/s (all devices)", f"{row.images_per_s:.4f}"),
        ("peak memory GiB", format_gib(row.peak_bytes)),
        ("held before the timed steps GiB", format_gib(row.baseline_bytes)),
        ("memory kind", row.memory_kind),
        ("FLOPs per step per device", f"{row.flops_per_step:.4g}"),
        ("attention FLOPs counted", "yes" if row.attention_flops_counted else "NO"),
        ("achieved TFLOP/s per device", f"{row.achieved_tflops:.4g}"),
        ("peak TFLOP/s (--peak-tflops)", "n/a" if row.peak_tflops is None else f"{row.peak_tflops:.4g}"),
        ("peak from", row.peak_source or "n/a"),
        ("MFU", "n/a (give --peak-tflops)" if row.mfu is None else f"{row.mfu:.2%}"),
        (
            "non-finite skip: host flag read per step ms",
            "none (device-side skip)" if row.skip_flag_read_s is None else f"{row.skip_flag_read_s * 1e3:.3f}",
        ),
    ]
    return aligned_table(("metric", "value"), cells)


def peaks_table() -> str:
    """PUBLISHED_PEAKS as an indented table for the help text."""
    rows = [(accelerator, dtype, f"{tflops:g}") for accelerator, dtype, tflops, _ in PUBLISHED_PEAKS]
    table = aligned_table(("accelerator", "dtype", "dense peak TFLOP/s"), rows)
    return "\n".join(f"  {line}" for line in table.splitlines())


# command line -----------------------------------------------------------------------------------
def peak_or_auto(text: str) -> float | str:
    """An argparse type: "auto" or a finite float > 0."""
    return "auto" if text == "auto" else positive_float(text)


def positive_float(text: str) -> float:
    """An argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Time training steps of a training config (training/config/<name>.yaml plus Hydra overrides)\n"
            "and report throughput, peak memory, FLOPs and MFU. The results go to stdout; progress and the\n"
            "trainer's log lines go to stderr."
        ),
        epilog=(
            "what is timed:\n"
            "  warmup + steps batches are read from the trainer's own loader first, so data loading is\n"
            "  not timed (in real runs the trainer logs it as 'Data Time'). Each step is then\n"
            "  train_step(to_device(batch)) between two device synchronisations: host-to-device copy,\n"
            "  point normalisation, forward, loss, backward, clipping and the optimizer step.\n"
            "  sequences/s = per-device sequences per step x world size / step time (the published FPS);\n"
            "  images/s counts sequences x frames. The run dir is a temporary one unless --run-dir;\n"
            "  checkpoint.resume=null comes before your overrides, data.val=null after them.\n"
            "\n"
            "memory:\n"
            "  accelerator: the allocator peak over the timed steps. CPU: the process's peak RSS (VmHWM,\n"
            "  reset through /proc/self/clear_refs before the timed steps), which includes the weights,\n"
            "  the optimizer state, the read-ahead batches and the Python/torch runtime.\n"
            "\n"
            "FLOPs and MFU:\n"
            "  FlopCounterMode counts matmuls, convolutions and attention of one extra step per distinct\n"
            "  batch shape (elementwise ops, norms and the optimizer are not counted), with the kernels\n"
            "  forced to the torch backend (SDPA) so that attention is visible to it. Recomputation under\n"
            "  activation checkpointing is counted as executed. MFU = achieved TFLOP/s per device /\n"
            "  --peak-tflops: a number you give, or auto, which times square GEMMs in the training dtype on\n"
            "  the device after the timed steps (on a CPU the only peak there is: AMX, AVX512-BF16 and\n"
            "  clocks vary by host); the peak is never guessed from the device name. Published dense peaks\n"
            "  (vendor datasheet numbers, not measured; check your exact SKU, clocks and dtype):\n"
            f"{peaks_table()}\n"
            "\n"
            "--synthetic-data:\n"
            "  replaces data.train with generated scenes (data.train.kind=synthetic, 8 sequences of 24\n"
            "  frames rendered at 160x120 on first use, cached in\n"
            f"  {SCENES_DIR}; override data.train.cache_dir to move them). The model, optimizer,\n"
            "  batch size and data.img_size of the preset stay: at 518 px the rendered images are\n"
            "  upscaled, which changes the pixels but no tensor shape, so the step does the same work.\n"
            "\n"
            "examples:\n"
            "  python benchmarks/bench_train.py --config-name synthetic device=cpu\n"
            "  python benchmarks/bench_train.py --config-name perf --synthetic-data --peak-tflops 313\n"
            "  python benchmarks/bench_train.py --config-name perf data.train.co3d_dir=/data/co3d \\\n"
            "      data.train.annotation_dir=/data/co3d_anno --steps 20 --json perf.json\n"
            "  torchrun --nproc_per_node 8 benchmarks/bench_train.py --config-name perf --synthetic-data"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config-name", choices=CONFIG_NAMES, default="synthetic", help="training preset (default: %(default)s)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Hydra overrides, as for python -m training.launch (e.g. device=cpu data.train.batch_size=4)",
    )
    parser.add_argument(
        "--warmup", type=int_at_least(0), default=2, help="untimed steps before timing (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int_at_least(1), default=10, help="timed steps (default: %(default)s)")
    parser.add_argument(
        "--synthetic-data",
        action="store_true",
        help="train on generated scenes instead of the preset's data set (no Co3D needed; see below)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=peak_or_auto,
        default=None,
        help="dense peak TFLOP/s of one device in the training dtype, for MFU, or auto: measured by timing GEMMs "
        "in that dtype (default: no MFU)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="the trainer's run dir, kept afterwards (default: a temporary directory, deleted at exit)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the environment and the row to this JSON file"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> Row:
    """Run the benchmark for the command line `argv` (default sys.argv[1:]) and return its row."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = compose_config(args.config_name, args.overrides, args.synthetic_data)
    except HydraException as err:
        parser.error(f"cannot compose --config-name {args.config_name} with {args.overrides}: {err}")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        parser.error(
            f"the {args.config_name} preset needs {' '.join(f'{key}=...' for key in missing)}; "
            "give them as overrides, or pass --synthetic-data to train on generated scenes"
        )

    with contextlib.ExitStack() as stack:
        run_dir = args.run_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_train-")))
        print(f"building the {args.config_name} trainer in {run_dir} ...", file=sys.stderr)
        trainer = build_trainer(cfg, run_dir)
        stack.callback(close_trainer, trainer)
        row = measure(trainer, args)
        env = environment(trainer.device)
        if not trainer.dist.is_main:
            return row

    print(environment_line(env))
    flags = ["--synthetic-data"] if args.synthetic_data else []
    print(f"# config {' '.join([args.config_name, *flags, *args.overrides])}")
    print("# data loading excluded (batches read before timing); each step synchronised; FLOPs by FlopCounterMode")
    for note in row.notes:
        print(f"# WARNING: {note}")
    print(format_table(row))
    write_json(args.json, env, [row])
    return row


if __name__ == "__main__":
    main()

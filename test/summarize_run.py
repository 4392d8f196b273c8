"""The launchers' summary of a training log: step time, throughput and final losses, as the published scripts.

    python test/summarize_run.py TRAIN_LOG --out SUMMARY --case-name VGGT_8p_perf --device-type npu \\
        --device-name Ascend910B --rank-size 8 --batch-size 15 --e2e-seconds 4321 [--losses] [--eval-json J]

Reads the trainer's progress lines
    Train Epoch: [e][i/N] | Batch Time: v (avg) | Data Time: v (avg) | Mem (GB): v | Loss/train_<name>: v (avg) | ...
(v: the mean over the steps since the previous line, one step when log_freq=1; avg: the epoch's running mean)
and writes `key = value` lines. AvgStepTime is computed as the published Ascend launchers do: take the last
100 Train lines, drop the first 10 of them (warm-up), average the Batch Time value v of the rest. Throughput
counts sequences: ActualFPS = BatchSize x RankSize / AvgStepTime (the published "FPS"), ImagesPerSec =
ActualFPS x ImagesPerSample. With --losses: Loss and LossObjective are the running means (avg) of
loss_reg_depth and loss_objective on the last Train line (the published accuracy figure). With --eval-json
(a `vggt eval co3d --out` report): AUC30, AUC15, AUC5, AUC3 (percent) and DepthAbsRel, its means over categories.

No torch import: it runs wherever Python does. Exit status 2 when the log cannot be summarised.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

NETWORK = "VGGT"
TIMED_LINES = 100  # the published launchers look at the last 100 Train lines ...
WARMUP_LINES = 10  # ... and drop the first 10 of them
LOSS_KEYS = {"Loss": "Loss/train_loss_reg_depth", "LossObjective": "Loss/train_loss_objective"}
ACCURACY_KEYS = ("AUC30", "AUC15", "AUC5", "AUC3", "DepthAbsRel")  # from the evaluation report's "mean"
BATCH_TIME = "Batch Time"
TRAIN_LINE = re.compile(r"Train Epoch: \[(\d+)\]\[ *(\d+)/(\d+)\] \| (.*)$")  # upstream pads the step
VALUE = re.compile(r"^(-?[\d.]+(?:e[-+]?\d+)?|nan|-?inf)(?: \((-?[\d.]+(?:e[-+]?\d+)?|nan|-?inf)\))?$")


class LogError(ValueError):
    """A log that cannot be summarised (no Train lines, a missing field); callers prefix the file's path."""


@dataclass(frozen=True)
class TrainLine:
    """One progress line: its position and, per field, the window value and (when printed) the running mean."""

    epoch: int
    step: int
    num_steps: int
    values: Mapping[str, float]
    averages: Mapping[str, float]


def parse_train_lines(lines: Iterable[str]) -> list[TrainLine]:
    """The `Train Epoch:` lines among `lines`, in order; other lines (warnings, Val lines) are skipped."""
    parsed = []
    for line in lines:
        match = TRAIN_LINE.search(line.rstrip("\n"))
        if not match:
            continue
        values, averages = {}, {}
        for part in match.group(4).split(" | "):
            name, sep, text = part.partition(": ")
            value = VALUE.match(text.strip()) if sep else None
            if value is None:
                continue  # e.g. a future free-text field: not a number
            values[name] = float(value.group(1))
            if value.group(2) is not None:
                averages[name] = float(value.group(2))
        parsed.append(TrainLine(int(match.group(1)), int(match.group(2)), int(match.group(3)), values, averages))
    return parsed


def read_train_lines(log: Path) -> list[TrainLine]:
    """parse_train_lines of a file; LogError when it is missing or holds no Train line."""
    if not log.is_file():
        raise LogError("no such file")
    rows = parse_train_lines(log.read_text(errors="replace").splitlines())
    if not rows:
        raise LogError("no 'Train Epoch:' line; did the training start? (see the end of the log)")
    return rows


def timed_lines(rows: list[TrainLine]) -> list[TrainLine]:
    """The lines AvgStepTime averages: the last 100, minus their first 10 (all of them when there are <= 10)."""
    last = rows[-TIMED_LINES:]
    return last[WARMUP_LINES:] if len(last) > WARMUP_LINES else last


def average_step_time(rows: list[TrainLine]) -> float:
    """Mean Batch Time (seconds per step) over timed_lines(rows)."""
    timed = timed_lines(rows)
    missing = [f"[{r.epoch}][{r.step}/{r.num_steps}]" for r in timed if BATCH_TIME not in r.values]
    if missing:
        raise LogError(f"Train lines without '{BATCH_TIME}': {', '.join(missing[:3])}")
    return sum(r.values[BATCH_TIME] for r in timed) / len(timed)


def summarize(
    rows: list[TrainLine],
    *,
    case_name: str,
    device_type: str,
    device_name: str,
    rank_size: int,
    batch_size: int,
    images_per_sample: int = 2,
    e2e_seconds: float | None = None,
    losses: bool = False,
) -> dict[str, str]:
    """The summary's `key = value` fields, in file order, formatted."""
    step_time = average_step_time(rows)
    if step_time <= 0:
        raise LogError(f"the average Batch Time is {step_time}: cannot compute a throughput")
    fps = batch_size * rank_size / step_time
    summary = {
        "Network": NETWORK,
        "CaseName": case_name,
        "DeviceType": device_type,
        "DeviceName": device_name,
        "RankSize": str(rank_size),
        "BatchSize": str(batch_size),
        "ImagesPerSample": str(images_per_sample),
        "E2ETrainingTime": "n/a" if e2e_seconds is None else f"{e2e_seconds:.0f}",
        "TimedLogLines": str(len(timed_lines(rows))),
        "AvgStepTime": f"{step_time:.4f}",
        "ActualFPS": f"{fps:.2f}",
        "ImagesPerSec": f"{fps * images_per_sample:.2f}",
    }
    if losses:
        last = rows[-1]
        for key, field in LOSS_KEYS.items():
            if field not in last.averages:
                raise LogError(f"the last Train line [{last.epoch}][{last.step}/{last.num_steps}] has no '{field}'")
            summary[key] = f"{last.averages[field]:.4f}"
    return summary


def accuracy_fields(eval_json: Path) -> dict[str, str]:
    """ACCURACY_KEYS from a `vggt eval` report ("n/a" where it has none, e.g. no depth maps); LogError if unreadable."""
    try:
        mean = json.loads(eval_json.read_text())["mean"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LogError(f"{eval_json} is not a vggt eval report ({err})") from err
    digits = {"DepthAbsRel": 4}
    return {
        key: "n/a" if mean.get(key) is None else f"{float(mean[key]):.{digits.get(key, 2)}f}" for key in ACCURACY_KEYS
    }


def format_summary(summary: Mapping[str, str]) -> str:
    return "".join(f"{key} = {value}\n" for key, value in summary.items())


def read_summary(path: Path) -> dict[str, str]:
    """The `key = value` lines of a summary file (other lines are ignored)."""
    fields = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the launcher summary (AvgStepTime, ActualFPS, ImagesPerSec, [Loss]) of a training log.",
        epilog="AvgStepTime: mean Batch Time of the last 100 Train lines minus their first 10, as the published "
        "Ascend launchers. ActualFPS = batch size x ranks / AvgStepTime (sequences per second).",
    )
    parser.add_argument("log", type=Path, help="torchrun's output (train.log) or the trainer's log.txt")
    parser.add_argument("--out", type=Path, required=True, help="the summary file to write (key = value lines)")
    parser.add_argument("--case-name", required=True, help="e.g. VGGT_8p_perf")
    parser.add_argument("--device-type", required=True, help="npu, cuda or cpu: the device the run used")
    parser.add_argument("--device-name", required=True, help="the hardware's name (vggt.runtime.device_name)")
    parser.add_argument("--rank-size", type=int, required=True, help="processes (cards) of the run")
    parser.add_argument("--batch-size", type=int, required=True, help="sequences per process and step")
    parser.add_argument("--images-per-sample", type=int, default=2, help="images per sequence (default: 2)")
    parser.add_argument("--e2e-seconds", type=float, help="wall time of the whole run")
    parser.add_argument("--losses", action="store_true", help="also write Loss and LossObjective (the full run)")
    parser.add_argument(
        "--eval-json", type=Path, help="a vggt eval report (co3d_eval.json): also write AUC30 ... AUC3, DepthAbsRel"
    )
    args = parser.parse_args(argv)
    try:
        summary = summarize(
            read_train_lines(args.log),
            case_name=args.case_name,
            device_type=args.device_type,
            device_name=args.device_name,
            rank_size=args.rank_size,
            batch_size=args.batch_size,
            images_per_sample=args.images_per_sample,
            e2e_seconds=args.e2e_seconds,
            losses=args.losses,
        )
        if args.eval_json is not None:
            summary |= accuracy_fields(args.eval_json)
    except LogError as err:
        print(f"summarize_run.py: {args.log}: {err}", file=sys.stderr)
        return 2
    args.out.write_text(format_summary(summary))
    print(format_summary(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

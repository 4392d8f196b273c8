"""Compare two training runs, e.g. the same launcher on an NPU and on a GPU: speed and loss agreement.

    python test/compare_runs.py RUN_A RUN_B [--labels NPU GPU] [--out DIR] [--max-loss-rel-diff X] [--max-auc-diff P]

A run is a launcher's output folder (train.log and its key = value summary, e.g.
test/output/VGGT_8p_perf/) or a trainer run folder (log.txt; ranks and batch size then come from its
"world size" line and .hydra/config.yaml). Writes DIR/report.md (settings, step time, throughput,
speedup, final losses, per-step loss agreement) and DIR/loss_curves.png (needs matplotlib; without it
the report says so), and prints the report.

Step time and throughput are recomputed from each log as the launchers do (test/summarize_run.py).
Loss agreement: Train lines of both runs are paired on (epoch, step); for loss_objective and
loss_reg_depth the per-line relative difference is |A - B| / |B| (B is the reference), summarised as
mean, max and the mean over the last 10 % of the paired lines. --max-loss-rel-diff X fails the
comparison (exit 1) when that last-10 % mean exceeds X for either loss: early steps, where losses move
fast, do not decide it.

Accuracy: where a run folder holds a `vggt eval` report (eval/co3d_eval.json, as the full launcher writes),
the report lists AUC30, AUC15, AUC5, AUC3, DepthAbsRel, DepthDelta1.25 and PointOverall of both runs and A - B. The two
evaluations must have used the same protocol settings (frames, seed, categories, resolution, annotation
files' hashes); otherwise the comparison is refused (exit 2). --max-auc-diff P fails it (exit 1) when any
|AUC_A - AUC_B| exceeds P percentage points. Exit status 2 for unusable input (a missing folder, a log
without Train lines).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from summarize_run import LogError, TrainLine, average_step_time, read_summary, read_train_lines

COMPARED_LOSSES = ("loss_objective", "loss_reg_depth")
LAST_FRACTION = 0.10
HEADER = re.compile(r"\| device (\S+) \((.*)\) \| world size (\d+)")
DEFAULT_OUT = Path(__file__).resolve().parent / "output" / "comparison"
EVAL_REPORTS = (Path("eval") / "co3d_eval.json", Path("co3d_eval.json"))  # where a run folder keeps its evaluation
ACCURACY_METRICS = ("AUC30", "AUC15", "AUC5", "AUC3", "DepthAbsRel", "DepthDelta1.25", "PointOverall")


@dataclass
class Run:
    """One run's log and settings; None where the run folder does not say."""

    label: str
    folder: Path
    log: Path
    rows: list[TrainLine]
    summary: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    ranks: int | None = None
    batch_size: int | None = None
    images_per_sample: int | None = None
    evaluation: dict | None = None  # the run's `vggt eval` report

    def step_time(self) -> float:
        return average_step_time(self.rows)

    def sequences_per_second(self) -> float | None:
        if self.ranks is None or self.batch_size is None:
            return None
        return self.ranks * self.batch_size / self.step_time()

    def images_per_second(self) -> float | None:
        fps = self.sequences_per_second()
        return None if fps is None or self.images_per_sample is None else fps * self.images_per_sample

    def final_loss(self, name: str) -> float | None:
        """The running mean of `name` on the last Train line (the published accuracy figure)."""
        return self.rows[-1].averages.get(f"Loss/train_{name}")


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else None


def load_run(folder: Path, label: str) -> Run:
    """A launcher output folder (train.log + summary) or a trainer run folder (log.txt); LogError if neither."""
    if not folder.is_dir():
        raise LogError(f"{folder}: no such folder")
    if (folder / "train.log").is_file():
        log = folder / "train.log"
    elif (folder / "log.txt").is_file():
        log = folder / "log.txt"
    else:
        raise LogError(f"{folder}: neither train.log (a launcher's output folder) nor log.txt (a trainer run folder)")
    try:
        rows = read_train_lines(log)
    except LogError as err:
        raise LogError(f"{log}: {err}") from err
    run = Run(label, folder, log, rows)

    # the launcher names its summary after the folder (VGGT_8p_perf/VGGT_8p_perf.log); a renamed folder keeps one
    named = folder / f"{folder.name}.log"
    summaries = [named] if named.is_file() else sorted(p for p in folder.glob("*.log") if p.name != "train.log")
    if summaries:
        run.summary = read_summary(summaries[0])
    header = HEADER.search(log.read_text(errors="replace"))
    config_file = folder / ".hydra" / "config.yaml"
    config = (yaml.safe_load(config_file.read_text()) if config_file.is_file() else None) or {}
    train = (config.get("data") or {}).get("train") or {}
    img_nums = train.get("img_nums") or [None, None]

    device = run.summary.get("DeviceType"), run.summary.get("DeviceName")
    if device[0] is None and header:
        device = header.group(1).split(":")[0], header.group(2)
    run.device = f"{device[0]} ({device[1]})" if device[0] else None
    run.ranks = _int(run.summary.get("RankSize")) or (int(header.group(3)) if header else None)
    run.batch_size = _int(run.summary.get("BatchSize")) or _int(train.get("batch_size"))
    run.images_per_sample = _int(run.summary.get("ImagesPerSample")) or (
        _int(img_nums[0]) if img_nums[0] == img_nums[-1] else None
    )
    run.evaluation = read_evaluation(folder)
    return run


def read_evaluation(folder: Path) -> dict | None:
    """The first EVAL_REPORTS file in `folder`, or None; LogError when it is not an evaluation report."""
    path = next((folder / name for name in EVAL_REPORTS if (folder / name).is_file()), None)
    if path is None:
        return None
    try:
        report = json.loads(path.read_text())
        if not isinstance(report.get("protocol"), dict) or not isinstance(report.get("mean"), dict):
            raise ValueError("no protocol / mean entries")
    except ValueError as err:
        raise LogError(f"{path} is not a vggt eval report ({err})") from err
    report["path"] = str(path)
    return report


def check_same_protocol(a: Run, b: Run) -> None:
    """LogError naming the settings in which the two runs' evaluations differ (their numbers do not compare)."""
    pa, pb = a.evaluation["protocol"], b.evaluation["protocol"]
    differing = sorted(key for key in pa.keys() | pb.keys() if pa.get(key) != pb.get(key))
    if differing:
        details = "; ".join(f"{key}: {pa.get(key)!r} vs {pb.get(key)!r}" for key in differing)
        raise LogError(
            f"the evaluations {a.evaluation['path']} and {b.evaluation['path']} used different protocol settings "
            f"({details}); evaluate both with the same `vggt eval` settings"
        )


def accuracy_lines(a: Run, b: Run, max_auc_diff: float | None) -> tuple[list[str], bool]:
    """The report's accuracy section and whether the AUC threshold (if any) holds."""
    lines = ["## Accuracy (vggt eval)", ""]
    if a.evaluation is None or b.evaluation is None:
        missing = [run.label for run in (a, b) if run.evaluation is None]
        lines += [f"No evaluation report in {' and '.join(missing)} ({EVAL_REPORTS[0]}); accuracy not compared.", ""]
        return lines, max_auc_diff is None
    mean_a, mean_b = a.evaluation["mean"], b.evaluation["mean"]
    lines += [f"| metric | {a.label} | {b.label} | {a.label} - {b.label} |", "|---|---|---|---|"]
    for metric in ACCURACY_METRICS:
        x, y = mean_a.get(metric), mean_b.get(metric)
        digits = 2 if metric.startswith("AUC") else 4
        diff = None if x is None or y is None else x - y
        lines.append(f"| {metric} | {_fmt(x, digits)} | {_fmt(y, digits)} | {_fmt(diff, digits)} |")
    runtime = [f"{run.label}: {run.evaluation['runtime']['device_name']}, {run.evaluation['runtime']['dtype']}"
               for run in (a, b) if "runtime" in run.evaluation]  # fmt: skip
    published = a.evaluation.get("published_protocol")
    lines += [
        "",
        "AUC in percent (higher is better), DepthAbsRel lower is better; means over categories. Both evaluations "
        "used the same protocol settings"
        + ("" if published is None else (" (the published protocol)" if published else " (not the published one)"))
        + (f"; {'; '.join(runtime)}" if runtime else "")
        + ".",
        "",
    ]
    ok = True
    if max_auc_diff is not None:
        gaps = {m: abs(mean_a[m] - mean_b[m]) for m in ACCURACY_METRICS[:4] if mean_a.get(m) is not None}
        failing = [m for m, gap in gaps.items() if not gap <= max_auc_diff]
        ok = not failing
        verdict = "PASS" if ok else f"FAIL ({', '.join(failing)})"
        lines += [f"Threshold: every |AUC {a.label} - AUC {b.label}| <= {max_auc_diff:g} points: **{verdict}**", ""]
    return lines, ok


def relative_differences(a: Run, b: Run, name: str) -> list[tuple[tuple[int, int], float]]:
    """((epoch, step), |A - B| / |B|) of loss `name` on the Train lines both runs logged, in order."""
    key = f"Loss/train_{name}"
    reference = {(r.epoch, r.step): r.values[key] for r in b.rows if key in r.values}
    pairs = []
    for row in a.rows:
        if (row.epoch, row.step) in reference and key in row.values:
            x, y = row.values[key], reference[(row.epoch, row.step)]
            diff = abs(x - y)
            pairs.append(((row.epoch, row.step), diff / abs(y) if y != 0 else (0.0 if diff == 0 else math.inf)))
    return pairs


@dataclass(frozen=True)
class Agreement:
    name: str
    lines: int
    mean: float
    max: float
    max_at: tuple[int, int]
    last_mean: float


def agreement(a: Run, b: Run, name: str) -> Agreement | None:
    """Statistics of relative_differences; None when the runs share no line logging `name`."""
    pairs = relative_differences(a, b, name)
    if not pairs:
        return None
    values = [d for _, d in pairs]
    last = values[-max(1, math.ceil(len(values) * LAST_FRACTION)) :]
    worst = max(range(len(values)), key=lambda i: values[i] if not math.isnan(values[i]) else math.inf)
    mean = sum(values) / len(values)
    return Agreement(name, len(values), mean, values[worst], pairs[worst][0], sum(last) / len(last))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio(x: float | None, y: float | None) -> str:
    return "n/a" if x is None or y is None or y == 0 else f"{x / y:.3f}"


def report(
    a: Run,
    b: Run,
    agreements: list[Agreement],
    threshold: float | None,
    plot_note: str,
    max_auc_diff: float | None = None,
) -> tuple[str, bool]:
    """The Markdown report and whether the loss and accuracy thresholds (if any) hold."""
    fps_a, fps_b = a.sequences_per_second(), b.sequences_per_second()
    rows = [
        ("folder", str(a.folder), str(b.folder), ""),
        ("device", a.device or "n/a", b.device or "n/a", ""),
        ("ranks x sequences per rank", f"{a.ranks or 'n/a'} x {a.batch_size or 'n/a'}",
         f"{b.ranks or 'n/a'} x {b.batch_size or 'n/a'}", ""),
        ("Train lines", str(len(a.rows)), str(len(b.rows)), ""),
        ("step time (s)", _fmt(a.step_time()), _fmt(b.step_time()), _ratio(a.step_time(), b.step_time())),
        ("sequences/s (ActualFPS)", _fmt(fps_a, 2), _fmt(fps_b, 2), _ratio(fps_a, fps_b)),
        ("images/s", _fmt(a.images_per_second(), 2), _fmt(b.images_per_second(), 2),
         _ratio(a.images_per_second(), b.images_per_second())),
        ("end-to-end time (s)", a.summary.get("E2ETrainingTime", "n/a"), b.summary.get("E2ETrainingTime", "n/a"), ""),
    ]  # fmt: skip
    for name in COMPARED_LOSSES:
        la, lb = a.final_loss(name), b.final_loss(name)
        rows.append((f"final {name} (running mean)", _fmt(la), _fmt(lb), _ratio(la, lb)))
    lines = [
        f"# {a.label} vs {b.label}",
        "",
        f"| | {a.label} | {b.label} | {a.label} / {b.label} |",
        "|---|---|---|---|",
        *(f"| {m} | {x} | {y} | {r} |" for m, x, y, r in rows),
        "",
        f"Speedup of {a.label} over {b.label} (throughput ratio): "
        + (f"{fps_a / fps_b:.3f}x" if fps_a and fps_b else "n/a (ranks or batch size unknown)"),
        "",
        "Step time: mean Batch Time of the last 100 Train lines minus their first 10 (as the published launchers).",
        "",
        f"## Per-step loss agreement: |{a.label} - {b.label}| / |{b.label}| on the Train lines both logged",
        "",
        "| loss | paired lines | mean | max (at [epoch][step]) | mean over the last 10 % |",
        "|---|---|---|---|---|",
        *(
            f"| {g.name} | {g.lines} | {g.mean:.3e} | {g.max:.3e} ([{g.max_at[0]}][{g.max_at[1]}]) "
            f"| {g.last_mean:.3e} |"
            for g in agreements
        ),
        "",
    ]
    ok = True
    if threshold is not None:
        failing = [g.name for g in agreements if not g.last_mean <= threshold]  # NaN fails too
        ok = not failing
        verdict = "PASS" if ok else f"FAIL ({', '.join(failing)})"
        lines += [f"Threshold: mean relative difference over the last 10 % <= {threshold:g}: **{verdict}**", ""]
    lines += [plot_note, ""]
    accuracy, accuracy_ok = accuracy_lines(a, b, max_auc_diff)
    return "\n".join(lines + accuracy), ok and accuracy_ok


def plot(a: Run, b: Run, path: Path) -> str:
    """Both runs' loss curves into `path`; the report's note on the plot (its link, or why there is none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless
        import matplotlib.pyplot as plt
    except ImportError:
        return "No plot: matplotlib is not installed (pip install matplotlib)."
    figure, axes = plt.subplots(1, len(COMPARED_LOSSES), figsize=(6 * len(COMPARED_LOSSES), 4), squeeze=False)
    for axis, name in zip(axes[0], COMPARED_LOSSES):
        key = f"Loss/train_{name}"
        for run, style in ((a, "-"), (b, "--")):  # B dashed: visible where the curves coincide
            points = [(r.epoch * r.num_steps + r.step, r.values[key]) for r in run.rows if key in r.values]
            if points:
                axis.plot(*zip(*points), style, label=run.label, linewidth=1)
        axis.set(title=name, xlabel="step", ylabel="loss (mean since the previous line)")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"![loss curves]({path.name})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare two training runs (e.g. NPU vs GPU): step time, throughput, speedup, final losses "
        "and per-step loss agreement, as a Markdown report and a loss-curve PNG.",
        epilog="Exit status: 0 (and the threshold holds), 1 when --max-loss-rel-diff is exceeded, 2 for unusable "
        "input. Relative difference per paired Train line: |A - B| / |B|; the threshold applies to its mean over "
        "the last 10 %% of the paired lines, for loss_objective and loss_reg_depth.",
    )
    parser.add_argument(
        "run_a", type=Path, help="a launcher's output folder (train.log + summary) or a trainer run folder"
    )
    parser.add_argument("run_b", type=Path, help="the reference run, same kinds")
    parser.add_argument("--labels", nargs=2, default=["A", "B"], metavar=("A", "B"), help="names in the report")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    parser.add_argument("--max-loss-rel-diff", type=float, metavar="X", help="fail (exit 1) above this (e.g. 0.02)")
    parser.add_argument(
        "--max-auc-diff",
        type=float,
        metavar="P",
        help="fail (exit 1) when an AUC of the two evaluations differs by more than P points (e.g. 1.0), or when "
        "a run has no evaluation",
    )
    args = parser.parse_args(argv)
    try:
        a, b = load_run(args.run_a, args.labels[0]), load_run(args.run_b, args.labels[1])
        agreements = [g for g in (agreement(a, b, name) for name in COMPARED_LOSSES) if g is not None]
        if not agreements:
            raise LogError(
                f"{a.log} and {b.log} share no Train line (epoch, step) logging {' or '.join(COMPARED_LOSSES)}"
            )
        step_times = a.step_time(), b.step_time()
        if a.evaluation is not None and b.evaluation is not None:
            check_same_protocol(a, b)
    except LogError as err:
        print(f"compare_runs.py: {err}", file=sys.stderr)
        return 2
    if min(step_times) <= 0:
        print(f"compare_runs.py: a step time is not positive: {step_times}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    note = plot(a, b, args.out / "loss_curves.png")
    text, ok = report(a, b, agreements, args.max_loss_rel_diff, note, args.max_auc_diff)
    (args.out / "report.md").write_text(text)
    print(text)
    print(f"report: {args.out / 'report.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

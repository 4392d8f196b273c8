"""Our trainer against upstream's trainer patched with VGGT_npu.patch, on the same data and preset, in one run.

Both sides run the published perf launcher, test/train_8p_vggt_perf.sh, with the same options: ours from this
repository, upstream's from a copy of the upstream checkout made with the published flow (the patch applied with
`git apply --reject --whitespace=fix`, test/ copied into its training/). With --data synthetic (the default) both
train the tiny VGGT from scratch at 112 px on the same generated scenes (same generator, parameters and seed),
2 images per sequence and --batch-size sequences per process. Each side runs in its own processes: both trees
install a package named vggt, so upstream's side uses --upstream-python, a virtual environment with its
requirements.

Reported per side, from the launcher's summary: steps/s (1 / AvgStepTime: the mean Batch Time of the last 100
logged steps minus their first 10, data wait included, as published), sequences/s (ActualFPS = batch size x
processes / AvgStepTime, the published FPS), trained sequences/s (upstream keeps its repeat_batch, which also
trains each sequence with its frames reversed: twice the sequences that ActualFPS counts; ours too with
--repeat-batch, the same work a step, each reversal's patch embedding shared with its sequence), the peak resident set
of the largest process of the run (one training rank) and the last `Mem (GB)` each trainer logs (ours: the
allocator's peak, or its process's resident set on a CPU; upstream: the allocator's peak, none on a CPU).
Then the ratios ours / upstream.

Example: python benchmarks/bench_vs_upstream.py --upstream-dir ../vggt --upstream-python ../venv-upstream/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from common import aligned_table, int_at_least

REPO_ROOT = Path(__file__).resolve().parents[1]
PHASE_TIMES = Path(__file__).resolve().parent / "phase_times"  # its sitecustomize times each step's phases
PHASES = ("data", "forward", "loss", "backward", "clip", "optimizer")
WARMUP_STEPS = 10  # as AvgStepTime: the first 10 steps are left out
PATCH = REPO_ROOT / "VGGT_npu.patch"
CASE = "VGGT_8p_perf"
# prints the largest resident set among the finished descendants of this wrapper (ru_maxrss is in KiB on Linux)
PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "status = subprocess.run(sys.argv[1:]).returncode\n"
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(status)\n"
)


@dataclass
class SideResult:
    side: str
    steps_per_s: float
    sequences_per_s: float
    sequences_trained_per_step: int
    peak_rss_gib: float | None
    logged_memory_gb: float | None
    phase_s: dict[str, float]  # mean seconds per step of each of PHASES, over the ranks and the steps after warm-up
    summary: dict[str, str]


def read_summary(path: Path) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line)


def last_logged_memory_gb(train_log: Path) -> float | None:
    """The last `Mem (GB)` value on a Train line; None when absent or 0 (upstream's trainer on a CPU)."""
    values = [
        float(line.split("Mem (GB): ", 1)[1].split()[0])
        for line in train_log.read_text(errors="replace").splitlines()
        if "Train Epoch:" in line and "Mem (GB): " in line
    ]
    return values[-1] if values and values[-1] > 0 else None


def phase_split(folder: Path) -> dict[str, float]:
    """Mean seconds per step of each phase, from the phases-*.jsonl the training processes wrote into `folder`
    (one {phase: seconds} line per step and process), leaving out each process's first WARMUP_STEPS steps."""
    steps = [
        json.loads(line)
        for path in sorted(folder.glob("phases-*.jsonl"))
        for line in path.read_text().splitlines()[WARMUP_STEPS:]
    ]
    if not steps:
        return {}
    return {phase: sum(step.get(phase, 0.0) for step in steps) / len(steps) for phase in PHASES}


def run_side(
    side: str, workdir: Path, launcher_args: list[str], env: dict[str, str], output_root: Path, repeats: bool
) -> SideResult:
    """Run the perf launcher from `workdir` with each step's phases timed (`repeats`: its trainer also trains every
    sequence reversed); raise SystemExit with its log's tail when it fails."""
    phases_dir = output_root / "phases"
    if phases_dir.exists():
        shutil.rmtree(phases_dir)
    env = {**env, "VGGT_PHASE_TIMES_DIR": str(phases_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PHASE_TIMES), env.get("PYTHONPATH")]))}  # fmt: skip
    command = ["bash", "test/train_8p_vggt_perf.sh", *launcher_args, "--output-root", str(output_root)]
    print(f"{side}: {' '.join(command)} (in {workdir})", flush=True)
    run = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, *command], cwd=workdir, env=env,
                         capture_output=True, text=True)  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"{side}: the launcher failed (exit {run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    peak_kib = int(run.stderr.rsplit("peak_rss_kib", 1)[1].split()[0])
    summary = read_summary(output_root / CASE / f"{CASE}.log")
    step_time = float(summary["AvgStepTime"])
    batch = int(summary["BatchSize"])
    return SideResult(
        side=side,
        steps_per_s=1.0 / step_time,
        sequences_per_s=float(summary["ActualFPS"]),
        sequences_trained_per_step=batch * int(summary["RankSize"]) * (2 if repeats else 1),
        peak_rss_gib=peak_kib / 2**20,
        logged_memory_gb=last_logged_memory_gb(output_root / CASE / "train.log"),
        phase_s=phase_split(phases_dir),
        summary=summary,
    )


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator > 0 else "n/a"


def prepare_upstream(upstream_dir: Path, tree: Path) -> None:
    """A fresh copy of `upstream_dir` with the published flow applied: the patch, then test/ into training/."""
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(upstream_dir, tree, symlinks=True)
    shutil.copyfile(PATCH, tree / "VGGT_npu.patch")
    applied = subprocess.run(["git", "apply", "--reject", "--whitespace=fix", "VGGT_npu.patch"], cwd=tree,
                             capture_output=True, text=True)  # fmt: skip
    rejected = list(tree.rglob("*.rej"))
    if applied.returncode != 0 or rejected:
        sys.exit(f"VGGT_npu.patch does not apply to {upstream_dir} (is it at 97bbde5?):\n{applied.stderr[-2000:]}")
    shutil.copytree(REPO_ROOT / "test", tree / "training" / "test")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--upstream-dir", type=Path, required=True, help="an upstream VGGT checkout at 97bbde5")
    parser.add_argument("--upstream-python", default="python", help="python of upstream's virtual environment")
    parser.add_argument("--device", default="cpu", choices=("auto", "npu", "cuda", "cpu"), help="default cpu")
    parser.add_argument("--nproc", type=int_at_least(1), default=2, help="processes per side (default 2)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=15, help="sequences per process (default 15)")
    parser.add_argument("--max-steps", type=int_at_least(11), default=30, help="steps per side (default 30)")
    parser.add_argument("--data", default="synthetic", choices=("synthetic", "co3d"), help="default synthetic")
    parser.add_argument("--co3d-dir", type=Path, help="--data co3d: Co3D's root (or generated scenes in its format)")
    parser.add_argument("--anno-dir", type=Path, help="--data co3d: the annotations folder, with tv_train.jgz")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"),
                        help="autocast dtype of both sides (default: the launchers', float32 on a CPU)")  # fmt: skip
    parser.add_argument("--img-size", type=int_at_least(14), help="image size of both sides (default: the preset's)")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "runs" / "bench_vs_upstream",
                        help="the patched copy and both runs' outputs (default runs/bench_vs_upstream)")  # fmt: skip
    parser.add_argument(
        "--repeat-batch", action="store_true", help="ours also trains each sequence reversed, as upstream always does"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = args.work_dir.resolve()
    tree = work / "upstream_patched"
    prepare_upstream(args.upstream_dir.resolve(), tree)
    launcher_args = ["--device", args.device, "--nproc", str(args.nproc), "--batch-size", str(args.batch_size),
                     "--data", args.data, "--max-epochs", "1", "--max-steps", str(args.max_steps)]  # fmt: skip
    if args.data == "co3d":  # VGGT-1B as the perf preset trains it; throughput only: the frozen aggregator is random
        if args.co3d_dir is None or args.anno_dir is None:
            build_parser().error("--data co3d needs --co3d-dir and --anno-dir (the same data for both sides)")
        launcher_args += ["--co3d-dir", str(args.co3d_dir.resolve()), "--anno-dir", str(args.anno_dir.resolve()),
                          "--random-weights"]  # fmt: skip
    for flag, value in (("--dtype", args.dtype), ("--img-size", args.img_size)):
        if value is not None:
            launcher_args += [flag, str(value)]
    ours_args = launcher_args + (["--repeat-batch"] if args.repeat_batch else [])
    ours_env = dict(os.environ)
    upstream_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    upstream_env.update(PYTHONPATH=str(tree), PYTHON=args.upstream_python)
    results = [
        run_side("ours", REPO_ROOT, ours_args, ours_env, work / "ours", repeats=args.repeat_batch),
        run_side("upstream", tree / "training", launcher_args, upstream_env, work / "upstream", repeats=True),
    ]
    ours, upstream = results

    def gib(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    rows = [
        [r.side, f"{r.steps_per_s:.3f}", f"{r.sequences_per_s:.2f}", str(r.sequences_trained_per_step),
         f"{r.steps_per_s * r.sequences_trained_per_step:.2f}", gib(r.peak_rss_gib), gib(r.logged_memory_gb)]
        for r in results
    ]  # fmt: skip
    trained_ratio = (ours.steps_per_s * ours.sequences_trained_per_step) / (
        upstream.steps_per_s * upstream.sequences_trained_per_step
    )
    rows.append(["ours / upstream", f"{ours.steps_per_s / upstream.steps_per_s:.2f}",
                 f"{ours.sequences_per_s / upstream.sequences_per_s:.2f}", "", f"{trained_ratio:.2f}",
                 gib(ours.peak_rss_gib / upstream.peak_rss_gib), ""])  # fmt: skip
    header = ["trainer", "steps/s", "sequences/s", "trained/step", "trained seq/s", "peak RSS GiB", "logged Mem GB"]
    shape = f"--data {args.data}, --dtype {args.dtype or 'default'}, --img-size {args.img_size or 'default'}"
    shape += ", ours with --repeat-batch" if args.repeat_batch else ""
    print(f"# {args.device} x {args.nproc}, {shape}, batch {args.batch_size}, {args.max_steps} steps")
    print(aligned_table(header, rows))
    if ours.phase_s and upstream.phase_s:
        print(f"\n# seconds per trained sequence by phase: mean step after the first {WARMUP_STEPS} / trained per step")
        per_sequence = [{phase: r.phase_s[phase] / r.sequences_trained_per_step for phase in PHASES} for r in results]
        cells = [[r.side, *(f"{p[phase]:.4f}" for phase in PHASES), f"{sum(p.values()):.4f}"]
                 for r, p in zip(results, per_sequence)]  # fmt: skip
        cells.append(["upstream / ours", *(ratio(per_sequence[1][phase], per_sequence[0][phase]) for phase in PHASES),
                      ratio(sum(per_sequence[1].values()), sum(per_sequence[0].values()))])  # fmt: skip
        print(aligned_table(["trainer", *PHASES, "total"], cells))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A prepared check of a lent NPU or GPU: accelerator tests, fused attention, inference and training figures.

`bash benchmarks/device_check.sh` runs this driver. It runs the sections below one after another, each as
child processes under its own time limit, and rewrites one JSON and one Markdown report after every section;
on a machine without an accelerator it runs them at reduced sizes. Sections that cannot run are recorded as
skipped with the reason, one that outlives its limit as timed out (its processes are killed, the run goes
on), and a run keeps to a total budget (default 330 s), leaving what no longer fits for a rerun.

A rerun into the same --out keeps the sections already recorded as ok, failed or skipped and runs the rest
(timed out, left for a rerun, never run); --only runs the named sections again, --fresh starts over.

Sections:
  accelerator_tests  pytest tests/test_accelerator.py on the device
  attention          benchmarks/device_check_attention.py: the fused kernel against the reference, up to
                     just beyond npu_fusion_attention's limit of 1048576 tokens
  infer              benchmarks/bench_infer.py, VGGT-1B (synthetic weights) in bf16 at 518 px for 1, 8, 32
                     and 100 frames, beside upstream's published H100 table
  train              benchmarks/bench_train.py, the perf preset on generated scenes, MFU against the
                     device's published bf16 peak
  multi_card         with 2 cards: DDP training (torchrun, the runtime's fused AdamW) and 2-rank sequence
                     parallelism (benchmarks/device_check_parallel.py); skipped on fewer

Packages: the lent machine reaches no registry. Pure-Python wheels that `--prepare` downloads into
benchmarks/device_check/wheels (on a machine with a registry) are unpacked into a temporary folder at run
time, only the modules of them that the machine lacks, and put on the children's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from common import UPSTREAM_H100, published_peak

from training.cpu_preset import SMALL_CPU_OVERRIDES
from vggt.runtime import accelerator_count, default_device, device_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WHEELS = HERE / "device_check" / "wheels"
DEFAULT_OUT = ROOT / "runs" / "device_check"
REPORT_JSON = "device_check.json"
REPORT_MD = "device_check.md"
BUDGET_S = 330.0  # sections and probe together, so that the whole command ends within 6 minutes
PROBE_TIMEOUT_S = 60.0
KILL_GRACE_S = 5.0
TIMEOUTS = {"accelerator_tests": 75.0, "attention": 60.0, "infer": 110.0, "train": 120.0, "multi_card": 150.0}
SECTIONS = tuple(TIMEOUTS)
KEPT = ("ok", "failed", "skipped")  # statuses a rerun keeps; "timed_out" and "left" run again
# import name -> what needs it; the probe reports which are missing
MODULES = {
    "numpy": "vggt.runtime",
    "huggingface_hub": "vggt.models (every section that builds the model)",
    "yaml": "omegaconf",
    "omegaconf": "the trainer",
    "hydra": "composing the training configs",
    "pytest": "accelerator_tests",
}
NEEDS = {
    "accelerator_tests": ("pytest", "numpy", "huggingface_hub"),
    "attention": ("numpy",),
    "infer": ("numpy", "huggingface_hub"),
    "train": ("numpy", "huggingface_hub", "yaml", "omegaconf", "hydra"),
}
PREPARED = {"hydra-core": "1.3.2", "omegaconf": "2.3.0", "antlr4-python3-runtime": "4.9.3"}  # fallback pins
INFER_FRAMES = {"accelerator": (1, 8, 32, 100), "cpu": (1, 2)}
INFER_SHAPE = {"accelerator": ("vggt_1b", 518, "2"), "cpu": ("tiny", 70, "1")}  # config, side, repeats
CPU_SCENES = ("data.train.num_sequences=4", "data.train.frames_per_sequence=4", "data.train.scene_size=[112,84]")
PEAK_SOURCE = (
    "benchmarks/common.py PUBLISHED_PEAKS: vendor datasheet dense bf16 (no sparsity); the H200 has the H100 SXM's "
    "tensor cores (989); Ascend 910B: Huawei's figure for the Atlas 800T A2 class, about 313 TFLOP/s fp16, bf16 "
    "assumed equal (910B SKUs differ)"
)


# packages -----------------------------------------------------------------------------------------
def prepare(wheels: Path = WHEELS) -> int:
    """--prepare: `pip wheel` the pure-Python packages of PREPARED into `wheels`, at this machine's versions."""
    wheels.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, fallback in PREPARED.items():
        try:
            specs.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            specs.append(f"{name}=={fallback}")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), *specs]
    print("$ " + shlex.join(command), file=sys.stderr)
    rc = subprocess.run(command).returncode
    if rc == 0:
        size = sum(path.stat().st_size for path in wheels.glob("*.whl"))
        print(f"{len(list(wheels.glob('*.whl')))} wheels, {size / 2**20:.2f} MiB in {wheels}", file=sys.stderr)
        print(f"carry {wheels.relative_to(ROOT)} to the lent machine with the checkout", file=sys.stderr)
    return rc


def top_level(member: str) -> str:
    """The importable top-level name of a wheel member ("hydra/core/x.py" -> "hydra", "six.py" -> "six")."""
    head = member.split("/", 1)[0]
    return head.removesuffix(".py")


def unpack_missing(wheels: Path, site: Path) -> list[str]:
    """Unpack into `site` the modules of `wheels`/*.whl that this Python cannot import (with their .dist-info).

    Installed packages are never shadowed: only the members of missing top-level modules are written.
    Returns the wheels that gave something.
    """
    used = []
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            modules = {top_level(n) for n in names} - {
                top_level(n) for n in names if ".dist-info" in n or ".data/" in n
            }
            missing = {m for m in modules if m.isidentifier() and importlib.util.find_spec(m) is None}
            if not missing:
                continue
            archive.extractall(site, [n for n in names if top_level(n) in missing or ".dist-info/" in n])
        used.append(wheel.name)
    return used


# child processes ----------------------------------------------------------------------------------
@dataclass
class Run:
    """What a section's child processes see and where their output goes."""

    out: Path
    scratch: Path  # a temporary folder: worker results, JUnit XML, scenes of the CPU train run
    env: dict[str, str]
    probe: dict[str, Any]

    @property
    def on_cpu(self) -> bool:
        return self.probe["device_type"] == "cpu"

    def log(self, section: str) -> Path:
        return self.out / "logs" / f"{section}.log"


def run_command(run: Run, section: str, command: Sequence[str], deadline: float) -> dict[str, Any]:
    """Run `command` from the repository root until it ends or `deadline` passes (then its process group is
    killed); its output is appended to the section's log. Returns the command, rc, seconds and timed_out."""
    log = run.log(section)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(
            command, cwd=ROOT, env=run.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        timed_out = False
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            stop(process)
        handle.write(f"# rc {process.returncode}{' (timed out: killed)' if timed_out else ''}\n")
    return {
        "command": shlex.join(command),
        "rc": process.returncode,
        "seconds": round(time.monotonic() - start, 3),
        "timed_out": timed_out,
    }


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group (its own session), SIGKILL after KILL_GRACE_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def status_of(commands: Sequence[dict[str, Any]]) -> str | None:
    """ "timed_out" or "failed" when a command was, None when every one ended with rc 0."""
    if any(c["timed_out"] for c in commands):
        return "timed_out"
    if any(c["rc"] != 0 for c in commands):
        return "failed"
    return None


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


# probe --------------------------------------------------------------------------------------------
def probe() -> dict[str, Any]:
    """--probe (in a child): the device, how many cards of its kind, and which of MODULES are missing."""
    device = default_device()
    return {
        "device_type": device.type,
        "device": str(device),
        "device_name": device_name(device),
        "cards": accelerator_count(device.type),
        "missing": sorted(m for m in MODULES if importlib.util.find_spec(m) is None),
        "python": sys.version.split()[0],
        "torch": importlib.metadata.version("torch"),
    }


def missing_reason(run: Run, needs: Sequence[str]) -> str | None:
    """Why a section cannot run for want of a module, or None."""
    missing = [m for m in needs if m in run.probe["missing"]]
    if not missing:
        return None
    wanted = ", ".join(f"{m} ({MODULES[m]})" for m in missing)
    hint = ""
    if {"hydra", "omegaconf"} & set(missing):
        hint = "; run `bash benchmarks/device_check.sh --prepare` where a registry is reachable and carry " + str(
            WHEELS.relative_to(ROOT)
        )
    return f"not importable here: {wanted}{hint}"


# sections -----------------------------------------------------------------------------------------
Outcome = dict[str, Any]


def accelerator_tests(run: Run, deadline: float) -> Outcome:
    junit = run.scratch / "accelerator_tests.xml"
    command = python("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_accelerator.py")
    commands = [run_command(run, "accelerator_tests", [*command, f"--junitxml={junit}"], deadline)]
    if not junit.is_file():
        return {"status": status_of(commands) or "failed", "reason": "pytest wrote no report", "commands": commands}
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    problems, skips = [], set()
    for case in suite.iter("testcase"):
        for child in case:
            message = (child.get("message") or "").splitlines()[:1]
            if child.tag in ("failure", "error"):
                problems.append(f"{case.get('name')}: {' '.join(message)}")
            elif child.tag == "skipped":
                skips.add(" ".join(message))
    data = {"counts": counts, "problems": problems}
    if counts["failures"] or counts["errors"] or status_of(commands):
        return {"status": status_of(commands) or "failed", "commands": commands, "data": data}
    if counts["skipped"] == counts["tests"]:
        return {"status": "skipped", "reason": "; ".join(sorted(skips)), "commands": commands, "data": data}
    return {"status": "ok", "commands": commands, "data": data}


def attention(run: Run, deadline: float) -> Outcome:
    result = run.scratch / "attention.json"
    commands = [
        run_command(run, "attention", python("benchmarks/device_check_attention.py", "--result", str(result)), deadline)
    ]
    data = read_json(result)
    status = status_of(commands)
    if status or data is None:
        return {"status": status or "failed", "commands": commands, "data": data}
    ran = [c for c in data["cases"] if "skipped" not in c]
    skipped = "; ".join(f"{c['name']}: {c['skipped']}" for c in data["cases"] if "skipped" in c)
    if not ran:
        return {"status": "skipped", "reason": skipped, "commands": commands, "data": data}
    status = "ok" if all(c["passed"] for c in ran) else "failed"
    return {"status": status, "reason": skipped or None, "commands": commands, "data": data}


def infer(run: Run, deadline: float) -> Outcome:
    size = "cpu" if run.on_cpu else "accelerator"
    config, side, repeats = INFER_SHAPE[size]
    result = run.scratch / "infer.json"
    command = python("benchmarks/bench_infer.py", "--config", config, "--dtype", "bfloat16")
    command += ["--height", str(side), "--width", str(side), "--frames", *map(str, INFER_FRAMES[size])]
    command += ["--part", "both", "--warmup", "1", "--repeats", repeats, "--json", str(result)]
    commands = [run_command(run, "infer", command, deadline)]
    data = read_json(result)
    status = status_of(commands) or ("ok" if data else "failed")
    reason = "no accelerator: the tiny model at 70 px, not VGGT-1B at 518 px" if run.on_cpu else None
    return {"status": status, "reason": reason, "commands": commands, "data": data}


def train_command(run: Run, result: Path, peak: float | None) -> list[str]:
    """bench_train.py for this machine: the perf preset on generated scenes, or a tiny run on the CPU."""
    command = ["benchmarks/bench_train.py", "--json", str(result)]
    if run.on_cpu:
        scenes = (f"data.train.cache_dir={run.scratch / 'scenes'}", *CPU_SCENES)
        command += ["--config-name", "synthetic", "--warmup", "0", "--steps", "1", *scenes, *SMALL_CPU_OVERRIDES]
    else:
        command += ["--config-name", "perf", "--synthetic-data", "--warmup", "1", "--steps", "3"]
    return command + ([] if peak is None else ["--peak-tflops", f"{peak:g}"])


def peak_of(run: Run) -> dict[str, Any]:
    found = published_peak(run.probe["device_name"])
    if found is None:
        return {"tflops": None, "source": f"no published peak for {run.probe['device_name']!r}: no MFU"}
    return {"tflops": found[0], "accelerator": found[1], "source": PEAK_SOURCE}


def train(run: Run, deadline: float) -> Outcome:
    peak = peak_of(run)
    result = run.scratch / "train.json"
    commands = [run_command(run, "train", python(*train_command(run, result, peak["tflops"])), deadline)]
    data = read_json(result)
    status = status_of(commands) or ("ok" if data else "failed")
    reason = "no accelerator: the tiny synthetic preset at 112 px, one step" if run.on_cpu else None
    return {"status": status, "reason": reason, "commands": commands, "data": {"peak": peak, "bench": data}}


def multi_card(run: Run, deadline: float) -> Outcome:
    cards = run.probe["cards"]
    if cards < 2:
        where = "no accelerator" if run.on_cpu else f"{cards} {run.probe['device_type']} card"
        return {"status": "skipped", "reason": f"needs 2 cards, this machine has {where}"}
    commands, data, notes = [], {}, []
    parts: list[tuple[str, Sequence[str], Callable[[Path], list[str]]]] = [
        (
            "sequence_parallel",
            ("numpy", "huggingface_hub"),
            lambda r: python("benchmarks/device_check_parallel.py", "--result", str(r)),
        ),
        (
            "ddp_train",
            NEEDS["train"],
            lambda r: python(
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                *train_command(run, r, peak_of(run)["tflops"]),
            ),
        ),
    ]
    for name, needs, build in parts:
        reason = missing_reason(run, needs)
        if reason:
            notes.append(f"{name}: {reason}")
            continue
        result = run.scratch / f"{name}.json"
        commands.append(run_command(run, "multi_card", build(result), deadline))
        data[name] = read_json(result)
    status = status_of(commands)
    if status is None:
        parallel = data.get("sequence_parallel")
        status = "failed" if parallel is not None and not parallel["passed"] else "ok" if commands else "skipped"
    return {"status": status, "reason": "; ".join(notes) or None, "commands": commands, "data": data}


RUNNERS: dict[str, Callable[[Run, float], Outcome]] = {
    "accelerator_tests": accelerator_tests,
    "attention": attention,
    "infer": infer,
    "train": train,
    "multi_card": multi_card,
}


# reports ------------------------------------------------------------------------------------------
def write_reports(out: Path, report: dict[str, Any]) -> None:
    """The JSON and the Markdown, each replaced whole (temp file, rename) so a killed run leaves the last ones."""
    for name, text in ((REPORT_JSON, json.dumps(report, indent=2) + "\n"), (REPORT_MD, markdown(report))):
        temp = out / f".{name}.tmp"
        temp.write_text(text)
        temp.replace(out / name)


def gb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f}"


def infer_markdown(data: dict[str, Any]) -> list[str]:
    """bench_infer's rows beside upstream's published H100 aggregator table (where it has the frame count)."""
    rows = {(r["part"], r["frames"]): r for r in data["rows"]}
    first = data["rows"][0]
    lines = [
        f"{first['config']}, {first['height']}x{first['width']}, {first['dtype']} autocast (float32 weights), min of "
        f"{first['repeats']} forwards; memory: {first['memory_kind']} in GB (1e9 bytes), 'over model' = peak minus the "
        "loaded weights. Upstream: aggregator only, one H100, Flash Attention 3, its README's figures (time s, "
        "memory GB).",
        "",
        "| frames | ours aggregator s | ours aggregator peak GB | over model GB | upstream H100 s | upstream GB | "
        "ours full model s | ours full model peak GB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for frames in sorted({f for _, f in rows}):
        agg, model = rows.get(("aggregator", frames)), rows.get(("model", frames))
        up = UPSTREAM_H100.get(frames)
        cells = [
            str(frames),
            f"{agg['min_s']:.3f}" if agg else "",
            gb(agg["peak_bytes"]) if agg else "",
            gb(agg["over_baseline_bytes"]) if agg else "",
            f"{up[0]:.2f}" if up else "not published",
            f"{up[1]:.2f}" if up else "",
            f"{model['min_s']:.3f}" if model else "",
            gb(model["peak_bytes"]) if model else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def train_markdown(data: dict[str, Any]) -> list[str]:
    peak, rows = data["peak"], (data["bench"] or {}).get("rows", [])
    tflops = "none" if peak["tflops"] is None else f"{peak['tflops']:g} TFLOP/s"
    lines = [f"Peak: {tflops} ({peak['source']})", ""]
    for row in rows:
        mfu = "n/a" if row["mfu"] is None else f"{row['mfu']:.2%}"
        lines += [
            "| metric | value |",
            "|---|---|",
            f"| config | {row['config_name']} ({row['model']}, frozen: {', '.join(row['frozen']) or 'nothing'}) |",
            f"| device x world size | {row['device']} x {row['world_size']} |",
            f"| optimizer | {row['optimizer']} |",
            f"| amp dtype | {row['amp_dtype']} |",
            f"| batch shapes BxSxHxW: steps | {', '.join(f'{k}: {v}' for k, v in row['batch_shapes'].items())} |",
            f"| step time min / mean s | {row['min_step_s']:.4f} / {row['mean_step_s']:.4f} |",
            f"| sequences/s, images/s (all devices) | {row['sequences_per_s']:.3f}, {row['images_per_s']:.3f} |",
            f"| peak memory GB | {gb(row['peak_bytes'])} |",
            f"| FLOPs per step per device | {row['flops_per_step']:.4g} |",
            f"| achieved TFLOP/s per device | {row['achieved_tflops']:.4g} |",
            f"| MFU | {mfu} |",
        ]
    return lines


def attention_markdown(data: dict[str, Any]) -> list[str]:
    """One row per attention case: shape, kernel time, error against the reference, verdict."""
    lines = ["| case | B H S D | dtype | backend | rows | kernel s | max abs error | scale | tolerance | result |"]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for c in data["cases"]:
        if "skipped" in c:
            lines.append(f"| {c['name']} | | | | | | | | | skipped: {c['skipped']} |")
            continue
        shape = f"{c['batch']} {c['heads']} {c['seq']} {c['dim']}"
        if "error" in c:
            lines.append(f"| {c['name']} | {shape} | {c['dtype']} | | | | | | | error: {c['error']} |")
            continue
        cells = [c["name"], shape, c["dtype"], c["backend"], str(c["rows_checked"]), f"{c['seconds']:.3f}"]
        cells += [f"{c['max_abs_error']:.3g}", f"{c['reference_scale']:.3g}", f"{c['tolerance']:g}"]
        lines.append("| " + " | ".join([*cells, "pass" if c["passed"] else "FAIL"]) + " |")
    return lines


def details_markdown(name: str, data: Any) -> list[str]:
    """The section's figures as Markdown lines (nothing when it produced none)."""
    if not data:
        return []
    if name == "accelerator_tests":
        counts = ", ".join(f"{k} {v}" for k, v in data["counts"].items())
        return [counts, *(f"- {p}" for p in data["problems"])]
    if name == "attention":
        return attention_markdown(data)
    if name == "infer":
        return infer_markdown(data)
    if name == "train":
        return train_markdown(data)
    lines = []
    parallel, ddp = data.get("sequence_parallel"), data.get("ddp_train")
    if parallel:
        worst = max(parallel["relative_errors"].values())
        lines.append(
            f"Sequence parallel, {parallel['world_size']} ranks, {parallel['config']} {parallel['frames']} frames at "
            f"{parallel['height']} px: {parallel['parallel_s']:.3f} s vs one card {parallel['single_s']:.3f} s; worst "
            f"relative error {worst:.3g} (tolerance {parallel['tolerance']:g}): "
            + ("pass" if parallel["passed"] else "FAIL")
        )
    if ddp:
        lines += [
            "",
            "DDP training:",
            "",
            *train_markdown({"peak": {"tflops": None, "source": "as train"}, "bench": ddp}),
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Device check",
        "",
        f"{env.get('started', '')} | device {env.get('device', '?')}: {env.get('device_name', '?')} | cards "
        f"{env.get('cards', '?')} | torch {env.get('torch', '?')} | python {env.get('python', '?')}",
        "",
    ]
    if env.get("reduced"):
        lines += ["No accelerator: every section ran at reduced sizes (a check of the check, not figures).", ""]
    if env.get("missing"):
        lines += [f"Missing modules: {', '.join(env['missing'])}.", ""]
    if env.get("wheels_used"):
        lines += [f"Carried wheels unpacked: {', '.join(env['wheels_used'])}.", ""]
    lines += ["| section | status | seconds | limit s | note |", "|---|---|---|---|---|"]
    for name in SECTIONS:
        entry = report["sections"].get(name)
        if entry is None:
            lines.append(f"| {name} | not run | | | |")
            continue
        seconds = f"{entry['seconds']:.1f}" if entry.get("seconds") is not None else ""
        note = (entry.get("reason") or "").replace("|", "/")
        lines.append(f"| {name} | {entry['status']} | {seconds} | {entry.get('timeout_s', '')} | {note} |")
    for name in SECTIONS:
        entry = report["sections"].get(name)
        if entry is None:
            continue
        details = details_markdown(name, entry.get("data"))
        commands = [
            f"- `{c['command']}`: rc {c['rc']}, {c['seconds']:.1f} s{', TIMED OUT' if c['timed_out'] else ''}"
            for c in entry.get("commands", [])
        ]
        if details or commands:
            lines += ["", f"## {name}", "", *details, *([""] if details and commands else []), *commands]
    return "\n".join(lines) + "\n"


# driver -------------------------------------------------------------------------------------------
def timeout_override(text: str) -> tuple[str, float]:
    """An argparse type: SECTION=SECONDS."""
    name, _, seconds = text.partition("=")
    if name not in TIMEOUTS:
        raise argparse.ArgumentTypeError(f"{name!r} is not a section; sections: {', '.join(SECTIONS)}")
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give SECTION=SECONDS, e.g. infer=200") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the limit must be above 0 s")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default: runs/device_check)")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION", help="run these sections (again)"
    )
    parser.add_argument("--fresh", action="store_true", help="forget the sections recorded in --out")
    parser.add_argument(
        "--timeout",
        type=timeout_override,
        action="append",
        default=[],
        metavar="SECTION=SECONDS",
        help=f"a section's limit (defaults: {', '.join(f'{k} {v:g}' for k, v in TIMEOUTS.items())})",
    )
    parser.add_argument(
        "--budget", type=float, default=BUDGET_S, help="seconds for the whole run (default: %(default)g)"
    )
    parser.add_argument(
        "--prepare", action="store_true", help=f"download the wheels into {WHEELS.relative_to(ROOT)} and stop"
    )
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)  # the driver's own child
    return parser


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vggt-device-check-") as folder:
        yield Path(folder)


def child_env(site: Path) -> dict[str, str]:
    """The children's environment: this checkout first on PYTHONPATH, the unpacked wheels last."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)), str(site)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


def probe_in_child(run: Run, out: Path) -> dict[str, Any]:
    """The probe's answer from a child process; on failure the reason goes into the JSON and the run ends."""
    command = python(str(Path(__file__).resolve()), "--probe")
    try:
        probed = subprocess.run(command, cwd=ROOT, env=run.env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        if probed.returncode == 0:
            return json.loads(probed.stdout.strip().splitlines()[-1])
        error = f"rc {probed.returncode}: {probed.stderr[-4000:]}"
    except subprocess.TimeoutExpired:
        error = f"no answer within {PROBE_TIMEOUT_S:g} s (a hung device or driver?)"
    (out / REPORT_JSON).write_text(json.dumps({"environment": {"probe_error": error}, "sections": {}}, indent=2) + "\n")
    sys.exit(f"device_check: probing the device failed, {error}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = build_parser().parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return None
    if args.prepare:
        sys.exit(prepare())
    started = time.monotonic()
    deadline = started + args.budget
    timeouts = {**TIMEOUTS, **dict(args.timeout)}
    args.out.mkdir(parents=True, exist_ok=True)
    with scratch_folder() as scratch:
        site = scratch / "site"
        used = unpack_missing(WHEELS, site)
        run = Run(args.out, scratch, child_env(site), {})
        run.probe = probe_in_child(run, args.out)
        previous = None if args.fresh else read_json(args.out / REPORT_JSON)
        same_device = previous is not None and previous["environment"].get("device_name") == run.probe["device_name"]
        report = {
            "environment": {
                **run.probe,
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "reduced": run.probe["device_type"] == "cpu",
                "wheels_used": used,
                "budget_s": args.budget,
            },
            "sections": previous["sections"] if same_device else {},
        }
        write_reports(args.out, report)
        for name in SECTIONS:
            kept = report["sections"].get(name, {}).get("status") in KEPT
            if (args.only is not None and name not in args.only) or (args.only is None and kept):
                continue
            limit = min(timeouts[name], deadline - time.monotonic())
            reason = missing_reason(run, NEEDS.get(name, ()))
            if reason:
                entry = {"status": "skipped", "reason": reason}
            elif limit < min(timeouts[name], 10.0):
                entry = {
                    "status": "left",
                    "reason": f"the run's budget of {args.budget:g} s is spent; rerun with --only {name}",
                }
            else:
                print(f"device_check: {name} (limit {limit:.0f} s) ...", file=sys.stderr, flush=True)
                section_start = time.monotonic()
                entry = RUNNERS[name](run, time.monotonic() + limit)
                entry = {**entry, "seconds": round(time.monotonic() - section_start, 3), "timeout_s": round(limit, 1)}
            report["sections"][name] = entry
            print(f"device_check: {name}: {entry['status']} {entry.get('reason') or ''}", file=sys.stderr, flush=True)
            write_reports(args.out, report)
    print(f"device_check: wrote {args.out / REPORT_JSON} and {args.out / REPORT_MD}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()

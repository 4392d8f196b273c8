"""The device boundary: backend-specific code lives under vggt/runtime/ only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("vggt", "training", "benchmarks", "examples", "test")
FORBIDDEN = {
    "imports or names torch_npu": re.compile(r"\btorch_npu\b"),
    "touches torch.cuda": re.compile(r"\btorch\.cuda\b"),
    "touches torch.npu": re.compile(r"\btorch\.npu\b"),
    "names a distributed backend": re.compile(r"""["'](nccl|hccl|gloo)["']"""),
    "monkey-patches torch onto the NPU": re.compile(r"transfer_to_npu"),
}


def python_files_outside_runtime() -> list[Path]:
    files = [p for d in CHECKED for p in (ROOT / d).rglob("*.py")]
    return [p for p in files if (ROOT / "vggt" / "runtime") not in p.parents]


def test_the_scan_covers_the_model_and_the_benchmarks():
    names = {p.relative_to(ROOT).as_posix() for p in python_files_outside_runtime()}
    assert {"vggt/models/vggt.py", "vggt/layers/attention.py", "benchmarks/bench_infer.py"} <= names


@pytest.mark.parametrize("rule", sorted(FORBIDDEN))
def test_no_backend_specific_code_outside_the_runtime(rule):
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in python_files_outside_runtime()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if FORBIDDEN[rule].search(line)
    ]
    assert not offenders, f"code outside vggt/runtime/ {rule}:\n" + "\n".join(offenders)


def test_the_rules_catch_what_they_forbid():
    samples = {
        "imports or names torch_npu": "import torch_npu",
        "touches torch.cuda": "torch.cuda.synchronize()",
        "touches torch.npu": "torch.npu.set_device(0)",
        "names a distributed backend": 'dist.init_process_group("nccl")',
        "monkey-patches torch onto the NPU": "from torch_npu.contrib import transfer_to_npu",
    }
    for rule, line in samples.items():
        assert FORBIDDEN[rule].search(line), rule
    assert not FORBIDDEN["touches torch.cuda"].search("x.device.type == 'cuda'")

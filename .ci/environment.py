"""Print what a run resolved: interpreter, key packages and the CPU's capabilities (for reading a red CI)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

PACKAGES = ("torch", "numpy", "Pillow", "scipy", "pycolmap", "gradio", "ruff", "pytest", "hypothesis")
# /proc/cpuinfo flags that decide which vectorised kernels (and so which float32 roundings) a CPU takes
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# settings that cap those kernels below what the CPU has (the README's AVX2-only run)
CPU_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpuinfo_field(lines: list[str], field: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field), "")


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and which of CPU_FLAGS it has (empty where /proc/cpuinfo is missing)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = _cpuinfo_field(lines, "flags").split()
    model = _cpuinfo_field(lines, "model name") or platform.processor() or "unknown"
    return model, [flag for flag in CPU_FLAGS if flag in flags]


def main() -> None:
    print(f"python {platform.python_version()} ({sys.executable}) on {platform.machine()}")
    print("packages: " + ", ".join(f"{name} {_version(name)}" for name in PACKAGES))
    import torch  # after the versions, so a torch that fails to import still leaves them printed

    model, flags = _cpu()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown (torch < 2.1)")()
    settings = [f"{name}={os.environ[name]}" for name in CPU_SETTINGS if name in os.environ]
    print(f"cpu: {model}, {os.cpu_count()} cores; flags: {' '.join(flags) or 'none of ' + ', '.join(CPU_FLAGS)}")
    print(f"torch cpu kernels: {capability}" + (f" (capped by {' '.join(settings)})" if settings else ""))


if __name__ == "__main__":
    main()

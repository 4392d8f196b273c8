#!/usr/bin/env bash
# The prepared device check: `bash benchmarks/device_check.sh [--only SECTION ...] [--fresh] [--out DIR]`.
# Runs from the checkout as it is (no pip install): the repository root goes on PYTHONPATH. On a machine with
# a registry, `--prepare` first downloads the pure-Python wheels the check may lack on the lent one.
# PYTHON picks the interpreter (default: python3). See benchmarks/device_check.py --help.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/device_check.py "$@"

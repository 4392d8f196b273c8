#!/usr/bin/env bash
# CI for the published launchers on a CPU: test/train_8p_vggt_perf.sh and test/train_8p_vggt_full.sh end to end
# (2 processes, synthetic scenes, 20 steps: AvgStepTime averages the last 10, its window past the 10 it drops;
# 110 would average 90 as on an Atlas node, but costs CI 4 minutes on a slow 2-core machine), then
# test/compare_runs.py on their outputs. The two runs train the same model on the same data (only the preset
# names differ at one epoch), so their losses must agree; outputs stay in test/output/ for inspection.
#
#   test/ci_launchers.sh        (no options; -h prints this)
set -euo pipefail
if (($#)); then
    if [[ "$1" == -h || "$1" == --help ]]; then
        sed -n '2,8p' "$0" | cut -c3-
        exit 0
    fi
    echo "ci_launchers.sh: takes no arguments, got '$*' (-h for help)" >&2
    exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
args=(--device cpu --nproc 2 --data synthetic --max-epochs 1 --max-steps 20)
start="${SECONDS}"
test/train_8p_vggt_perf.sh "${args[@]}"
test/train_8p_vggt_full.sh "${args[@]}"
# same seeds, data order and schedule; gloo sums the two ranks in a fixed order: equal up to rounding
"${PYTHON:-python}" test/compare_runs.py test/output/VGGT_8p_perf test/output/VGGT_8p_full \
    --labels perf full --out test/output/comparison --max-loss-rel-diff 1e-3
echo "ci_launchers.sh: passed in $((SECONDS - start)) s"

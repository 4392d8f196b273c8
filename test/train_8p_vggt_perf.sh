#!/usr/bin/env bash
# The published Ascend VGGT benchmark: throughput of the perf preset (AvgStepTime, ActualFPS); --help for options.
set -euo pipefail
# shellcheck source=test/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
vggt_launch perf "$@"

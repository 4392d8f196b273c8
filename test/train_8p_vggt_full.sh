#!/usr/bin/env bash
# The published Ascend VGGT accuracy run: the perf preset trained 7 epochs, final losses; --help for options.
set -euo pipefail
# shellcheck source=test/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
vggt_launch full "$@"

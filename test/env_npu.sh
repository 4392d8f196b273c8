# shellcheck shell=bash
# The Ascend runtime environment of the VGGT launchers, as the Ascend model zoo's env_npu.sh sets it.
#
#   source test/env_npu.sh
#
# Sourced, not run: it exports variables into the calling shell and leaves that shell's options
# (set -e / -u / -o pipefail) as they were. Harmless without an NPU: the variables only mean something
# to torch_npu, CANN's set_env.sh is sourced only where it exists, msnpureport runs only where it is
# installed. A value already in the environment wins over the defaults below.

# CANN's libraries and tools (libhccl.so, msnpureport, ...): $ASCEND_TOOLKIT_HOME, else the default install.
_vggt_cann_env=""
for _vggt_candidate in \
    "${ASCEND_TOOLKIT_HOME:+${ASCEND_TOOLKIT_HOME}/set_env.sh}" \
    /usr/local/Ascend/ascend-toolkit/set_env.sh \
    /usr/local/Ascend/ascend-toolkit/latest/set_env.sh; do
    if [[ -n "${_vggt_candidate}" && -f "${_vggt_candidate}" ]]; then
        _vggt_cann_env="${_vggt_candidate}"
        break
    fi
done
if [[ -n "${_vggt_cann_env}" ]]; then
    # CANN's script is not written for -e / -u (it reads LD_LIBRARY_PATH and others, maybe unset):
    # relax both while it runs, then restore the caller's options exactly.
    _vggt_options="$(set +o)"
    set +eu
    # shellcheck source=/dev/null
    source "${_vggt_cann_env}"
    eval "${_vggt_options}"
    unset _vggt_options
fi
unset _vggt_cann_env _vggt_candidate

# Host logs: errors only, not on stdout, no event log.
export ASCEND_SLOG_PRINT_TO_STDOUT="${ASCEND_SLOG_PRINT_TO_STDOUT:-0}"
export ASCEND_GLOBAL_LOG_LEVEL="${ASCEND_GLOBAL_LOG_LEVEL:-3}"
export ASCEND_GLOBAL_EVENT_ENABLE="${ASCEND_GLOBAL_EVENT_ENABLE:-0}"

# Operator dispatch: level-2 task queue (binary kernels, which vggt.runtime selects), coarse core
# binding per card, fewer contiguous copies between non-contiguous operators.
export TASK_QUEUE_ENABLE="${TASK_QUEUE_ENABLE:-2}"
export CPU_AFFINITY_CONF="${CPU_AFFINITY_CONF:-1}"
export COMBINED_ENABLE="${COMBINED_ENABLE:-1}"

# Caching allocator on virtual memory (less fragmentation). torch_npu refuses PYTORCH_NPU_ALLOC_CONF
# next to PYTORCH_ALLOC_CONF, so a user's PYTORCH_ALLOC_CONF is left alone.
if [[ -z "${PYTORCH_ALLOC_CONF:-}" ]]; then
    export PYTORCH_NPU_ALLOC_CONF="${PYTORCH_NPU_ALLOC_CONF:-expandable_segments:True}"
fi

# HCCL: 20 minutes to set up links (8 ranks loading data and weights start unevenly); 30 minutes for a
# collective to complete, the trainer's process-group timeout (distributed.timeout_minutes).
export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-1200}"
export HCCL_EXEC_TIMEOUT="${HCCL_EXEC_TIMEOUT:-1800}"

# Device-side logs: errors only on every card of this host, device event logs off.
if command -v msnpureport >/dev/null 2>&1; then
    for _vggt_card in /dev/davinci[0-9]*; do
        [[ -e "${_vggt_card}" ]] || continue
        msnpureport -g error -d "${_vggt_card#/dev/davinci}" >/dev/null 2>&1 \
            || echo "env_npu.sh: msnpureport -g error -d ${_vggt_card#/dev/davinci} failed (device logs keep their level)" >&2
    done
    msnpureport -e disable >/dev/null 2>&1 || echo "env_npu.sh: msnpureport -e disable failed (device event logs stay on)" >&2
    unset _vggt_card
fi

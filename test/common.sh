# shellcheck shell=bash
# The body of test/train_8p_vggt_perf.sh and test/train_8p_vggt_full.sh, sourced by them: the
# published Ascend VGGT launchers (DrivingSDK model_examples/VGGT) on our trainer, for NPU, GPU and CPU.
# Each script calls `vggt_launch perf|full "$@"`.

VGGT_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly VGGT_REPO_ROOT
readonly VGGT_IMAGES_PER_SAMPLE=2 # the perf preset's img_nums: [2, 2]
# --data synthetic: small generated scenes (cached) and the tiny model from scratch
readonly VGGT_SCENE_SEQUENCES=8 VGGT_SCENE_FRAMES=8 VGGT_SCENE_WIDTH=160 VGGT_SCENE_HEIGHT=120 VGGT_SCENE_SEED=0
readonly VGGT_SCENES=(
    "++data.train.num_sequences=${VGGT_SCENE_SEQUENCES}"
    "++data.train.frames_per_sequence=${VGGT_SCENE_FRAMES}"
    "++data.train.scene_size=[${VGGT_SCENE_WIDTH},${VGGT_SCENE_HEIGHT}]"
    "++data.train.scene_seed=${VGGT_SCENE_SEED}"
)

vggt_usage() {
    local case="$1"
    local epochs=1 losses=""
    if [[ "${case}" == full ]]; then
        epochs=7
        losses=", Loss, LossObjective
(Loss and LossObjective: the running means of loss_reg_depth and loss_objective on the last Train line)"
    fi
    cat <<EOF
Usage: test/train_8p_vggt_${case}.sh [options]

The published Ascend VGGT ${case} run: \`torchrun -m training.launch --config-name ${case}\`, one process
per card, Co3D category tv, 2 images per sequence, 15 sequences per card, bf16, frozen aggregator.
Output, deleted and recreated on every run, in OUTPUT_ROOT/VGGT_8p_${case}/:
  train.log             torchrun's stdout and stderr
  VGGT_8p_${case}.log      the summary, key = value lines
  run/                  the trainer's run folder (log.txt, ckpts/, tensorboard/, .hydra/)
Summary keys: Network, CaseName, DeviceType, DeviceName, RankSize, BatchSize, ImagesPerSample,
E2ETrainingTime, TimedLogLines, AvgStepTime, ActualFPS, ImagesPerSec${losses}.
AvgStepTime is the mean Batch Time of the last 100 Train lines minus their first 10 (one line per step);
ActualFPS = batch size x ranks / AvgStepTime, in sequences per second; ImagesPerSec = 2 x ActualFPS.

Options (--name VALUE or --name=VALUE; relative paths are taken from the current directory, defaults
from the repository root):
  --max-epochs N      epochs (also --MAX-EPOCHS; default ${epochs}, the ${case} preset's)
  --max-steps N       steps per epoch, limit_train_batches (default 800, the preset's)
  --nproc N           processes, one per card (default: every visible NPU or GPU; 1 on a CPU-only machine)
  --device D          auto | npu | cuda | cpu (default auto: NPU, else CUDA, else CPU)
  --batch-size N      sequences per card and step (default 15)
  --data D            co3d | synthetic (default co3d)
  --co3d-dir DIR      the Co3D v2 tree, DIR/tv/<sequence>/images/... (default data/co3d)
  --anno-dir DIR      the annotations, DIR/tv_train.jgz (default data/co3d_annotations)
  --weights PATH      initial weights (model.init_weights), e.g. the official model.pt as the published runs
  --scenes-dir DIR    --data synthetic: where generated scenes are cached (default runs/launcher_scenes)
  --output-root DIR   the parent of the case folder (default test/output)
  -h, --help          this text

--data synthetic trains the tiny VGGT from scratch on generated scenes at 112 px (lr 1e-3, nothing frozen,
no augmentation), so the launcher runs anywhere, e.g. on a CPU in a few minutes:
  test/train_8p_vggt_${case}.sh --device cpu --nproc 2 --data synthetic --max-epochs 1 --max-steps 110
On a CPU autocast is off (float32) and the training processes load their own data (no workers).

Copied into the training/ folder of upstream VGGT patched with VGGT_npu.patch (the published flow: cp -r test
training/; cd training; bash test/train_8p_vggt_${case}.sh ...), the launcher runs upstream's trainer instead:
\`torchrun launch.py --config npu_perf\` (npu_synthetic for --data synthetic, scenes from data/synthetic.py), with
the same options and summary keys; defaults there: --co3d-dir co3D/co3D, --anno-dir co3D/co3D_annotations and
--weights ../model.pt when it exists. Summary keys that need vggt-npu's own evaluation (accuracy) are left out there.

test/env_npu.sh (the Ascend runtime settings, harmless elsewhere) is sourced first. PYTHON picks the
interpreter (default python). Exit status: 0; 2 for a bad option or a missing path; torchrun's status when
training fails (see train.log).
EOF
}

# vggt_fail STATUS MESSAGE: print MESSAGE on stderr and exit with STATUS.
vggt_fail() {
    echo "$(basename "$0"): $2" >&2
    exit "$1"
}

# vggt_check_positive_int FLAG VALUE: exit 2 unless VALUE is empty (not given) or an integer >= 1.
vggt_check_positive_int() {
    [[ -z "$2" || "$2" =~ ^[1-9][0-9]*$ ]] || vggt_fail 2 "$1 wants an integer >= 1, got '$2'"
}

# vggt_check_path FLAG PATH: exit 2 when PATH holds what a quoted Hydra value cannot (a quote, a backslash).
vggt_check_path() {
    [[ "$2" != *"'"* && "$2" != *"\\"* ]] || vggt_fail 2 "$1 $2: paths with quotes or backslashes are not supported"
}

# vggt_abspath PATH: PATH made absolute against the caller's directory (the launcher then cds to the repository).
vggt_abspath() {
    if [[ "$1" == /* ]]; then echo "$1"; else echo "${PWD}/$1"; fi
}

# vggt_hydra_path KEY PATH: the Hydra override KEY='PATH' (quoted: paths may hold characters Hydra parses).
vggt_hydra_path() {
    echo "$1='$2'"
}

# vggt_upstream_layout: true when test/ sits in the training/ folder of upstream VGGT patched with VGGT_npu.patch.
vggt_upstream_layout() {
    [[ -f "${VGGT_REPO_ROOT}/launch.py" && -f "${VGGT_REPO_ROOT}/config/npu_perf.yaml" ]]
}

# vggt_upstream_train_args: set vggt_launch's train_args to upstream's launch.py with the patch's configs, from
# vggt_launch's options (its locals: bash functions see their caller's); generates the synthetic scenes first.
vggt_upstream_train_args() {
    local upstream_config=npu_perf resume="${weights}"
    local upstream_overrides=(
        "$(vggt_hydra_path logging.log_dir "${out}/run")"
        "$(vggt_hydra_path checkpoint.save_dir "${out}/run/ckpts")"
        "device=${device_type}"
        "max_img_per_gpu=$((batch_size * VGGT_IMAGES_PER_SAMPLE))"
    )
    if [[ "${data}" == synthetic ]]; then
        upstream_config=npu_synthetic
        local scenes="${scenes_dir}/upstream_tv"
        "${python}" data/synthetic.py --out "${scenes}" --category tv --sequences "${VGGT_SCENE_SEQUENCES}" \
            --frames "${VGGT_SCENE_FRAMES}" --size "${VGGT_SCENE_WIDTH}" "${VGGT_SCENE_HEIGHT}" \
            --seed "${VGGT_SCENE_SEED}" >"${out}/scenes.log" 2>&1 ||
            vggt_fail 2 "generating the synthetic scenes failed; see ${out}/scenes.log"
        co3d_dir="${scenes}/co3d" anno_dir="${scenes}/co3d_annotations"
    elif [[ -z "${resume}" && -f "${VGGT_REPO_ROOT}/../model.pt" ]]; then
        resume="$(cd "${VGGT_REPO_ROOT}/.." && pwd)/model.pt" # the published runs start from the official weights
    fi
    [[ -n "${resume}" || "${data}" == synthetic ]] ||
        echo "no --weights and no model.pt next to training/: upstream's trainer starts from scratch"
    upstream_overrides+=(
        "$(vggt_hydra_path co3d_dir "${co3d_dir}")"
        "$(vggt_hydra_path co3d_annotation_dir "${anno_dir}")"
        "$(if [[ -n "${resume}" ]]; then vggt_hydra_path checkpoint.resume_checkpoint_path "${resume}"; else
            echo checkpoint.resume_checkpoint_path=null; fi)"
    )
    local epochs="${max_epochs}"
    [[ -n "${epochs}" ]] || epochs="$([[ "${case}" == full ]] && echo 7 || echo 1)" # the published perf / full runs
    upstream_overrides+=("max_epochs=${epochs}")
    [[ -z "${max_steps}" ]] || upstream_overrides+=("limit_train_batches=${max_steps}")
    [[ "${device_type}" != cpu ]] || upstream_overrides+=(optim.amp.enabled=false num_workers=0)
    train_args=(launch.py --config "${upstream_config}" "${upstream_overrides[@]}")
}

# vggt_launch perf|full ARGS...: parse the options, check the data, run torchrun, write the summary.
vggt_launch() {
    local case="$1"
    shift
    local config="${case}" name="VGGT_8p_${case}"
    local max_epochs="" max_steps="" nproc="" device=auto batch_size=15 data=co3d weights=""
    local co3d_dir="${VGGT_REPO_ROOT}/data/co3d" anno_dir="${VGGT_REPO_ROOT}/data/co3d_annotations"
    local scenes_dir="${VGGT_REPO_ROOT}/runs/launcher_scenes" output_root="${VGGT_REPO_ROOT}/test/output" flag value
    ! vggt_upstream_layout || co3d_dir="${VGGT_REPO_ROOT}/co3D/co3D" anno_dir="${VGGT_REPO_ROOT}/co3D/co3D_annotations"
    while (($#)); do
        flag="$1"
        if [[ "${flag}" == --*=* ]]; then
            value="${flag#*=}"
            flag="${flag%%=*}"
        elif [[ "${flag}" == -h || "${flag}" == --help ]]; then
            vggt_usage "${case}"
            exit 0
        elif [[ "${flag}" == --* && $# -ge 2 ]]; then
            value="$2"
            shift
        else
            value=""
        fi
        shift
        case "${flag}" in
            --max-epochs | --MAX-EPOCHS) max_epochs="${value}" ;;
            --max-steps) max_steps="${value}" ;;
            --nproc) nproc="${value}" ;;
            --batch-size) batch_size="${value}" ;;
            --device) device="${value}" ;;
            --data) data="${value}" ;;
            --co3d-dir) co3d_dir="${value}" ;;
            --anno-dir) anno_dir="${value}" ;;
            --weights) weights="${value}" ;;
            --scenes-dir) scenes_dir="${value}" ;;
            --output-root) output_root="${value}" ;;
            *)
                echo "$(basename "$0"): unknown option '${flag}'" >&2
                vggt_usage "${case}" >&2
                exit 2
                ;;
        esac
    done
    vggt_check_positive_int --max-epochs "${max_epochs}"
    vggt_check_positive_int --max-steps "${max_steps}"
    vggt_check_positive_int --nproc "${nproc}"
    vggt_check_positive_int --batch-size "${batch_size}"
    [[ "${device}" =~ ^(auto|npu|cuda|cpu)$ ]] || vggt_fail 2 "--device is auto, npu, cuda or cpu, got '${device}'"
    [[ "${data}" =~ ^(co3d|synthetic)$ ]] || vggt_fail 2 "--data is co3d or synthetic, got '${data}'"
    # paths given are relative to where the launcher was called from (it then works from the repository root)
    co3d_dir="$(vggt_abspath "${co3d_dir}")"
    anno_dir="$(vggt_abspath "${anno_dir}")"
    output_root="$(vggt_abspath "${output_root}")"
    scenes_dir="$(vggt_abspath "${scenes_dir}")"
    [[ -z "${weights}" ]] || weights="$(vggt_abspath "${weights}")"
    vggt_check_path --co3d-dir "${co3d_dir}"
    vggt_check_path --anno-dir "${anno_dir}"
    vggt_check_path --output-root "${output_root}"
    vggt_check_path --scenes-dir "${scenes_dir}"
    vggt_check_path --weights "${weights}"
    [[ -z "${weights}" || -f "${weights}" ]] || vggt_fail 2 "--weights ${weights}: no such file"
    [[ -z "${weights}" || "${data}" == co3d ]] ||
        vggt_fail 2 "--weights loads VGGT-1B weights, but --data synthetic trains the tiny model from scratch"

    local overrides=("$(vggt_hydra_path hydra.run.dir "${output_root}/${name}/run")" log_freq=1)
    if [[ "${data}" == co3d ]]; then
        [[ -d "${co3d_dir}" ]] || vggt_fail 2 "--co3d-dir ${co3d_dir}: no such directory. Download Co3D v2 \
(https://github.com/facebookresearch/co3d; category tv is enough for perf and full) and pass its root with --co3d-dir"
        [[ -d "${co3d_dir}/tv" ]] ||
            vggt_fail 2 "--co3d-dir ${co3d_dir}: no tv/ category folder (perf and full train on Co3D tv)"
        [[ -d "${anno_dir}" ]] || vggt_fail 2 "--anno-dir ${anno_dir}: no such directory. Download the annotations \
(Hugging Face dataset JianyuanWang/co3d_anno) or build them from Co3D's own: python -m training.data.co3d_convert \
--co3d-dir ${co3d_dir} --out-dir ${anno_dir}"
        [[ -f "${anno_dir}/tv_train.jgz" ]] ||
            vggt_fail 2 "--anno-dir ${anno_dir}: no tv_train.jgz (perf and full train on Co3D tv)"
        overrides+=(
            "$(vggt_hydra_path data.train.co3d_dir "${co3d_dir}")"
            "$(vggt_hydra_path data.train.annotation_dir "${anno_dir}")"
        )
        [[ -z "${weights}" ]] || overrides+=("$(vggt_hydra_path model.init_weights "${weights}")")
    else
        overrides+=(
            data.train.kind=synthetic
            "$(vggt_hydra_path ++data.train.cache_dir "${scenes_dir}")"
            "${VGGT_SCENES[@]}"
            data.train.co3d_dir=null
            data.train.annotation_dir=null
            data.train.min_num_images=2
            data.train.augment=false
            data.img_size=112
            model.config=tiny
            model.activation_checkpointing=false
            "optim.frozen=[]"
            optim.lr=1e-3
        )
    fi

    cd "${VGGT_REPO_ROOT}" || exit
    # shellcheck source=test/env_npu.sh
    source test/env_npu.sh
    local python="${PYTHON:-python}" info device_type count device_name
    # the device every rank will use, how many of its kind are visible, and its name: vggt.runtime decides
    info="$("${python}" -c '
import sys
from vggt.runtime.device import accelerator_count, device_name, resolve_device
try:
    device = resolve_device(sys.argv[1])
except ValueError as err:
    sys.exit(f"--device {sys.argv[1]}: {err}")
print(device.type, accelerator_count(device.type), device_name(device))
' "${device}")" || vggt_fail 2 "cannot use --device ${device} (see above)"
    read -r device_type count device_name <<<"$(tail -n 1 <<<"${info}")"
    if [[ -z "${nproc}" ]]; then
        nproc=$((count > 0 ? count : 1))
    elif [[ "${device_type}" != cpu ]] && ((nproc > count)); then
        vggt_fail 2 "--nproc ${nproc}: only ${count} ${device_type} device(s) visible"
    fi
    overrides+=("device=${device_type}" "data.train.batch_size=${batch_size}")
    [[ -z "${max_epochs}" ]] || overrides+=("max_epochs=${max_epochs}")
    [[ -z "${max_steps}" ]] || overrides+=("limit_train_batches=${max_steps}")
    if [[ "${device_type}" == cpu ]]; then
        overrides+=(optim.amp_dtype=float32 data.num_workers=0)
    fi

    local out="${output_root}/${name}"
    rm -rf "${out}"
    mkdir -p "${out}"
    echo "${name}: ${nproc} x ${device_type} (${device_name}), --data ${data}; log ${out}/train.log"
    local train_args=(-m training.launch --config-name "${config}" "${overrides[@]}")
    ! vggt_upstream_layout || vggt_upstream_train_args
    local start status=0
    start="$(date +%s)"
    "${python}" -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node "${nproc}" \
        "${train_args[@]}" >"${out}/train.log" 2>&1 || status=$?
    local e2e=$(($(date +%s) - start))
    if ((status != 0)); then
        tail -n 20 "${out}/train.log" >&2
        vggt_fail "${status}" "training failed (exit ${status}) after ${e2e} s; the whole output is in ${out}/train.log"
    fi
    local losses=()
    [[ "${case}" != full ]] || losses=(--losses)
    # ${a[@]+"${a[@]}"}: an empty array is fine under set -u on bash < 4.4 too
    "${python}" test/summarize_run.py "${out}/train.log" --out "${out}/${name}.log" --case-name "${name}" \
        --device-type "${device_type}" --device-name "${device_name}" --rank-size "${nproc}" \
        --batch-size "${batch_size}" --images-per-sample "${VGGT_IMAGES_PER_SAMPLE}" --e2e-seconds "${e2e}" \
        ${losses[@]+"${losses[@]}"}
    echo "summary: ${out}/${name}.log"
}

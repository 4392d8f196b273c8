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
        losses=", Loss, LossObjective, AUC30, AUC15, AUC5, AUC3, DepthAbsRel
(Loss and LossObjective: the running means of loss_reg_depth and loss_objective on the last Train line;
AUC30 ... DepthAbsRel: \`vggt eval co3d\` of the trained checkpoint on the Co3D tv test sequences, by the
published protocol, or on the synthetic scenes' test split; skipped with --skip-eval)"
    fi
    cat <<EOF
Usage: test/train_8p_vggt_${case}.sh [options]

The published Ascend VGGT ${case} run: \`torchrun -m training.launch --config-name ${case}\`, one process
per card, Co3D category tv, 2 images per sequence, 15 sequences per card, bf16, frozen aggregator.
Output, deleted and recreated on every run (only a folder the launcher created: it holds .vggt_launcher_output;
any other folder of that name, or a link, stops the run), in OUTPUT_ROOT/VGGT_8p_${case}/ (node 0) or
OUTPUT_ROOT/VGGT_8p_${case}_node<R>/ (node R > 0 of a multi-node run: no node deletes another's output):
  train.log             torchrun's stdout and stderr on this node
  torchrun/             torchrun's per-rank error files (a failed run prints the first failure from them)
  VGGT_8p_${case}.log      the summary, key = value lines (node 0 only)
  run/                  the trainer's run folder (node 0: log.txt, ckpts/, tensorboard/; every node: .hydra/)
  eval/, eval.log       full only, node 0: co3d_eval.json / .md of the trained checkpoint, and vggt eval's output
Summary keys: Network, CaseName, DeviceType, DeviceName, RankSize, BatchSize, ImagesPerSample,
E2ETrainingTime, TimedLogLines, AvgStepTime, ActualFPS, ImagesPerSec${losses}.
AvgStepTime is the mean Batch Time of the last 100 Train lines minus their first 10 (one line per step);
ActualFPS = batch size x ranks / AvgStepTime, in sequences per second; ImagesPerSec = 2 x ActualFPS.
RankSize counts the processes of all nodes, so ActualFPS is the global batch's.

Options (--name VALUE or --name=VALUE; relative paths are taken from the current directory, defaults
from the repository root):
  --max-epochs N      epochs (also --MAX-EPOCHS; default ${epochs}, the ${case} preset's)
  --max-steps N       steps per epoch, limit_train_batches (default 800, the preset's; upstream's trainer
                      then validates as many batches, limit_val_batches, instead of its 400)
  --nproc N           processes on this node, one per card (default: every visible NPU or GPU; 1 on a CPU)
  --nnodes N          nodes of the job (default 1); run the launcher once on every node, same options
  --node-rank R       this node's rank, 0..N-1 (default 0); node 0 hosts the rendezvous and writes the summary
  --master-addr HOST  node 0's address, reachable from every node (default 127.0.0.1)
  --master-port PORT  a free TCP port on node 0 (default 29500)
  --device D          auto | npu | cuda | cpu (default auto: NPU, else CUDA, else CPU)
  --batch-size N      sequences per card and step (default 15)
  --data D            co3d | synthetic (default co3d)
  --dtype D           bfloat16 | float32: autocast dtype (default: the preset's, bfloat16; float32 on a CPU,
                      where bfloat16 pays only with AMX or AVX512-BF16: give it there)
  --img-size N        image size, a multiple of 14 (default: the preset's, 518; 112 with --data synthetic)
  --co3d-dir DIR      the Co3D v2 tree, DIR/tv/<sequence>/images/... (default data/co3d)
  --anno-dir DIR      the annotations, DIR/tv_train.jgz (default data/co3d_annotations)
  --weights PATH      initial weights (model.init_weights), e.g. the official model.pt as the published runs
  --random-weights    no --weights: the frozen aggregator stays random (throughput-only runs; losses meaningless)
  --repeat-batch      also train every sequence with its frames reversed (data.train.repeat_batch: twice the
                      sequences a step, ActualFPS still counts those sampled), as upstream's trainer at 97bbde5
                      always does (in its layout this option changes nothing)
  --scenes-dir DIR    --data synthetic: where generated scenes are cached (default runs/launcher_scenes)
  --eval-anno-dir DIR full: the Co3D test annotations, DIR/tv_test.jgz (default: --anno-dir)
  --skip-eval         full: do not evaluate the trained checkpoint
  --output-root DIR   the parent of the case folder (default test/output); per node, or shared by the nodes
  -h, --help          this text

--data synthetic trains the tiny VGGT from scratch on generated scenes at 112 px (lr 1e-3, nothing frozen,
no augmentation), so the launcher runs anywhere, e.g. on a CPU in a few minutes:
  test/train_8p_vggt_${case}.sh --device cpu --nproc 2 --data synthetic --max-epochs 1 --max-steps 110
On a CPU autocast is off (float32, unless --dtype bfloat16) and the training processes load their own data
(no workers).

Two nodes (static rendezvous, as the Ascend model zoo's multi-node scripts; checkpoints and TensorBoard are
written by global rank 0, on node 0):
  node 0: test/train_8p_vggt_${case}.sh --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 ...
  node 1: test/train_8p_vggt_${case}.sh --nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --master-port 29500 ...
A failure on any rank of any node ends every node within seconds, naming the node and rank.

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

# vggt_report_failure OUT STATUS SECONDS [NODE_RANK]: the failing rank's error first (torchrun's per-rank error files in
# OUT/torchrun), then the end of OUT/train.log (where the other ranks' messages follow it), then exit STATUS.
vggt_report_failure() {
    local out="$1" status="$2" seconds="$3" node_rank="${4:-0}"
    "${PYTHON:-python}" "${VGGT_REPO_ROOT}/test/first_failure.py" "${out}/torchrun" --node-rank "${node_rank}" >&2 || true
    echo "--- last lines of ${out}/train.log ---" >&2
    tail -n 20 "${out}/train.log" >&2
    vggt_fail "${status}" "training failed (exit ${status}) after ${seconds} s; the whole output is in ${out}/train.log"
}

# vggt_rendezvous_args NNODES NODE_RANK MASTER_ADDR MASTER_PORT: torchrun's rendezvous options, one per line:
# --standalone on one node, the static rendezvous at MASTER_ADDR:MASTER_PORT across nodes.
vggt_rendezvous_args() {
    if (($1 == 1)); then
        printf '%s\n' --standalone --nnodes 1
    else
        printf '%s\n' --nnodes "$1" --node-rank "$2" --master-addr "$3" --master-port "$4"
    fi
}

# vggt_case_dir OUTPUT_ROOT NAME NODE_RANK: this node's output folder (node 0: the published name).
vggt_case_dir() {
    if (($3 == 0)); then echo "$1/$2"; else echo "$1/$2_node$3"; fi
}

# vggt_renew_case_dir OUT: delete OUT when this launcher created it (it holds the marker file the launcher writes
# there), then create it afresh with the marker; a folder of that name the launcher did not create, or a link, is
# left alone and stops the run. rm -rf never follows a link inside OUT: a link is removed, not what it points to.
vggt_renew_case_dir() {
    local out="$1" marker="$1/.vggt_launcher_output"
    if [[ -L "${out}" ]]; then
        vggt_fail 2 "${out} is a symbolic link; the launcher deletes and recreates its output folder and only \
deletes a folder it created itself, so the link is left alone: remove it or pass another --output-root"
    elif [[ -e "${out}" ]]; then
        [[ -d "${out}" && -f "${marker}" && ! -L "${marker}" ]] || vggt_fail 2 "${out} exists but this launcher \
did not create it (it holds no .vggt_launcher_output), so it is left alone: move it away (an output of a launcher \
before this check too) or pass another --output-root"
        rm -rf -- "${out}"
    fi
    mkdir -p "${out}"
    echo "created by $(basename "$0"), which deletes and recreates this folder on every run" >"${marker}"
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
    elif [[ -z "${resume}" && -z "${random_weights}" && -f "${VGGT_REPO_ROOT}/../model.pt" ]]; then
        resume="$(cd "${VGGT_REPO_ROOT}/.." && pwd)/model.pt" # the published runs start from the official weights
    fi
    [[ -n "${resume}" || -n "${random_weights}" || "${data}" == synthetic ]] ||
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
    # upstream validates up to 400 batches after training: as many as it trained, for runs cut short
    [[ -z "${max_steps}" ]] || upstream_overrides+=("limit_train_batches=${max_steps}" "limit_val_batches=${max_steps}")
    [[ "${device_type}" != cpu ]] || upstream_overrides+=(num_workers=0)
    case "${dtype}" in
        float32) upstream_overrides+=(optim.amp.enabled=false) ;;
        bfloat16) upstream_overrides+=(optim.amp.enabled=true optim.amp.amp_dtype=bfloat16) ;;
    esac
    [[ -z "${img_size}" ]] || upstream_overrides+=("img_size=${img_size}")
    train_args=(launch.py --config "${upstream_config}" "${upstream_overrides[@]}")
}

# vggt_launch perf|full ARGS...: parse the options, check the data, run torchrun, write the summary.
vggt_launch() {
    local case="$1"
    shift
    local config="${case}" name="VGGT_8p_${case}"
    local max_epochs="" max_steps="" nproc="" device=auto batch_size=15 data=co3d weights="" random_weights=""
    local repeat_batch=""
    local nnodes=1 node_rank=0 master_addr=127.0.0.1 master_port=29500
    local co3d_dir="${VGGT_REPO_ROOT}/data/co3d" anno_dir="${VGGT_REPO_ROOT}/data/co3d_annotations"
    local scenes_dir="${VGGT_REPO_ROOT}/runs/launcher_scenes" output_root="${VGGT_REPO_ROOT}/test/output" flag value
    local eval_anno_dir="" evaluate=0 dtype="" img_size=""
    [[ "${case}" != full ]] || vggt_upstream_layout || evaluate=1 # accuracy needs vggt-npu's evaluation
    ! vggt_upstream_layout || co3d_dir="${VGGT_REPO_ROOT}/co3D/co3D" anno_dir="${VGGT_REPO_ROOT}/co3D/co3D_annotations"
    while (($#)); do
        flag="$1"
        if [[ "${flag}" == --*=* ]]; then
            value="${flag#*=}"
            flag="${flag%%=*}"
        elif [[ "${flag}" == -h || "${flag}" == --help ]]; then
            vggt_usage "${case}"
            exit 0
        elif [[ "${flag}" == --random-weights || "${flag}" == --skip-eval || "${flag}" == --repeat-batch ]]; then
            value=""
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
            --nnodes) nnodes="${value}" ;;
            --node-rank) node_rank="${value}" ;;
            --master-addr) master_addr="${value}" ;;
            --master-port) master_port="${value}" ;;
            --batch-size) batch_size="${value}" ;;
            --device) device="${value}" ;;
            --data) data="${value}" ;;
            --co3d-dir) co3d_dir="${value}" ;;
            --anno-dir) anno_dir="${value}" ;;
            --weights) weights="${value}" ;;
            --random-weights) random_weights=1 ;;
            --repeat-batch) repeat_batch=1 ;;
            --dtype) dtype="${value}" ;;
            --img-size) img_size="${value}" ;;
            --scenes-dir) scenes_dir="${value}" ;;
            --output-root) output_root="${value}" ;;
            --eval-anno-dir) eval_anno_dir="${value}" ;;
            --skip-eval) evaluate=0 ;;
            *)
                echo "$(basename "$0"): unknown option '${flag}'" >&2
                vggt_usage "${case}" >&2
                exit 2
                ;;
        esac
    done
    ((node_rank == 0)) || evaluate=0 # node 0 evaluates; the others need no test annotations
    vggt_check_positive_int --max-epochs "${max_epochs}"
    vggt_check_positive_int --max-steps "${max_steps}"
    vggt_check_positive_int --nproc "${nproc}"
    vggt_check_positive_int --batch-size "${batch_size}"
    [[ -z "${dtype}" || "${dtype}" =~ ^(bfloat16|float32)$ ]] || vggt_fail 2 "--dtype is bfloat16 or float32, got '${dtype}'"
    [[ -z "${img_size}" || ("${img_size}" =~ ^[1-9][0-9]*$ && $((img_size % 14)) -eq 0) ]] ||
        vggt_fail 2 "--img-size wants a positive multiple of the patch size 14 (e.g. 224, 518), got '${img_size}'"
    vggt_check_positive_int --nnodes "${nnodes}"
    [[ "${node_rank}" =~ ^[0-9]+$ ]] && ((node_rank < nnodes)) ||
        vggt_fail 2 "--node-rank is 0..$((nnodes - 1)) for --nnodes ${nnodes}, got '${node_rank}'"
    [[ "${master_port}" =~ ^[1-9][0-9]*$ ]] && ((master_port <= 65535)) ||
        vggt_fail 2 "--master-port wants a TCP port 1..65535, got '${master_port}'"
    [[ -n "${master_addr}" && "${master_addr}" != -* ]] || vggt_fail 2 "--master-addr wants node 0's address"
    [[ "${device}" =~ ^(auto|npu|cuda|cpu)$ ]] || vggt_fail 2 "--device is auto, npu, cuda or cpu, got '${device}'"
    [[ "${data}" =~ ^(co3d|synthetic)$ ]] || vggt_fail 2 "--data is co3d or synthetic, got '${data}'"
    # paths given are relative to where the launcher was called from (it then works from the repository root)
    co3d_dir="$(vggt_abspath "${co3d_dir}")"
    anno_dir="$(vggt_abspath "${anno_dir}")"
    output_root="$(vggt_abspath "${output_root}")"
    scenes_dir="$(vggt_abspath "${scenes_dir}")"
    [[ -z "${weights}" ]] || weights="$(vggt_abspath "${weights}")"
    eval_anno_dir="$(vggt_abspath "${eval_anno_dir:-${anno_dir}}")"
    vggt_check_path --co3d-dir "${co3d_dir}"
    vggt_check_path --anno-dir "${anno_dir}"
    vggt_check_path --output-root "${output_root}"
    vggt_check_path --scenes-dir "${scenes_dir}"
    vggt_check_path --weights "${weights}"
    [[ -z "${weights}" || -f "${weights}" ]] || vggt_fail 2 "--weights ${weights}: no such file"
    [[ -z "${weights}" || -z "${random_weights}" ]] || vggt_fail 2 "--weights and --random-weights exclude each other"
    [[ -z "${weights}" || "${data}" == co3d ]] ||
        vggt_fail 2 "--weights loads VGGT-1B weights, but --data synthetic trains the tiny model from scratch"

    local out
    out="$(vggt_case_dir "${output_root}" "${name}" "${node_rank}")"
    local overrides=("$(vggt_hydra_path hydra.run.dir "${out}/run")" log_freq=1)
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
        [[ -z "${random_weights}" ]] || overrides+=(model.random_frozen_weights=true)
        # checked before training, not hours later
        ((!evaluate)) || [[ -f "${eval_anno_dir}/tv_test.jgz" ]] || vggt_fail 2 "--eval-anno-dir ${eval_anno_dir}: \
no tv_test.jgz to evaluate the trained model on; pass the folder holding it, or --skip-eval"
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
        dtype="${dtype:-float32}"
        overrides+=(data.num_workers=0)
    fi
    [[ -z "${dtype}" ]] || overrides+=("optim.amp_dtype=${dtype}")
    [[ -z "${img_size}" ]] || overrides+=("data.img_size=${img_size}")
    [[ -z "${repeat_batch}" ]] || overrides+=(data.train.repeat_batch=true)

    local rendezvous=()
    mapfile -t rendezvous < <(vggt_rendezvous_args "${nnodes}" "${node_rank}" "${master_addr}" "${master_port}")
    vggt_renew_case_dir "${out}"
    local where=""
    ((nnodes == 1)) || where=" on node ${node_rank} of ${nnodes} (rendezvous ${master_addr}:${master_port})"
    echo "${name}: ${nproc} x ${device_type} (${device_name})${where}, --data ${data}; log ${out}/train.log"
    local train_args=(-m training.launch --config-name "${config}" "${overrides[@]}")
    ! vggt_upstream_layout || vggt_upstream_train_args
    local start status=0
    start="$(date +%s)"
    "${python}" -m torch.distributed.run "${rendezvous[@]}" --nproc_per_node "${nproc}" \
        --log-dir "${out}/torchrun" "${train_args[@]}" >"${out}/train.log" 2>&1 || status=$?
    local e2e=$(($(date +%s) - start))
    ((status == 0)) || vggt_report_failure "${out}" "${status}" "${e2e}" "${node_rank}"
    if ((node_rank != 0)); then
        echo "node ${node_rank} done; the summary is written on node 0"
        return
    fi
    local losses=() accuracy=() eval_status=0
    [[ "${case}" != full ]] || losses=(--losses)
    if ((evaluate)); then
        vggt_evaluate "${out}" "${device_type}" "${data}" "${co3d_dir}" "${eval_anno_dir}" "${scenes_dir}" ||
            eval_status=$?
        ((eval_status)) || accuracy=(--eval-json "${out}/eval/co3d_eval.json")
    fi
    # ${a[@]+"${a[@]}"}: an empty array is fine under set -u on bash < 4.4 too
    "${python}" test/summarize_run.py "${out}/train.log" --out "${out}/${name}.log" --case-name "${name}" \
        --device-type "${device_type}" --device-name "${device_name}" --rank-size "$((nnodes * nproc))" \
        --batch-size "${batch_size}" --images-per-sample "${VGGT_IMAGES_PER_SAMPLE}" --e2e-seconds "${e2e}" \
        ${losses[@]+"${losses[@]}"} ${accuracy[@]+"${accuracy[@]}"}
    echo "summary: ${out}/${name}.log"
    ((!eval_status)) || vggt_fail 1 "evaluation failed (see ${out}/eval.log); the summary has no accuracy"
}

# vggt_evaluate OUT DEVICE_TYPE DATA CO3D_DIR ANNO_DIR SCENES_DIR: `vggt eval co3d` of the trained checkpoint
# OUT/run/ckpts/checkpoint.pt into OUT/eval/ (output in OUT/eval.log): Co3D tv by the published protocol, or
# for --data synthetic the tiny model on the generated scenes' test split (4 frames of each 8-frame sequence).
vggt_evaluate() {
    local out="$1" device_type="$2" data="$3" co3d_dir="$4" anno_dir="$5" scenes_dir="$6" status=0
    local args=(eval co3d --model "${out}/run/ckpts/checkpoint.pt" --device "${device_type}" --out "${out}/eval")
    if [[ "${data}" == co3d ]]; then
        args+=(--co3d-dir "${co3d_dir}" --anno-dir "${anno_dir}" --categories tv)
    else
        args+=(--co3d-dir "${scenes_dir}/co3d" --anno-dir "${scenes_dir}/co3d_annotations" --categories synthetic
            --config tiny --resolution 112 --num-frames 4 --min-frames 8)
    fi
    echo "evaluating ${out}/run/ckpts/checkpoint.pt; log ${out}/eval.log"
    "${PYTHON:-python}" -m vggt "${args[@]}" >"${out}/eval.log" 2>&1 || status=$?
    ((status == 0)) || tail -n 20 "${out}/eval.log" >&2
    return "${status}"
}

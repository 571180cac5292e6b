#!/usr/bin/env bash
# Offline inference of an exported model: preprocess -> build the app -> infer -> postprocess.
# Each stage runs in the foreground; the first one that fails stops the script,
# which names the stage and its log.
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# shellcheck disable=SC2034  # read by common.sh
ZOO_USAGE="usage: bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_OR_ANNOTATION_FILE [DEVICE_ID] [--backend=ascend310|cpu|python] [--config_path=CONFIG] [--key=value ...]

  MINDIR_PATH   the export (python export.py ... --file_format=MINDIR, batch 1). --backend=cpu
                runs the ONNX export of the same name (<name>.onnx) instead
  DATA_PATH     CIFAR-10 root | ImageNet split folder (class sub-folders, or flat with a label
                file) | COCO val2017 folder
  LABEL_OR_ANNOTATION_FILE
                classifiers: label file, one '<image-stem> <class-index>' line per image; when it
                does not exist, preprocess.py writes it from DATA_PATH (CIFAR-10 records, or the
                sorted ImageNet class folders). YOLOv3-Tiny: the COCO instances JSON
  DEVICE_ID     Ascend device index (default 0; --backend=ascend310 only)

options:
  --backend=ascend310   the C++ app (ascend310_infer/) on an Ascend 310 with the MINDIR (default)
  --backend=cpu         the same app on the CPU: OpenCV DNN with the ONNX export
  --backend=python      infer.py: onnxruntime (.onnx) or MindSpore (.mindir) on the CPU
  --config_path=CONFIG  the model's config; default: the <model file>.json that export.py wrote
  --key=value           config overrides (need --config_path)
  --output_dir=DIR      parent of the run folder (default: <repo>/outputs)
  --run_name=NAME       run folder name (default: <model>_infer_<date>-<time>)
$ZOO_HELP_ENV
  INFER_BUILD_DIR    where ascend310_infer/build.sh builds (default ascend310_infer/out)

The run folder gets preprocess.log, build.log, infer.log, acc.log (the accuracy, or the
COCO table), result_Files/<stem>_<i>.bin, time_Result/test_perform_static.txt and, for
YOLOv3-Tiny, postprocess/ (predictions.json, metrics.json).

upstream forms:
  run_infer_310.sh MINDIR_PATH DATA_PATH ANNO_PATH [DEVICE_ID]   (YOLOv3-Tiny): the same as above
  run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_PATH CPU [DEVICE_ID]   (Tiny-DarkNet): runs; CPU
      (decode on the host) is what this app always does, so the word is dropped
  run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_PATH DVPP [DEVICE_ID]: refused (DVPP decoding is
      not supported; upstream refused it too) with the command without DVPP
  run_infer_310.sh MINDIR_PATH DATA_PATH DVPP|CPU [DEVICE_ID]: refused with the command that puts
      a label file (written from DATA_PATH when missing) in its place
  The label or annotation file is checked (it parses; class indices below num_classes) before
  any inference starts.

example:
  bash scripts/run_infer_310.sh tinydarknet_imagenet.mindir /data/imagenet/val imagenet_label.txt 0
  bash scripts/run_infer_310.sh tinydarknet_imagenet.mindir /data/imagenet/val imagenet_label.txt --backend=cpu"

# Upstream Tiny-DarkNet's MINDIR DATA LABEL DVPP|CPU [DEVICE_ID]: its app
# decoded images on the host (CPU) or on the Ascend's DVPP, and refused DVPP.
# Here the host always decodes, so CPU is dropped and DVPP refused with the
# command that runs instead.
args=("$@")
for i in 2 3; do
    decode=${args[i]:-}
    [[ $decode == --* ]] && break
    case ${decode^^} in
        CPU | DVPP) ;;
        *) continue ;;
    esac
    rest=("${args[@]:0:i}" "${args[@]:i+1}")
    if ((i == 2)); then  # no label file before the decode mode
        rest=("${args[@]:0:2}" label.txt "${args[@]:3}")
        fix="the label file comes before it (one that does not exist yet is written from DATA_PATH)"
    elif [[ ${decode^^} == DVPP ]]; then
        fix="DVPP decoding is not supported (upstream Tiny-DarkNet refused it as well); the host decodes"
    else
        zoo_say "upstream decode mode '$decode' (argument 4): images are decoded on the host here too; dropped; running: $(printf '%q ' bash "$0" "${rest[@]}" | sed 's/ $//')"
        set -- "${rest[@]}"
        break
    fi
    zoo_form_error "upstream form 'MINDIR_PATH DATA_PATH LABEL_PATH DVPP|CPU [DEVICE_ID]' (Tiny-DarkNet run_infer_310.sh): '$decode' (argument $((i + 1))): $fix; run: $(printf '%q ' bash "$0" "${rest[@]}" | sed 's/ $//')"
done

# shellcheck disable=SC2034  # read by common.sh
ZOO_LAUNCHER_OPTIONS=(backend config_path)
zoo_parse_args 3 1 "$@"

backend=${ZOO_OPT[backend]:-ascend310}
case $backend in
    ascend310 | cpu | python) ;;
    *) zoo_usage_error "--backend must be ascend310, cpu or python, got '$backend'" ;;
esac
if [[ -n $ZOO_DEVICE_ID && $backend != ascend310 ]]; then
    zoo_usage_error "DEVICE_ID selects an Ascend device; it cannot be used with --backend=$backend"
fi
config_path=${ZOO_OPT[config_path]:-}
if ((${#ZOO_PASSTHROUGH[@]})) && [[ -z $config_path ]]; then
    zoo_usage_error "config overrides (${ZOO_PASSTHROUGH[*]}) need --config_path=CONFIG"
fi

zoo_find_python
export PYTHONPATH="$ZOO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
model=$(zoo_abspath "${ZOO_POSITIONAL[0]}")
data=$(zoo_abspath "${ZOO_POSITIONAL[1]}")
label=$(zoo_abspath "${ZOO_POSITIONAL[2]}")
stem=${model%.*}
[[ -f $model ]] || zoo_die "model file '${ZOO_POSITIONAL[0]}' not found (MINDIR_PATH, argument 1); make it with python export.py --config_path=<config> --checkpoint_path=<ckpt> --file_format=MINDIR"
[[ -d $data ]] || zoo_die "data folder '${ZOO_POSITIONAL[1]}' not found (DATA_PATH, argument 2)"
if [[ -n $config_path ]]; then
    [[ -f $config_path ]] || zoo_die "config file '$config_path' not found (--config_path)"
    config_path=$(zoo_abspath "$config_path")
fi

cpu_hint="on this machine run the same pipeline on the CPU with the ONNX export:"
[[ -f $stem.onnx ]] || cpu_hint+="
  python export.py --config_path=<config> --checkpoint_path=<ckpt> --file_format=ONNX --file_name=$stem"
cpu_hint+="
  bash scripts/run_infer_310.sh $stem.onnx ${ZOO_POSITIONAL[1]} ${ZOO_POSITIONAL[2]} --backend=cpu"
app_model=$model
case $backend in
    ascend310)
        [[ $model == *.mindir ]] || zoo_die "--backend=ascend310 runs a MINDIR export, got '$model'"
        if [[ ${ZOO_SKIP_DEVICE_CHECK:-0} != 1 ]] && ! compgen -G "/dev/davinci[0-9]*" > /dev/null; then
            zoo_die "no Ascend 310 on this machine (no /dev/davinci* device: the Ascend driver, toolkit and the Ascend build of MindSpore are needed for --backend=ascend310); $cpu_hint"
        fi
        ;;
    cpu)
        if [[ $model != *.onnx ]]; then
            [[ -f $stem.onnx ]] || zoo_die "--backend=cpu runs the ONNX export (OpenCV DNN), and there is no '$stem.onnx' next to the model; export it: python export.py --config_path=<config> --checkpoint_path=<ckpt> --file_format=ONNX --file_name=$stem"
            app_model=$stem.onnx
        fi
        ;;
esac

# What the model needs (dataset, classes, preprocessing flags of the app).
spec_args=("--model_file=$app_model")
[[ -n $config_path ]] && spec_args+=("--config_path=$config_path")
spec_args+=(${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"})
spec_text=$("$ZOO_PYTHON" -m src.deploy.spec "${spec_args[@]}") \
    || zoo_die "cannot tell how to preprocess for '$app_model' (see the error above); pass --config_path=<the model's config>"
declare -A spec=()
while IFS='=' read -r key value; do
    spec[$key]=$value
done <<< "$spec_text"
read -r -a app_flags <<< "${spec[APP_FLAGS]}"

# 0. the label / annotation file scores the run: check it before inferring anything.
if [[ ${spec[TASK]} == detection ]]; then
    [[ -f $label ]] || zoo_die "annotation file '${ZOO_POSITIONAL[2]}' not found (LABEL_OR_ANNOTATION_FILE, argument 3): YOLOv3-Tiny is scored against the COCO instances JSON"
fi
if [[ -f $label ]]; then
    problem=$("$ZOO_PYTHON" -c '
import sys
from src.errors import ZooError
task, path, num_classes = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if task == "detection":
        from src.datasets.coco import load_coco_annotations
        coco = load_coco_annotations(path)
        if not coco.imgs or not coco.cats:
            sys.exit(f"COCO annotation file {path!r} lists no images or no categories")
    else:
        from src.deploy.common import read_label_file
        read_label_file(path, num_classes)
except ZooError as exc:
    sys.exit(str(exc))
' "${spec[TASK]}" "$label" "${spec[NUM_CLASSES]}" 2>&1) \
        || zoo_die "LABEL_OR_ANNOTATION_FILE '${ZOO_POSITIONAL[2]}' (argument 3) is unusable: ${problem//$'\n'/ }"
fi

# shellcheck disable=SC2034  # names the run folder (zoo_make_run_dir)
ZOO_CONFIG_STEM=$(basename "$stem")
zoo_make_run_dir infer
run=$ZOO_RUN_DIR
zoo_say "model $app_model (${spec[MODEL]}, ${spec[DATASET]}, ${spec[NUM_CLASSES]} classes; spec: ${spec[SOURCE]})"
zoo_say "backend $backend; run folder $run"

# run_stage NAME LOG CMD...: CMD in the foreground, output in LOG; stop on failure.
# Each stage leads a process group of its own; SIGINT/SIGTERM stop it (and
# what it started) before the script exits.
zoo_trap_signals
run_stage() {
    local name=$1 log=$2 rc
    shift 2
    zoo_say "[$name] $(printf '%q ' "$@")"
    ZOO_CHILDREN=()
    zoo_start "$log" 0 "$@"
    zoo_wait_children 0 || true
    rc=${ZOO_EXIT[$ZOO_LAST_PID]}
    if ((rc != 0)); then
        echo "--- last lines of $log:" >&2
        tail -n 15 "$log" >&2
        zoo_die "stage '$name' failed (exit status $rc); full log: $log"
    fi
}

# 1. preprocess: CIFAR-10 records become .bin network inputs; a missing label file is made.
inputs=$data
if [[ ${spec[TASK]} == detection ]]; then
    :
elif [[ ${spec[DATASET]} == cifar10 || ! -f $label ]]; then
    pre_cmd=("$ZOO_PYTHON" "$ZOO_ROOT/preprocess.py" "${spec_args[@]}" "--data_path=$data"
        "--output_path=$run/preprocess_Result")
    if [[ -f $label ]]; then
        zoo_say "using the existing label file $label"
    else
        pre_cmd+=("--label_file=$label")
    fi
    run_stage preprocess "$run/preprocess.log" "${pre_cmd[@]}"
    [[ ${spec[DATASET]} == cifar10 ]] && inputs=$run/preprocess_Result/images
fi

# 2. build the C++ app (incremental after the first time).
if [[ $backend != python ]]; then
    app="${INFER_BUILD_DIR:-$ZOO_ROOT/ascend310_infer/out}/main"
    run_stage build "$run/build.log" bash "$ZOO_ROOT/ascend310_infer/build.sh"
    if [[ $backend == ascend310 ]] && ! zoo_dry_run && ! "$app" --version | grep -q "ascend310 (MindSpore"; then
        zoo_die "the app was built without the ascend310 backend: MindSpore's C++ inference API was not found (see $run/build.log; set MINDSPORE_PATH=<site-packages>/mindspore of the Ascend build); $cpu_hint"
    fi
fi

# 2b. OpenCV below 4.7 cannot read ReLU6 as the export writes it (opset-11 Clip, which
# onnxruntime fuses): run a copy in the run folder with it rebuilt from Relu/Sub (exact).
if [[ $backend == cpu ]]; then
    opencv_copy="$run/$(basename "$stem").opencv.onnx"
    run_stage opencv_model "$run/opencv_model.log" "$ZOO_PYTHON" -m src.deploy.onnx_compat \
        "$app_model" "$opencv_copy"
    if [[ -f $opencv_copy ]]; then
        app_model=$opencv_copy
        zoo_say "OpenCV runs $app_model"
    fi
fi

# 3. inference: result_Files/<stem>_<i>.bin and time_Result/ in the run folder.
if [[ $backend == python ]]; then
    infer_cmd=("$ZOO_PYTHON" "$ZOO_ROOT/infer.py" "${spec_args[@]}" "--data_path=$inputs" "--output_path=$run")
else
    infer_cmd=("$app" "--backend=$backend" "--model_path=$app_model" "--dataset_path=$inputs"
        "--output_dir=$run" "--device_id=${ZOO_DEVICE_ID:-0}" "${app_flags[@]}")
fi
run_stage infer "$run/infer.log" "${infer_cmd[@]}"

# 4. postprocess: accuracy (classifiers) or the COCO table (detector) into acc.log.
if [[ ${spec[TASK]} == detection ]]; then
    # predictions.json and metrics.json go to $run/postprocess/.
    post_cmd=("$ZOO_PYTHON" "$ZOO_ROOT/postprocess.py" "--result_path=$run/result_Files" "--img_path=$data"
        "--ann_file=$label" "${spec_args[@]}" "--output_dir=$run" "--run_name=postprocess")
else
    post_cmd=("$ZOO_PYTHON" "$ZOO_ROOT/postprocess.py" "--result_path=$run/result_Files"
        "--label_file=$label" "--num_classes=${spec[NUM_CLASSES]}")
fi
run_stage postprocess "$run/acc.log" "${post_cmd[@]}"

if zoo_dry_run; then
    zoo_say "dry run: done"
    exit 0
fi
cat "$run/time_Result/test_perform_static.txt"
cat "$run/acc.log"
zoo_say "done; results in $run"

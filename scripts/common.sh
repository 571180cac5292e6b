# shellcheck shell=bash
# shellcheck disable=SC2034  # variables here are read by the launchers that source this file
# Shared functions of every launcher in scripts/. Sourced, never run.
#
# Each launcher is a few lines: its usage text, then
#   zoo_parse_args NUM_REQUIRED DEVICE_ID_ALLOWED "$@"   positionals, options, -h
#   zoo_resolve_config / zoo_check_config / zoo_check_data_dir / zoo_require_device
#   zoo_make_run_dir KIND; zoo_go_background [MAIN_LOG] (training only)
#   zoo_trap_signals; zoo_start LOG ECHO CMD...; zoo_wait_children STOP_ON_FAILURE
# so argument handling, checks, run folders, backgrounding and signal handling
# are written once (upstream had one copy per model, each slightly different).

ZOO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ZOO_SCRIPT="$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")"
ZOO_NAME="$(basename "$0")"

# Option help shared by the usage texts.
ZOO_HELP_KEYS="  --key=value        any config key, e.g. --epochs=10 --batch_size=64 --lr.base_lr=0.05
                     (python train.py -h lists them all)
  --output_dir=DIR   parent of the run folder (default: <repo>/outputs)
  --run_name=NAME    run folder name (default: <config>_<kind>_<date>-<time>)"
ZOO_HELP_BACKGROUND="  --foreground       wait for the run and return its exit status (or env FOREGROUND=1);
                     by default training runs in the background (nohup) and the pid is printed"
ZOO_HELP_ENV="environment:
  PYTHON             interpreter with MindSpore (default: <repo>/.venv/bin/python, else python3)"

# Filled by zoo_parse_args.
ZOO_POSITIONAL=()   # CONFIG DATA_DIR ... (and DEVICE_ID when given)
ZOO_PASSTHROUGH=()  # --key=value flags for train.py / eval.py
ZOO_KEEP_ARGS=()    # the original arguments minus the ones the launcher re-adds itself
ZOO_DEVICE_ID=""
ZOO_FOREGROUND="${FOREGROUND:-0}"
ZOO_FORCE="${ZOO_FORCE:-0}"   # --force: start more workers than this machine has cores
ZOO_USER_OPTIONS=() # the --key=value flags as the user wrote them (for printed commands)
ZOO_FORMS=""        # the upstream argument forms a launcher accepts (see zoo_upstream_form)
ZOO_FORM_OPTIONS=() # options an upstream form adds (--pretrained=CKPT, --cpus_per_rank=N)
ZOO_OUTPUT_DIR=""
ZOO_RUN_NAME=""
declare -A ZOO_OPT=()          # launcher options named in ZOO_LAUNCHER_OPTIONS
ZOO_LAUNCHER_OPTIONS=()        # set by a launcher before zoo_parse_args, e.g. (nodes node_rank)
ZOO_RESERVED=()                # "key=why" pairs a launcher forbids as --key=value
ZOO_CHILDREN=()                # pids to stop on Ctrl-C
ZOO_CHILD_STOP_SIGNAL=TERM     # or the signal the launcher got; msrun only reacts to INT
ZOO_LAUNCHER_LOG=launcher.log  # the background supervisor's own log, in the run folder
declare -A ZOO_EXIT=()         # pid -> exit status, or "stopped"

# --------------------------------------------------------------------------- messages

zoo_usage() {
    printf '%s\n' "$ZOO_USAGE"
    [[ -z $ZOO_FORMS ]] || zoo_forms_help
}

# The upstream forms this launcher accepts, from the same table zoo_upstream_form reads.
zoo_forms_help() {
    local -n forms="ZOO_FORMS_$ZOO_FORMS"
    local form sig template names origin word ours
    printf '\nupstream forms (the model zoo'"'"'s per-model scripts), recognised when argument 1 is not a config:\n'
    for form in "${forms[@]}"; do
        IFS='|' read -r sig template names origin <<< "$form"
        read -r -a name_of <<< "$names"
        ours=""
        for word in $template; do
            case $word in
                C) word=CONFIG ;;
                D) word=DATA_DIR ;;
                N8) word=8 ;;
                --*=@*) word="${word%@*}${name_of[${word##*@} - 1]}" ;;
                *) word=${name_of[word - 1]} ;;
            esac
            ours+="${ours:+ }$word"
        done
        printf '  %s %s\n      (%s) -> %s %s\n' "$ZOO_NAME" "$names" "$origin" "$ZOO_NAME" "$ours"
    done
    [[ $ZOO_FORMS == eval ]] && printf '  %s   (no arguments; Tiny-DarkNet run_eval.sh) -> the commands to run instead\n' "$ZOO_NAME"
    cat << 'EOF_RULES'
  How arguments are told apart: cifar10 / imagenet / imagenet2012 / coco (no '/') is a
  DATASET; digits are a DEVICE_ID, RANK_SIZE or CPUS_PER_RANK; *.json is a RANK_TABLE_FILE;
  *.ckpt, another existing file or a folder of *.ckpt is a CHECKPOINT; anything else is a
  DATA_DIR, whose layout names its dataset (annotations/instances_*.json: coco;
  cifar-10-batches-bin/ or *_batch*.bin: cifar10; train/ or val/: imagenet).
  The form runs when the data (and a checkpoint's recorded model) fit exactly one shipped
  config (coco: yolov3_tiny_coco); otherwise the launcher prints one line with the commands
  in this project's form, built from your arguments, and exits 2.
EOF_RULES
}

# Wrong arguments: one error line, then the usage, both on stderr; exit 2.
zoo_usage_error() {
    printf '%s: error: %s\n\n' "$ZOO_NAME" "$1" >&2
    zoo_usage >&2
    exit 2
}

# A problem with the environment or the inputs: one line on stderr; exit 1.
zoo_die() {
    printf '%s: error: %s\n' "$ZOO_NAME" "$1" >&2
    exit 1
}

zoo_say() {
    printf '%s: %s\n' "$ZOO_NAME" "$1"
}

# --------------------------------------------------------------------------- arguments

# zoo_parse_args NUM_REQUIRED DEVICE_ID_ALLOWED(0|1) "$@"
# Positionals come first; then --key=value flags. Launcher options (from
# ZOO_LAUNCHER_OPTIONS) land in ZOO_OPT, --output_dir/--run_name/--foreground
# are handled here, everything else is passed on to the Python entry point.
zoo_parse_args() {
    local required=$1 device_id_allowed=$2 arg key value reserved
    shift 2
    for arg in "$@"; do
        if [[ $arg == -h || $arg == --help ]]; then
            zoo_usage
            exit 0
        fi
    done
    while (($#)) && [[ $1 != --* ]]; do
        [[ $1 == -* ]] && zoo_usage_error "unknown option '$1' (options are written --key=value)"
        ZOO_POSITIONAL+=("$1")
        shift
    done
    ZOO_USER_OPTIONS=("$@")
    [[ -n $ZOO_FORMS ]] && zoo_upstream_form "$required"
    ZOO_KEEP_ARGS=(${ZOO_POSITIONAL[@]+"${ZOO_POSITIONAL[@]}"})
    for arg in ${ZOO_FORM_OPTIONS[@]+"${ZOO_FORM_OPTIONS[@]}"} "$@"; do
        [[ $arg == --* ]] || zoo_usage_error "unexpected argument '$arg' after the options; positional arguments come first and options are written --key=value"
        key=${arg#--}
        key=${key%%=*}
        key=${key//-/_}  # train.py reads --data-dir as --data_dir
        value=${arg#*=}
        [[ $arg == *=* ]] || value=""
        for reserved in ${ZOO_RESERVED[@]+"${ZOO_RESERVED[@]}"}; do
            [[ $key == "${reserved%%=*}" ]] && zoo_usage_error "--$key cannot be given here: ${reserved#*=}"
        done
        case $key in
            foreground)
                ZOO_FOREGROUND=1
                continue ;;
            force)
                ZOO_FORCE=1
                ZOO_KEEP_ARGS+=("$arg")
                continue ;;
            output_dir)
                [[ -n $value ]] || zoo_usage_error "--output_dir needs a value (--output_dir=DIR)"
                ZOO_OUTPUT_DIR=$value
                continue ;;
            run_name)
                [[ -n $value && $value != */* ]] || zoo_usage_error "--run_name needs a folder name without '/'"
                ZOO_RUN_NAME=$value
                continue ;;
        esac
        if zoo_is_launcher_option "$key"; then
            [[ $arg == *=* && -n $value ]] || zoo_usage_error "--$key needs a value (--$key=VALUE)"
            ZOO_OPT[$key]=$value
        else
            ZOO_PASSTHROUGH+=("$arg")
        fi
        ZOO_KEEP_ARGS+=("$arg")
    done
    local count=${#ZOO_POSITIONAL[@]}
    if ((count < required)); then
        local hint=""
        ((count == 0)) && [[ -n $ZOO_FORMS ]] && hint=$(zoo_bare_form_hint)
        zoo_usage_error "expected $required positional argument(s)$( ((device_id_allowed)) && echo " (+ optional DEVICE_ID)"), got $count$hint"
    fi
    if ((count > required + device_id_allowed)); then
        zoo_usage_error "too many positional arguments ($count): '${ZOO_POSITIONAL[*]:required}'"
    fi
    if ((count == required + 1)); then
        ZOO_DEVICE_ID=${ZOO_POSITIONAL[required]}
        [[ $ZOO_DEVICE_ID =~ ^[0-9]+$ ]] || zoo_usage_error "DEVICE_ID must be a device index such as 0, got '$ZOO_DEVICE_ID' (argument $count)"
    fi
    [[ $ZOO_FOREGROUND == 1 || $ZOO_FOREGROUND == 0 ]] || zoo_usage_error "FOREGROUND must be 0 or 1, got '$ZOO_FOREGROUND'"
    [[ $ZOO_FORCE == 1 || $ZOO_FORCE == 0 ]] || zoo_usage_error "ZOO_FORCE must be 0 or 1, got '$ZOO_FORCE'"
}

zoo_is_launcher_option() {
    local name
    for name in ${ZOO_LAUNCHER_OPTIONS[@]+"${ZOO_LAUNCHER_OPTIONS[@]}"}; do
        [[ $1 == "$name" ]] && return 0
    done
    return 1
}

# zoo_require_int NAME VALUE MIN: a usage error unless VALUE is an integer >= MIN.
zoo_require_int() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3)); then
        zoo_usage_error "$1 must be an integer >= $3, got '$2'"
    fi
}

# Absolute form of a path, relative ones taken from the caller's directory.
zoo_abspath() {
    if [[ $1 == /* ]]; then
        printf '%s\n' "$1"
    else
        printf '%s\n' "$PWD/${1#./}"
    fi
}

# --------------------------------------------------------------------------- upstream forms

# The upstream model zoo had one copy of each script per model, each with its
# own positional arguments. A launcher lists the ones it accepts in ZOO_FORMS
# (zoo_forms_<kind> below). When the first argument is not a config and the
# arguments have one of those shapes, zoo_upstream_form either rewrites them
# into this project's form (the arguments say which config fits: a dataset
# only one model trains on, or the model a checkpoint records), or stops with
# one line holding the exact commands to run instead. What an argument is:
#   dataset   cifar10, imagenet, imagenet2012, coco (a bare name, no '/')
#   int       digits only (device index, process count, cpus per rank)
#   json      ends in .json (a rank table)
#   ckpt      ends in .ckpt, an existing other file, or a folder holding *.ckpt
#   dir       anything else (a dataset folder; its layout names the dataset:
#             annotations/instances_*.json -> coco, cifar-10-batches-bin/ or
#             *_batch*.bin -> cifar10, train/ or val/ -> imagenet)

# One line per form: SHAPE|OUR ARGUMENTS|NAMES|ORIGIN. OUR ARGUMENTS are this
# project's positionals: C (the config), a number (the user's argument of that
# position), D (a placeholder data folder), N8 (the count upstream assumed),
# and --key=@N options (the user's argument N as that option's value).
ZOO_FORMS_train_device=(
    "int|C D 1|DEVICE_ID|Tiny-DarkNet run_standalone_train.sh"
    "dir|C 1|DATA_DIR|YOLOv3-Tiny run_standalone_train.sh / run_standalone_train_gpu.sh"
    "dir int|C 1 2|DATA_DIR DEVICE_ID|YOLOv3-Tiny run_standalone_train_gpu.sh"
    "int dir dataset|C 2 1|DEVICE_ID DATA_DIR DATASET|Tiny-DarkNet run_standalone_train_gpu.sh"
    "dir dataset|C 1|DATA_DIR DATASET|Tiny-DarkNet run_train_cpu.sh"
)
ZOO_FORMS_train_cpu=(
    "dir dataset|C 1|DATA_DIR DATASET|Tiny-DarkNet run_train_cpu.sh"
    "dir|C 1|DATA_DIR|YOLOv3-Tiny run_standalone_train.sh"
)
ZOO_FORMS_dist_table=(
    "json|C D 1|RANK_TABLE_FILE|Tiny-DarkNet run_distribute_train.sh"
    "dir json|C 1 2|DATA_DIR RANK_TABLE_FILE|YOLOv3-Tiny run_distribute_train.sh"
    "dataset json dir|C 3 2|DATASET RANK_TABLE_FILE DATA_DIR|MobileNetV1 run_distribute_train.sh"
    "dataset json dir ckpt|C 3 2 --pretrained=@4|DATASET RANK_TABLE_FILE DATA_DIR PRETRAINED_CKPT|MobileNetV1 run_distribute_train.sh"
    "json dir|C 2 1|RANK_TABLE_FILE DATA_DIR|VGG16 run_distribute_train.sh"
    "json dir dataset|C 2 1|RANK_TABLE_FILE DATA_DIR DATASET|VGG16 run_distribute_train.sh"
)
ZOO_FORMS_dist_mpi=(
    "int dir dataset|C 2 1|RANK_SIZE DATA_DIR DATASET|Tiny-DarkNet run_distribute_train_gpu.sh"
    "dir int int|C 1 2 --cpus_per_rank=@3|DATA_DIR RANK_SIZE CPUS_PER_RANK|YOLOv3-Tiny run_distribute_train_gpu.sh"
    "dir int|C 1 2|DATA_DIR RANK_SIZE|YOLOv3-Tiny run_distribute_train_gpu.sh"
    "dir|C 1 N8|DATA_DIR|VGG16 run_distribute_train_gpu.sh, which always started 8 GPUs"
)
ZOO_FORMS_eval=(
    "dataset dir ckpt|C 2 3|DATASET DATA_DIR CHECKPOINT|MobileNetV1 run_eval.sh"
    "dataset dir ckpt int|C 2 3 4|DATASET DATA_DIR CHECKPOINT DEVICE_ID|MobileNetV1 run_eval.sh"
    "dir dataset ckpt|C 1 3|DATA_DIR DATASET CHECKPOINT|Tiny-DarkNet run_eval_cpu.sh / run_eval_gpu.sh"
    "dir dataset ckpt int|C 1 3 4|DATA_DIR DATASET CHECKPOINT DEVICE_ID|Tiny-DarkNet run_eval_gpu.sh"
    "dir ckpt|C 1 2|DATA_DIR CHECKPOINT|YOLOv3-Tiny run_eval.sh / run_eval_gpu.sh"
    "dir ckpt int|C 1 2 3|DATA_DIR CHECKPOINT DEVICE_ID|YOLOv3-Tiny run_eval.sh"
)

# The dataset a name argument means (imagenet2012 is upstream's name for imagenet).
zoo_dataset_name() {
    [[ $1 == */* ]] && return 1
    case ${1,,} in
        cifar10 | cifar-10) echo cifar10 ;;
        imagenet | imagenet2012) echo imagenet ;;
        coco | coco2017) echo coco ;;
        *) return 1 ;;
    esac
}

zoo_arg_kind() {
    local arg=$1
    if zoo_dataset_name "$arg" > /dev/null; then
        echo dataset
    elif [[ $arg =~ ^[0-9]+$ ]]; then
        echo int
    elif [[ $arg == *.json ]]; then
        echo json
    elif [[ $arg == *.ckpt || -f $arg ]] || { [[ -d $arg ]] && compgen -G "$arg/*.ckpt" > /dev/null; }; then
        echo ckpt
    else
        echo dir
    fi
}

# The dataset a folder holds, judged by its layout (nothing when unknown).
zoo_data_layout() {
    local dir=$1
    if compgen -G "$dir/annotations/instances_*.json" > /dev/null; then
        echo coco
    elif [[ -d $dir/cifar-10-batches-bin || -d $dir/cifar-10-verify-bin ]] || compgen -G "$dir/*_batch*.bin" > /dev/null; then
        echo cifar10
    elif [[ -d $dir/train || -d $dir/val ]]; then
        echo imagenet
    fi
}

# The shipped configs (stems) for DATASET [MODEL]: config/<model>_<dataset>.yaml.
zoo_configs_for() {
    local file stem model=${2:-*}
    for file in "$ZOO_ROOT"/config/${model}_"$1".yaml; do
        [[ -f $file ]] || continue
        stem=$(basename "${file%.yaml}")
        printf '%s\n' "$stem"
    done
}

# "MODEL DATASET" a checkpoint records (a folder: its newest training checkpoint).
zoo_checkpoint_identity() {
    PYTHONPATH="$ZOO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$ZOO_PYTHON" -c '
import os
import sys
import src  # noqa: F401  (CPU setup before MindSpore)
from src.checkpoint import list_checkpoints, read_checkpoint
from src.errors import ZooError
path = sys.argv[1]
if os.path.isdir(path):
    found = list_checkpoints(path) or [os.path.join(path, "best.ckpt")]
    path = found[-1]
try:
    _, meta = read_checkpoint(path)
except ZooError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
print(meta.get("model", ""), meta.get("dataset", ""))
' "$1" 2> /dev/null
}

# The command line of this launcher with the given positionals, the form's
# options and the user's own options, quoted for a shell.
zoo_command_line() {
    local -a words=(bash "$0" "$@" ${ZOO_FORM_OPTIONS[@]+"${ZOO_FORM_OPTIONS[@]}"}
        ${ZOO_USER_OPTIONS[@]+"${ZOO_USER_OPTIONS[@]}"})
    printf '%q ' "${words[@]}" | sed 's/ $//'
}

# A refused upstream form: one line with the commands that do what it meant; exit 2.
zoo_form_error() {
    printf '%s: error: %s\n' "$ZOO_NAME" "$1" >&2
    exit 2
}

# Placeholder for a dataset folder the upstream form did not name.
zoo_placeholder_data() {
    printf '/path/to/%s\n' "${1##*_}"
}

# zoo_our_args CONFIG TEMPLATE...: this project's positionals (ZOO_FORM_ARGS)
# and options (ZOO_FORM_OPTIONS) for a form template; user arguments come from
# ZOO_POSITIONAL.
zoo_our_args() {
    local config=$1 word n
    shift
    ZOO_FORM_ARGS=()
    ZOO_FORM_OPTIONS=()
    for word in "$@"; do
        case $word in
            C) ZOO_FORM_ARGS+=("$config") ;;
            D) ZOO_FORM_ARGS+=("$(zoo_placeholder_data "$config")") ;;
            --*=@*)
                n=${word##*@}
                ZOO_FORM_OPTIONS+=("${word%@*}${ZOO_POSITIONAL[n - 1]}") ;;
            N8) ZOO_FORM_ARGS+=(8) ;;
            *) ZOO_FORM_ARGS+=("${ZOO_POSITIONAL[word - 1]}") ;;
        esac
    done
}

# zoo_upstream_form REQUIRED: see the block comment above.
zoo_upstream_form() {
    local count=${#ZOO_POSITIONAL[@]} first=${ZOO_POSITIONAL[0]:-} i kind shape="" form
    ((count)) || return 0
    zoo_is_config "$first" && return 0
    for ((i = 0; i < count; i++)); do
        kind=$(zoo_arg_kind "${ZOO_POSITIONAL[i]}")
        shape+="${shape:+ }$kind"
    done
    local -n forms="ZOO_FORMS_$ZOO_FORMS"
    local match="" sig template names origin
    for form in "${forms[@]}"; do
        IFS='|' read -r sig template names origin <<< "$form"
        if [[ $sig == "$shape" ]]; then
            match=$form
            break
        fi
    done
    [[ -n $match ]] || return 0
    read -r -a template_words <<< "$template"
    read -r -a name_of <<< "$names"
    local what="upstream form '$names' ($origin)"

    # Check each argument, naming the wrong one; collect what it says.
    local named="" named_at="" data="" data_at="" layout="" ckpt="" ckpt_at="" word split_fix=""
    for ((i = 0; i < count; i++)); do
        word=${ZOO_POSITIONAL[i]}
        case ${name_of[i]} in
            DATASET) named=$(zoo_dataset_name "$word"); named_at=$((i + 1)) ;;
            DATA_DIR)
                [[ -d $word ]] || zoo_form_error "$what: data directory '$word' (argument $((i + 1)), DATA_DIR) not found; point it at the dataset root"
                data=$word
                data_at=$((i + 1))
                layout=$(zoo_data_layout "$word")
                # upstream VGG16 took ImageNet's train/ folder; here DATA_DIR is its parent
                if [[ -z $layout && ${word%/} == */* && $(basename "$word") =~ ^(train|val)$ \
                    && $(zoo_data_layout "$(dirname "$word")") == imagenet ]]; then
                    split_fix="'$word' (argument $data_at, DATA_DIR) is the $(basename "$word") split; DATA_DIR is the ImageNet root holding train/ and val/"
                    data=$(dirname "$word")
                    ZOO_POSITIONAL[i]=$data
                    layout=imagenet
                fi
                ;;
            RANK_TABLE_FILE)
                [[ -f $word ]] || zoo_form_error "$what: rank table '$word' (argument $((i + 1)), RANK_TABLE_FILE) not found; make one with python scripts/rank_table.py generate --device_range \"[0,8)\""
                ;;
            CHECKPOINT | PRETRAINED_CKPT)
                [[ -e $word ]] || zoo_form_error "$what: checkpoint '$word' (argument $((i + 1)), ${name_of[i]}) not found"
                ckpt=$word
                ckpt_at=$((i + 1))
                ;;
        esac
    done
    if [[ -n $named && -n $layout && $named != "$layout" ]]; then
        zoo_form_error "$what: '$data' (argument $data_at, DATA_DIR) holds $layout data, but argument $named_at says $named; give the $named folder, or $layout as argument $named_at"
    fi
    local model="" ckpt_dataset=""
    if [[ -n $ckpt ]]; then
        zoo_find_python
        read -r model ckpt_dataset <<< "$(zoo_checkpoint_identity "$ckpt" || true)"
    fi
    local dataset=${named:-${layout:-$ckpt_dataset}}
    if [[ -n $ckpt_dataset && -n $dataset && $ckpt_dataset != "$dataset" && ${name_of[ckpt_at - 1]} == CHECKPOINT ]]; then
        zoo_form_error "$what: checkpoint '$ckpt' (argument $ckpt_at) was trained on $ckpt_dataset, but the data is $dataset; evaluate it on $ckpt_dataset data, or give a $dataset checkpoint"
    fi

    # Which configs fit.
    local -a configs=()
    if [[ -n $dataset ]]; then
        mapfile -t configs < <(zoo_configs_for "$dataset" "${model:-*}")
        ((${#configs[@]})) || mapfile -t configs < <(zoo_configs_for "$dataset")
    elif [[ -n $data ]]; then
        zoo_form_error "$what: cannot tell which dataset '$data' (argument $data_at, DATA_DIR) holds (coco: annotations/instances_*.json; cifar10: cifar-10-batches-bin/; imagenet: train/ and val/); name the config first: $(zoo_command_line CONFIG "$data" "${ZOO_POSITIONAL[@]:data_at}") with CONFIG one of $(zoo_config_list)"
    else
        # Nothing names the data: upstream read it from its config file (Tiny-DarkNet: ImageNet).
        mapfile -t configs < <(zoo_configs_for imagenet tinydarknet; zoo_configs_for cifar10 tinydarknet)
    fi

    local -a commands=()
    local config placeholder=0
    for config in "${configs[@]}"; do
        zoo_our_args "$config" "${template_words[@]}"
        commands+=("$(zoo_command_line "${ZOO_FORM_ARGS[@]}")")
        [[ " ${template_words[*]} " == *" D "* || " ${template_words[*]} " == *" N8 "* ]] && placeholder=1
    done
    if ((${#configs[@]} == 1 && !placeholder)) && [[ -z $split_fix ]]; then
        zoo_our_args "${configs[0]}" "${template_words[@]}"
        zoo_say "$what: $dataset data${model:+ and a $model checkpoint} fit one config; running: ${commands[0]}"
        ZOO_POSITIONAL=("${ZOO_FORM_ARGS[@]}")
        ZOO_ARG_LABEL[config]="CONFIG ${configs[0]}, chosen for the $dataset data"
        [[ -n $data_at ]] && ZOO_ARG_LABEL[data]="DATA_DIR, argument $data_at"
        [[ -n $ckpt_at ]] && ZOO_ARG_LABEL[checkpoint]="CHECKPOINT, argument $ckpt_at"
        return 0
    fi
    local why
    if [[ -n $split_fix ]]; then
        why=$split_fix
        ((${#configs[@]} > 1)) && why+="; $dataset fits ${#configs[@]} configs, name one as CONFIG"
    elif [[ " ${template_words[*]} " == *" D "* ]]; then
        why="it took the model and the data from its config file; here CONFIG and DATA_DIR come first"
    elif [[ " ${template_words[*]} " == *" N8 "* ]]; then
        why="it does not say how many GPUs; upstream always started 8"
    else
        why="$dataset fits ${#configs[@]} configs ($(printf '%s, ' "${configs[@]}" | sed 's/, $//')); name one as CONFIG"
    fi
    if ((${#commands[@]} == 1)); then
        zoo_form_error "$what: $why; run: ${commands[0]}"
    fi
    zoo_form_error "$what: $why; run one of: $(printf '%s | ' "${commands[@]}" | sed 's/ | $//')"
}

# The shipped config names, comma separated.
zoo_config_list() {
    local file names=""
    for file in "$ZOO_ROOT"/config/*.yaml; do
        [[ -f $file ]] && names+="$(basename "${file%.yaml}"), "
    done
    printf '%s\n' "${names%, }"
}

# True when ARG names a config file (a path, or a name in config/).
zoo_is_config() {
    local candidate
    for candidate in "$1" "$ZOO_ROOT/config/$1" "$ZOO_ROOT/config/$1.yaml"; do
        [[ -f $candidate && $candidate == *.y*ml ]] && return 0
    done
    [[ $1 == *.yaml || $1 == *.yml ]]  # a config path with a typo: report it as one
}

# For a launcher started with no arguments: the upstream bare form's meaning.
zoo_bare_form_hint() {
    local -a commands=()
    local config
    case $ZOO_FORMS in
        eval) ;;
        *) return 0 ;;
    esac
    for config in tinydarknet_imagenet tinydarknet_cifar10; do
        commands+=("$(zoo_command_line "$config" "$(zoo_placeholder_data "$config")" /path/to/checkpoint.ckpt)")
    done
    printf '; upstream Tiny-DarkNet ran %s with no arguments (the data and checkpoint came from its config file); run one of: %s | %s' \
        "$ZOO_NAME" "${commands[0]}" "${commands[1]}"
}

# --------------------------------------------------------------------------- checks

# The interpreter: $PYTHON, else the repo's .venv, else python3 from PATH.
zoo_find_python() {
    if [[ -n ${PYTHON:-} ]]; then
        ZOO_PYTHON=$PYTHON
    elif [[ -x $ZOO_ROOT/.venv/bin/python ]]; then
        ZOO_PYTHON=$ZOO_ROOT/.venv/bin/python
    else
        ZOO_PYTHON=$(command -v python3 || command -v python || true)
    fi
    if [[ -z $ZOO_PYTHON ]] || ! command -v "$ZOO_PYTHON" > /dev/null; then
        zoo_die "no Python found (PYTHON='${PYTHON:-}'); set PYTHON=/path/to/python of the environment with MindSpore"
    fi
}

# CONFIG may be a path, or a file name / stem in the repo's config/ folder.
zoo_resolve_config() {
    local name=$1 candidate
    for candidate in "$name" "$ZOO_ROOT/config/$name" "$ZOO_ROOT/config/$name.yaml"; do
        if [[ -f $candidate ]]; then
            ZOO_CONFIG=$(zoo_abspath "$candidate")
            ZOO_CONFIG_STEM=$(basename "${ZOO_CONFIG%.*}")
            return 0
        fi
    done
    local shipped="" file
    for file in "$ZOO_ROOT"/config/*.yaml; do
        [[ -f $file ]] && shipped+="$(basename "$file") "
    done
    zoo_die "config file '$name' not found (${ZOO_ARG_LABEL[config]}); shipped configs: ${shipped:-none}"
}

# Load the config with the --key=value flags before starting anything, so a
# typo fails now rather than in the background or in every rank. Sets
# ZOO_CFG_DEVICE (resolved device_target) and ZOO_CFG_DEMO (data.demo).
zoo_check_config() {
    local out rc=0
    out=$(PYTHONPATH="$ZOO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$ZOO_PYTHON" -c '
import importlib.util
import sys
from src.config import load_config
from src.errors import ZooError
if importlib.util.find_spec("mindspore") is None:
    sys.exit(4)
try:
    cfg = load_config(sys.argv[1], cli_args=sys.argv[2:])
except ZooError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)
custom = any((cfg.data.train_dir, cfg.data.eval_dir, cfg.data.train_ann_file, cfg.data.eval_ann_file))
print(cfg.device_target, cfg.data.demo, cfg.dataset, cfg.num_classes,
      cfg.checkpoint.eval_every_epochs, custom)
' "$ZOO_CONFIG" ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"} "$@") || rc=$?
    if ((rc == 3)); then
        zoo_die "the configuration above is invalid (config $ZOO_CONFIG plus the --key=value flags)"
    elif ((rc == 4)); then
        zoo_die "MindSpore is not installed for $ZOO_PYTHON; set PYTHON to the interpreter of the environment with MindSpore (e.g. <repo>/.venv/bin/python)"
    elif ((rc != 0)); then
        zoo_die "$ZOO_PYTHON could not read the config (see above); set PYTHON to the interpreter of the environment with the zoo's requirements"
    fi
    read -r ZOO_CFG_DEVICE ZOO_CFG_DEMO ZOO_CFG_DATASET ZOO_CFG_NUM_CLASSES ZOO_CFG_EVAL_EVERY \
        ZOO_CFG_CUSTOM_SPLITS <<< "$out"
}

# What each user argument is, for the messages ("DATA_DIR, argument 2");
# an upstream form that was rewritten sets them to the user's positions.
declare -A ZOO_ARG_LABEL=([config]="CONFIG, argument 1" [data]="DATA_DIR, argument 2"
    [checkpoint]="CHECKPOINT, argument 3" [rank_table]="RANK_TABLE_FILE, argument 3")

# zoo_check_data_dir DIR [SPLIT]: the folder exists (or the config makes the
# demo set there: it is made now, once, not by every worker at the same time),
# and unless the config names its own split folders or is a demo config the dataset check of
# src.datasets.check passes for SPLIT (train, val or both; default: the splits
# the run reads) without decoding images, so a wrong folder fails here
# instead of in every worker.
zoo_check_data_dir() {
    local split=${2:-} out
    ZOO_DATA_DIR=$(zoo_abspath "$1")
    if [[ ! -d $ZOO_DATA_DIR && ${ZOO_CFG_DEMO:-False} != True ]]; then
        zoo_die "data directory '$1' not found (${ZOO_ARG_LABEL[data]}); point it at the dataset root (python -m src.datasets.check explains the layouts; python -m src.datasets.demo --root demo_data makes small demo sets)"
    fi
    [[ ${ZOO_CFG_CUSTOM_SPLITS:-False} == True || -z ${ZOO_CFG_DATASET:-} ]] && return 0
    # an existing folder of a demo config is train.py's to judge, as before
    [[ ${ZOO_CFG_DEMO:-False} == True && -d $ZOO_DATA_DIR ]] && return 0
    if [[ -z $split ]]; then
        split=train
        [[ ${ZOO_CFG_EVAL_EVERY:-0} != 0 ]] && split=both
    fi
    out=$(PYTHONPATH="$ZOO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$ZOO_PYTHON" -c '
import os
import sys
from src.cli import ensure_demo_data_if_asked
from src.config import load_config
from src.datasets.check import require_valid_dataset
from src.errors import ZooError
config, data_dir, split, dry_run, *flags = sys.argv[1:]
try:
    cfg = load_config(config, cli_args=[*flags, f"--data_dir={data_dir}"])
    if dry_run == "1" and not os.path.isdir(data_dir):
        sys.exit(0)  # the demo set would be made here; a dry run makes nothing
    ensure_demo_data_if_asked(cfg)
    require_valid_dataset(cfg.dataset, data_dir, cfg.num_classes, split, max_decode=0)
except ZooError as exc:
    print(exc)
    sys.exit(1)
' "$ZOO_CONFIG" "$ZOO_DATA_DIR" "$split" "${ZOO_DRY_RUN:-0}" ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"} 2>&1) \
        || zoo_die "data directory '$1' (${ZOO_ARG_LABEL[data]}) does not hold the config's $ZOO_CFG_DATASET data: ${out//$'\n'/ }"
    [[ -z $out ]] || printf '%s\n' "$out"
}

# Fail before launching when the machine has no such accelerator.
# ZOO_SKIP_DEVICE_CHECK=1 skips this (unusual driver layouts).
zoo_require_device() {
    local target=$1 nodes
    [[ ${ZOO_SKIP_DEVICE_CHECK:-0} == 1 || $target == CPU ]] && return 0
    case $target in
        Ascend)
            nodes=$(compgen -G "/dev/davinci[0-9]*" || true)
            [[ -n $nodes ]] || zoo_die "no Ascend device on this machine (no /dev/davinci* device files; is the Ascend driver installed?). On CPU use scripts/run_train_cpu.sh / run_eval_cpu.sh, on GPU the *_gpu.sh scripts"
            ;;
        GPU)
            command -v nvidia-smi > /dev/null || [[ -e /dev/nvidia0 ]] \
                || zoo_die "no NVIDIA GPU on this machine (no nvidia-smi, no /dev/nvidia0). On CPU use scripts/run_train_cpu.sh / run_eval_cpu.sh"
            ;;
        *) zoo_die "unknown device_target '$target' (Ascend, GPU or CPU)" ;;
    esac
}

zoo_require_file() {  # zoo_require_file PATH WHAT
    [[ -e $1 ]] || zoo_die "$2 '$1' not found"
}

# --------------------------------------------------------------------------- run folder

# Per-run folder OUTPUT_DIR/RUN_NAME (default outputs/<config>_<kind>_<time>, named by
# src.run_folder.default_run_name as the entry points do);
# the entry point writes its log, config.yaml and env.txt there as well.
zoo_make_run_dir() {
    local kind=$1 name
    ZOO_OUTPUT_DIR=$(zoo_abspath "${ZOO_OUTPUT_DIR:-$ZOO_ROOT/outputs}")
    if [[ -n $ZOO_RUN_NAME ]]; then
        name=$ZOO_RUN_NAME
    else
        [[ -n ${ZOO_PYTHON:-} ]] || zoo_find_python
        name=$(PYTHONPATH="$ZOO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$ZOO_PYTHON" -m src.run_folder \
            default-name "$ZOO_CONFIG_STEM" "$kind" "$ZOO_OUTPUT_DIR") \
            || zoo_die "cannot name the run folder in '$ZOO_OUTPUT_DIR'; pass --run_name=NAME"
    fi
    ZOO_RUN_NAME=$name
    ZOO_RUN_DIR="$ZOO_OUTPUT_DIR/$name"
    zoo_dry_run && return 0
    mkdir -p "$ZOO_RUN_DIR" || zoo_die "cannot create the run folder '$ZOO_RUN_DIR'; choose a writable --output_dir"
}

# The flags that put the entry point's outputs into the run folder (all ranks share it).
zoo_run_flags() {
    ZOO_RUN_FLAGS=("--output_dir=$ZOO_OUTPUT_DIR" "--run_name=$ZOO_RUN_NAME")
}

# --------------------------------------------------------------------------- processes

# Unless --foreground / FOREGROUND=1: re-run this launcher under nohup in the
# background (same arguments, same run folder) and return to the shell. The
# background copy supervises the run, so killing its pid stops every rank.
zoo_go_background() {
    [[ $ZOO_FOREGROUND == 1 ]] && return 0
    if zoo_dry_run; then
        zoo_say "dry run: would start in the background (nohup), supervised by a copy of this launcher"
        return 0
    fi
    local log="$ZOO_RUN_DIR/${ZOO_LAUNCHER_LOG:-launcher.log}" pid
    ZOO_QUIET=1 FOREGROUND=1 nohup bash "$ZOO_SCRIPT" "${ZOO_KEEP_ARGS[@]}" \
        "--output_dir=$ZOO_OUTPUT_DIR" "--run_name=$ZOO_RUN_NAME" > "$log" 2>&1 < /dev/null &
    pid=$!
    zoo_say "started in the background, pid $pid"
    printf '  run folder: %s\n  log:        %s\n  follow:     tail -f %q\n  stop:       kill %s\n' \
        "$ZOO_RUN_DIR" "${1:-$log}" "${1:-$log}" "$pid"
    exit 0
}

# ZOO_DRY_RUN=1: every check runs as usual, but each command is printed
# ("dry run: CMD") instead of started, and no run folder is made.
zoo_dry_run() {
    [[ ${ZOO_DRY_RUN:-0} == 1 ]]
}

zoo_print_command() {
    printf 'dry run: %s\n' "$(printf '%q ' "$@")"
}

# Every process a launcher starts, and everything those start (msrun's workers
# put themselves in sessions of their own), inherits this tag: on a stop the
# launcher finds them all by it, also after their parent is gone.
ZOO_LAUNCH_ID="$$-${RANDOM}${RANDOM}-$(date +%s%N)"
export ZOO_LAUNCH_ID

# zoo_start LOG ECHO CMD...: run CMD in the background with its output in LOG
# (and on this terminal when ECHO=1), as the leader of a new process group
# (setsid), so a stop reaches its children too; its pid goes to
# ZOO_CHILDREN/ZOO_LAST_PID. tee ignores Ctrl-C so the last lines still reach the log.
zoo_start() {
    local log=$1 echo=$2
    shift 2
    local -a launch=()
    if zoo_dry_run; then
        launch=(zoo_print_command)
        log=/dev/null
    else
        mkdir -p "$(dirname "$log")"
        command -v setsid > /dev/null && launch=(setsid)
    fi
    if [[ $echo == 1 && ${ZOO_QUIET:-0} != 1 ]] || zoo_dry_run; then
        ${launch[@]+"${launch[@]}"} "$@" > >(trap '' INT TERM; exec tee -a "$log") 2>&1 &
    else
        ${launch[@]+"${launch[@]}"} "$@" >> "$log" 2>&1 &
    fi
    ZOO_LAST_PID=$!
    ZOO_CHILDREN+=("$ZOO_LAST_PID")
}

# True while pid runs (a finished child that nobody waited for is a zombie: not running).
zoo_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# The pids carrying this launcher's tag, except the launcher and its direct
# children (the process-group leaders it stops itself, and tee).
zoo_tagged_pids() {
    local file pid stat ppid
    while read -r file; do
        pid=${file#/proc/}
        pid=${pid%/environ}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        { read -r stat < "/proc/$pid/stat"; } 2> /dev/null || continue
        stat=${stat##*) }
        read -r _ ppid _ <<< "$stat"
        [[ $ppid == "$$" ]] && continue
        printf '%s\n' "$pid"
    done < <(grep -lsz -- "^ZOO_LAUNCH_ID=$ZOO_LAUNCH_ID\$" /proc/[0-9]*/environ 2> /dev/null || true)
}

# zoo_signal_all SIGNAL: every child's process group, and every tagged process.
zoo_signal_all() {
    local sig=$1 pid
    for pid in ${ZOO_CHILDREN[@]+"${ZOO_CHILDREN[@]}"}; do
        kill "-$sig" -- "-$pid" 2> /dev/null || kill "-$sig" "$pid" 2> /dev/null || true
    done
    for pid in $(zoo_tagged_pids); do
        kill "-$sig" "$pid" 2> /dev/null || true
    done
}

# Send ZOO_CHILD_STOP_SIGNAL to every child's process group, then KILL whatever
# is left after 15 s (children, their groups and every tagged process).
zoo_stop_children() {
    local pid deadline=$((SECONDS + 15))
    for pid in ${ZOO_CHILDREN[@]+"${ZOO_CHILDREN[@]}"}; do
        zoo_alive "$pid" && { kill "-$ZOO_CHILD_STOP_SIGNAL" -- "-$pid" 2> /dev/null || kill "-$ZOO_CHILD_STOP_SIGNAL" "$pid" 2> /dev/null; }
    done
    for pid in ${ZOO_CHILDREN[@]+"${ZOO_CHILDREN[@]}"}; do
        while zoo_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        [[ -n ${ZOO_EXIT[$pid]:-} ]] || ZOO_EXIT[$pid]=stopped
    done
    zoo_reap_orphans "$deadline"
    for pid in ${ZOO_CHILDREN[@]+"${ZOO_CHILDREN[@]}"}; do
        wait "$pid" 2> /dev/null || true
    done
    return 0
}

# zoo_reap_orphans [DEADLINE]: TERM the tagged processes still running (workers
# whose parent died without stopping them), KILL them and the child groups at
# DEADLINE (default: 5 s from now).
zoo_reap_orphans() {
    local deadline=${1:-$((SECONDS + 5))} left
    left=$(zoo_tagged_pids)
    if [[ -n $left ]]; then
        # shellcheck disable=SC2086  # one pid per word
        kill -TERM $left 2> /dev/null || true
        while [[ -n $(zoo_tagged_pids) ]] && ((SECONDS < deadline)); do
            sleep 0.2
        done
    fi
    zoo_signal_all KILL
}

# Ctrl-C / kill: stop every child, then exit 130 (INT) or 143 (TERM).
zoo_trap_signals() {
    trap 'zoo_on_signal INT 130' INT
    trap 'zoo_on_signal TERM 143' TERM
}

zoo_on_signal() {
    trap - INT TERM
    # pass Ctrl-C on as SIGINT (train.py then reports "interrupted by SIGINT"); msrun keeps its INT
    [[ $ZOO_CHILD_STOP_SIGNAL == TERM ]] && ZOO_CHILD_STOP_SIGNAL=$1
    printf '%s: received SIG%s, stopping %s process(es)\n' "$ZOO_NAME" "$1" "${#ZOO_CHILDREN[@]}" >&2
    zoo_stop_children
    if declare -F zoo_report > /dev/null; then zoo_report >&2; fi
    exit "$2"
}

# Wait for every child. With STOP_ON_FAILURE=1 the first failure stops the
# others: ranks of a data-parallel job would otherwise block in the next
# collective until the communication timeout. Fills ZOO_EXIT; returns 0 when
# every child exited 0.
zoo_wait_children() {
    local stop_on_failure=${1:-0} pid rc failed=0
    local -a running=("${ZOO_CHILDREN[@]}") still
    while ((${#running[@]})); do
        still=()
        for pid in "${running[@]}"; do
            if zoo_alive "$pid"; then
                still+=("$pid")
                continue
            fi
            rc=0
            wait "$pid" || rc=$?
            ZOO_EXIT[$pid]=$rc
            if ((rc != 0)); then
                failed=1
            fi
        done
        running=(${still[@]+"${still[@]}"})
        if ((failed && stop_on_failure && ${#running[@]})); then
            zoo_say "a process failed; stopping the other ${#running[@]}" >&2
            zoo_stop_children
            break
        fi
        ((${#running[@]})) && { sleep 1 & wait $! || true; }
    done
    [[ -n $(zoo_tagged_pids) ]] && zoo_reap_orphans
    return "$failed"
}

# zoo_cores: the CPUs this process may run on.
zoo_cores() {
    local n
    n=$(nproc 2> /dev/null || getconf _NPROCESSORS_ONLN)
    printf '%s\n' "$n"
}

# zoo_bound_workers WHAT COUNT [CPUS_EACH]: COUNT processes (CPUS_EACH cores
# each) must fit this machine's cores, unless --force / ZOO_FORCE=1: each
# worker is a full MindSpore process, and too many exhaust memory first.
zoo_bound_workers() {
    local what=$1 count=$2 each=${3:-1} cores
    cores=$(zoo_cores)
    ((count * each <= cores || ZOO_FORCE == 1)) && return 0
    if ((each > 1)); then
        zoo_usage_error "$what $count x $each cpus per rank needs $((count * each)) cores, this machine has $cores; lower them, or add --force (env ZOO_FORCE=1) to start them anyway"
    fi
    zoo_usage_error "$what $count is more than the $cores CPU cores of this machine (each worker is a full process); use at most $cores, or add --force (env ZOO_FORCE=1) to start them anyway"
}

# zoo_show_failure LOG LABEL: the last lines of a failed worker's log, which
# hold its reason (train.py's "error: ..." line or the end of a traceback).
zoo_show_failure() {
    [[ -s $1 ]] || return 0
    printf '  %s failed; last lines of %s:\n' "$2" "$1"
    tail -n "${ZOO_FAILURE_LINES:-6}" "$1" | sed 's/^/    | /'
}

# Split this process's allowed CPUs evenly over N local ranks; sets
# ZOO_CPU_SETS[i] to a taskset list ("" when there are fewer CPUs than ranks).
zoo_split_cpus() {
    local n=$1 allowed part lo hi c i per
    local -a cpus=() parts=()
    allowed=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status 2> /dev/null || true)
    [[ -n $allowed ]] || allowed="0-$(($(getconf _NPROCESSORS_ONLN) - 1))"
    IFS=, read -r -a parts <<< "$allowed"
    for part in "${parts[@]}"; do
        lo=${part%-*}
        hi=${part#*-}
        for ((c = lo; c <= hi; c++)); do cpus+=("$c"); done
    done
    per=$((${#cpus[@]} / n))
    ZOO_CPU_SETS=()
    for ((i = 0; i < n; i++)); do
        if ((per == 0)); then
            ZOO_CPU_SETS+=("")
        else
            local slice=("${cpus[@]:i*per:per}")
            ZOO_CPU_SETS+=("$(IFS=,; echo "${slice[*]}")")
        fi
    done
}

# --------------------------------------------------------------------------- launchers

# Flags a launcher sets itself, so giving them as --key=value is an error.
ZOO_RESERVED_COMMON=(
    "config_path=CONFIG is the first argument"
    "config=CONFIG is the first argument"
    "data_dir=DATA_DIR is the second argument"
    "data_path=DATA_DIR is the second argument"
    "dataset_path=DATA_DIR is the second argument"
    "data.dir=DATA_DIR is the second argument"
)

# zoo_single_main KIND TARGET "$@": the standalone train / eval launchers.
# KIND is train (background unless --foreground) or eval (always foreground);
# TARGET is Ascend, GPU or CPU (DEVICE_ID is accepted for Ascend and GPU).
zoo_single_main() {
    local kind=$1 target=$2 required=2 with_device_id=1 log pid rc
    shift 2
    [[ $target == CPU ]] && with_device_id=0
    ZOO_RESERVED=("${ZOO_RESERVED_COMMON[@]}"
        "device_target=$ZOO_NAME runs on $target; use the launcher of the other device (scripts/*_cpu.sh, *_gpu.sh, or run_standalone_train.sh / run_eval.sh for Ascend)"
        "device_id=give DEVICE_ID as the positional argument after DATA_DIR"
        "distributed=$ZOO_NAME starts one process; use run_distribute_*.sh for data-parallel training")
    if [[ $kind == eval ]]; then
        required=3
        ZOO_RESERVED+=("checkpoint_path=CHECKPOINT is the third argument"
            "ckpt_file=CHECKPOINT is the third argument" "ckpt_path=CHECKPOINT is the third argument")
    fi
    if [[ $kind == eval ]]; then
        ZOO_FORMS="eval"
    elif [[ $target == CPU ]]; then
        ZOO_FORMS=train_cpu
    else
        ZOO_FORMS=train_device
    fi
    zoo_parse_args "$required" "$with_device_id" "$@"
    zoo_find_python
    zoo_resolve_config "${ZOO_POSITIONAL[0]}"
    zoo_check_config "--device_target=$target"
    zoo_check_data_dir "${ZOO_POSITIONAL[1]}"
    local -a cmd=("$ZOO_PYTHON" "$ZOO_ROOT/$kind.py" "--config_path=$ZOO_CONFIG"
        "--data_dir=$ZOO_DATA_DIR" "--device_target=$target")
    if [[ $kind == eval ]]; then
        zoo_require_file "${ZOO_POSITIONAL[2]}" "checkpoint (${ZOO_ARG_LABEL[checkpoint]})"
        cmd+=("--checkpoint_path=$(zoo_abspath "${ZOO_POSITIONAL[2]}")")
    fi
    zoo_require_device "$target"
    if [[ -n $ZOO_DEVICE_ID ]]; then
        export DEVICE_ID=$ZOO_DEVICE_ID
        cmd+=("--device_id=$ZOO_DEVICE_ID")
    fi
    zoo_make_run_dir "$kind"
    log="$ZOO_RUN_DIR/console.log"
    [[ $kind == train ]] && zoo_go_background "$log"
    zoo_run_flags
    cmd+=("${ZOO_RUN_FLAGS[@]}" ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"})
    zoo_trap_signals
    zoo_say "run folder $ZOO_RUN_DIR (log: console.log)"
    zoo_say "command: $(printf '%q ' "${cmd[@]}")"
    zoo_start "$log" 1 "${cmd[@]}"
    pid=$ZOO_LAST_PID
    zoo_wait_children 0 || true
    rc=${ZOO_EXIT[$pid]}
    if ((rc == 0)); then
        zoo_say "$kind finished; outputs in $ZOO_RUN_DIR"
    else
        zoo_say "$kind FAILED (exit status $rc); see $log" >&2
    fi
    exit "$rc"
}

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
ZOO_OUTPUT_DIR=""
ZOO_RUN_NAME=""
declare -A ZOO_OPT=()          # launcher options named in ZOO_LAUNCHER_OPTIONS
ZOO_LAUNCHER_OPTIONS=()        # set by a launcher before zoo_parse_args, e.g. (nodes node_rank)
ZOO_RESERVED=()                # "key=why" pairs a launcher forbids as --key=value
ZOO_CHILDREN=()                # pids to stop on Ctrl-C
ZOO_CHILD_STOP_SIGNAL=TERM     # msrun only reacts to INT
ZOO_LAUNCHER_LOG=launcher.log  # the background supervisor's own log, in the run folder
declare -A ZOO_EXIT=()         # pid -> exit status, or "stopped"

# --------------------------------------------------------------------------- messages

zoo_usage() {
    printf '%s\n' "$ZOO_USAGE"
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
        ZOO_KEEP_ARGS+=("$1")
        shift
    done
    for arg in "$@"; do
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
        zoo_usage_error "expected $required positional argument(s)$( ((device_id_allowed)) && echo " (+ optional DEVICE_ID)"), got $count"
    fi
    if ((count > required + device_id_allowed)); then
        zoo_usage_error "too many positional arguments ($count): '${ZOO_POSITIONAL[*]:required}'"
    fi
    if ((count == required + 1)); then
        ZOO_DEVICE_ID=${ZOO_POSITIONAL[required]}
        [[ $ZOO_DEVICE_ID =~ ^[0-9]+$ ]] || zoo_usage_error "DEVICE_ID must be a device index such as 0, got '$ZOO_DEVICE_ID'"
    fi
    [[ $ZOO_FOREGROUND == 1 || $ZOO_FOREGROUND == 0 ]] || zoo_usage_error "FOREGROUND must be 0 or 1, got '$ZOO_FOREGROUND'"
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
    zoo_die "config file '$name' not found (CONFIG, argument 1); shipped configs: ${shipped:-none}"
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
print(cfg.device_target, cfg.data.demo)
' "$ZOO_CONFIG" ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"} "$@") || rc=$?
    if ((rc == 3)); then
        zoo_die "the configuration above is invalid (config $ZOO_CONFIG plus the --key=value flags)"
    elif ((rc == 4)); then
        zoo_die "MindSpore is not installed for $ZOO_PYTHON; set PYTHON to the interpreter of the environment with MindSpore (e.g. <repo>/.venv/bin/python)"
    elif ((rc != 0)); then
        zoo_die "$ZOO_PYTHON could not read the config (see above); set PYTHON to the interpreter of the environment with the zoo's requirements"
    fi
    read -r ZOO_CFG_DEVICE ZOO_CFG_DEMO <<< "$out"
}

zoo_check_data_dir() {
    ZOO_DATA_DIR=$(zoo_abspath "$1")
    [[ -d $ZOO_DATA_DIR ]] && return 0
    [[ ${ZOO_CFG_DEMO:-False} == True ]] && return 0  # train.py makes the demo set there
    zoo_die "data directory '$1' not found (DATA_DIR, argument 2); point it at the dataset root (python -m src.datasets.check explains the layouts; python -m src.datasets.demo --root demo_data makes small demo sets)"
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

# Per-run folder OUTPUT_DIR/RUN_NAME (default outputs/<config>_<kind>_<time>);
# the entry point writes its log, config.yaml and env.txt there as well.
zoo_make_run_dir() {
    local kind=$1 base name n=1
    ZOO_OUTPUT_DIR=$(zoo_abspath "${ZOO_OUTPUT_DIR:-$ZOO_ROOT/outputs}")
    if [[ -n $ZOO_RUN_NAME ]]; then
        name=$ZOO_RUN_NAME
    else
        base="${ZOO_CONFIG_STEM}_${kind}_$(date +%Y%m%d-%H%M%S)"
        name=$base
        while [[ -e $ZOO_OUTPUT_DIR/$name ]]; do
            n=$((n + 1))
            name="${base}-$n"
        done
    fi
    ZOO_RUN_NAME=$name
    ZOO_RUN_DIR="$ZOO_OUTPUT_DIR/$name"
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
    local log="$ZOO_RUN_DIR/${ZOO_LAUNCHER_LOG:-launcher.log}" pid
    ZOO_QUIET=1 FOREGROUND=1 nohup bash "$ZOO_SCRIPT" "${ZOO_KEEP_ARGS[@]}" \
        "--output_dir=$ZOO_OUTPUT_DIR" "--run_name=$ZOO_RUN_NAME" > "$log" 2>&1 < /dev/null &
    pid=$!
    zoo_say "started in the background, pid $pid"
    printf '  run folder: %s\n  log:        %s\n  follow:     tail -f %q\n  stop:       kill %s\n' \
        "$ZOO_RUN_DIR" "${1:-$log}" "${1:-$log}" "$pid"
    exit 0
}

# zoo_start LOG ECHO CMD...: run CMD in the background with its output in LOG
# (and on this terminal when ECHO=1); its pid goes to ZOO_CHILDREN/ZOO_LAST_PID.
zoo_start() {
    local log=$1 echo=$2
    shift 2
    mkdir -p "$(dirname "$log")"
    if [[ $echo == 1 && ${ZOO_QUIET:-0} != 1 ]]; then
        "$@" > >(tee -a "$log") 2>&1 &
    else
        "$@" >> "$log" 2>&1 &
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

# Send ZOO_CHILD_STOP_SIGNAL to every running child, then KILL what is left after 15 s.
zoo_stop_children() {
    local pid deadline=$((SECONDS + 15))
    for pid in ${ZOO_CHILDREN[@]+"${ZOO_CHILDREN[@]}"}; do
        zoo_alive "$pid" && kill "-$ZOO_CHILD_STOP_SIGNAL" "$pid" 2> /dev/null
    done
    for pid in ${ZOO_CHILDREN[@]+"${ZOO_CHILDREN[@]}"}; do
        while zoo_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        zoo_alive "$pid" && kill -KILL "$pid" 2> /dev/null
        [[ -n ${ZOO_EXIT[$pid]:-} ]] || ZOO_EXIT[$pid]=stopped
        wait "$pid" 2> /dev/null || true
    done
    return 0
}

# Ctrl-C / kill: stop every child, then exit 130 (INT) or 143 (TERM).
zoo_trap_signals() {
    trap 'zoo_on_signal INT 130' INT
    trap 'zoo_on_signal TERM 143' TERM
}

zoo_on_signal() {
    trap - INT TERM
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
    return "$failed"
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
    zoo_parse_args "$required" "$with_device_id" "$@"
    zoo_find_python
    zoo_resolve_config "${ZOO_POSITIONAL[0]}"
    zoo_check_config "--device_target=$target"
    zoo_check_data_dir "${ZOO_POSITIONAL[1]}"
    local -a cmd=("$ZOO_PYTHON" "$ZOO_ROOT/$kind.py" "--config_path=$ZOO_CONFIG"
        "--data_dir=$ZOO_DATA_DIR" "--device_target=$target")
    if [[ $kind == eval ]]; then
        zoo_require_file "${ZOO_POSITIONAL[2]}" "checkpoint (CHECKPOINT, argument 3)"
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

#!/usr/bin/env bash
# Data-parallel training on Ascend NPUs described by an HCCL rank table.
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ZOO_USAGE="usage: bash scripts/run_distribute_train.sh CONFIG DATA_DIR RANK_TABLE_FILE [--key=value ...]

Data-parallel training on Ascend NPUs listed in an HCCL rank table. Run it on
every server of the table: each starts one process per device the table gives
this host (found by its IP/hostname, or env RANK_TABLE_HOST_IP), with DEVICE_ID,
RANK_ID (global), RANK_SIZE and RANK_TABLE_FILE set and the CPUs split evenly
between them (taskset). The table is validated before anything starts.

  CONFIG           config file, or its name in config/ (e.g. vgg16_imagenet)
  DATA_DIR         dataset root, the same path on every server
  RANK_TABLE_FILE  hccl json; make one with
                     python scripts/rank_table.py generate --device_range \"[0,8)\"
                   (devices [0,8), or a range inside [0,4) or [4,8))

$ZOO_HELP_KEYS
$ZOO_HELP_BACKGROUND
$ZOO_HELP_ENV
  RANK_TABLE_HOST_IP this host's server_id in the table, when its addresses do not match

The run folder gets rank_<id>/console.log per rank, train.log (rank 0), config.yaml,
env.txt and checkpoints/ (rank 0 only unless --checkpoint.save_on_all_ranks=True).
If a rank fails the others are stopped and each failed rank is listed with its log.

example:
  python scripts/rank_table.py generate --device_range \"[0,8)\" --output rank_table_8p.json
  bash scripts/run_distribute_train.sh config/vgg16_imagenet.yaml /data/imagenet rank_table_8p.json"

ZOO_RESERVED=("${ZOO_RESERVED_COMMON[@]}"
    "device_target=this launcher runs on Ascend; use run_distribute_train_gpu.sh or run_distribute_msrun.sh"
    "device_id=device ids come from the rank table"
    "distributed=this launcher always trains data-parallel")
ZOO_FORMS=dist_table
zoo_parse_args 3 0 "$@"
zoo_find_python
zoo_resolve_config "${ZOO_POSITIONAL[0]}"
zoo_check_config --device_target=Ascend --distributed=True
zoo_check_data_dir "${ZOO_POSITIONAL[1]}"
RANK_TABLE=$(zoo_abspath "${ZOO_POSITIONAL[2]}")

# Validate the table and learn this host's (device, rank) pairs from it.
plan=$("$ZOO_PYTHON" "$ZOO_ROOT/scripts/rank_table.py" validate "$RANK_TABLE" --format shell) \
    || zoo_die "rank table $RANK_TABLE is not usable (problems listed above)"
DEVICES=()
RANKS=()
while read -r kind first second; do
    case $kind in
        rank_size) RANK_SIZE=$first ;;
        server_index) SERVER_INDEX=$first ;;
        server_id) SERVER_ID=$first ;;
        device)
            DEVICES+=("$first")
            RANKS+=("$second")
            ;;
    esac
done <<< "$plan"
LOCAL=${#DEVICES[@]}

zoo_require_device Ascend
zoo_make_run_dir train
zoo_go_background

zoo_run_flags
zoo_split_cpus "$LOCAL"
command -v taskset > /dev/null || zoo_say "taskset not found: ranks are not bound to CPUs (install util-linux)"
ulimit -u unlimited 2> /dev/null || true  # HCCL and the data workers start many threads
export RANK_TABLE_FILE=$RANK_TABLE RANK_SIZE
declare -A RANK_OF=() DEVICE_OF=() LOG_OF=()

zoo_report() {
    local pid status
    for pid in "${ZOO_CHILDREN[@]}"; do
        status=${ZOO_EXIT[$pid]:-running}
        case $status in
            0) printf '  rank %s (device %s): finished\n' "${RANK_OF[$pid]}" "${DEVICE_OF[$pid]}" ;;
            stopped) printf '  rank %s (device %s): stopped by the launcher; log %s\n' "${RANK_OF[$pid]}" "${DEVICE_OF[$pid]}" "${LOG_OF[$pid]}" ;;
            *) printf '  rank %s (device %s): FAILED with exit status %s; log %s\n' "${RANK_OF[$pid]}" "${DEVICE_OF[$pid]}" "$status" "${LOG_OF[$pid]}" ;;
        esac
    done
    local shown=0
    for pid in "${ZOO_CHILDREN[@]}"; do
        status=${ZOO_EXIT[$pid]:-running}
        [[ $status == 0 || $status == stopped || $status == running ]] && continue
        ((shown++ < 2)) && zoo_show_failure "${LOG_OF[$pid]}" "rank ${RANK_OF[$pid]}"
    done
    return 0
}

zoo_trap_signals
zoo_say "rank table $RANK_TABLE: $RANK_SIZE rank(s); this host is server_list[$SERVER_INDEX] ($SERVER_ID) with $LOCAL device(s)"
zoo_say "run folder $ZOO_RUN_DIR"
for ((i = 0; i < LOCAL; i++)); do
    device=${DEVICES[i]}
    rank=${RANKS[i]}
    log="$ZOO_RUN_DIR/rank_$rank/console.log"
    cmd=("$ZOO_PYTHON" "$ZOO_ROOT/train.py" "--config_path=$ZOO_CONFIG" "--data_dir=$ZOO_DATA_DIR"
        --device_target=Ascend --distributed=True "--device_id=$device" "${ZOO_RUN_FLAGS[@]}"
        ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"})
    cpu_set=${ZOO_CPU_SETS[i]}
    if [[ -n $cpu_set ]] && command -v taskset > /dev/null; then
        cmd=(taskset -c "$cpu_set" "${cmd[@]}")
    fi
    export DEVICE_ID=$device RANK_ID=$rank
    # the first local rank's output also goes to this terminal in the foreground
    zoo_start "$log" "$((i == 0 ? 1 : 0))" "${cmd[@]}"
    RANK_OF[$ZOO_LAST_PID]=$rank
    DEVICE_OF[$ZOO_LAST_PID]=$device
    LOG_OF[$ZOO_LAST_PID]=$log
    zoo_say "rank $rank: device $device, cpus ${cpu_set:-all}, pid $ZOO_LAST_PID, log $log"
done

if zoo_wait_children 1; then
    zoo_say "all $LOCAL local rank(s) finished; outputs in $ZOO_RUN_DIR"
    exit 0
fi
zoo_say "training FAILED:" >&2
zoo_report >&2
exit 1

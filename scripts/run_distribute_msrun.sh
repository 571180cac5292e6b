#!/usr/bin/env bash
# Data-parallel training through MindSpore's msrun launcher (Ascend, GPU or CPU).
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ZOO_USAGE="usage: bash scripts/run_distribute_msrun.sh CONFIG DATA_DIR WORKERS_PER_NODE [--nodes=N --node_rank=R --master_addr=IP --master_port=P] [--key=value ...]

Data-parallel training with msrun (MindSpore's dynamic-cluster launcher, no
OpenMPI or rank table needed). Works on Ascend, GPU and CPU: the device is the
config's device_target or --device_target=... . For several nodes run the same
command on each node with its own --node_rank.

  CONFIG            config file, or its name in config/ (e.g. mobilenetv1_cifar10)
  DATA_DIR          dataset root (the same path on every node)
  WORKERS_PER_NODE  processes on this node (one per device; on CPU, at most the cores)
  --nodes=N         nodes taking part (default 1); total workers = N x WORKERS_PER_NODE
  --node_rank=R     this node's index 0..N-1 (default 0; required when N > 1)
  --master_addr=IP  address of node 0, where msrun's scheduler runs (default 127.0.0.1;
                    required when N > 1)
  --master_port=P   scheduler port (default 8118)
  --bind_core=True  let msrun bind each worker to its own CPU cores
  --force           start more workers than this machine has CPU cores (env ZOO_FORCE=1)

$ZOO_HELP_KEYS
$ZOO_HELP_BACKGROUND
$ZOO_HELP_ENV

The run folder gets msrun_logs/worker_<rank>.log and scheduler.log, train.log (rank 0),
rank_<r>/train.log, config.yaml, env.txt and checkpoints/ (rank 0 only unless
--checkpoint.save_on_all_ranks=True).

examples:
  # 2 CPU workers on this machine, in the foreground
  bash scripts/run_distribute_msrun.sh config/demo.yaml demo_data/cifar10 2 --foreground
  # 8 NPUs on each of 2 nodes (run on both; node 1 with --node_rank=1)
  bash scripts/run_distribute_msrun.sh config/vgg16_imagenet.yaml /data/imagenet 8 \\
      --nodes=2 --node_rank=0 --master_addr=10.0.0.1 --master_port=8118 --run_name=vgg16_16p"

ZOO_LAUNCHER_OPTIONS=(nodes node_rank master_addr master_port bind_core)
ZOO_RESERVED=("${ZOO_RESERVED_COMMON[@]}"
    "device_id=msrun gives each worker its device (env DEVICE_ID = local rank)"
    "distributed=this launcher always trains data-parallel")
zoo_parse_args 3 0 "$@"
WORKERS=${ZOO_POSITIONAL[2]}
NODES=${ZOO_OPT[nodes]:-1}
NODE_RANK=${ZOO_OPT[node_rank]:-0}
MASTER_ADDR=${ZOO_OPT[master_addr]:-127.0.0.1}
MASTER_PORT=${ZOO_OPT[master_port]:-8118}
BIND_CORE=${ZOO_OPT[bind_core]:-False}
zoo_require_int WORKERS_PER_NODE "$WORKERS" 1
zoo_bound_workers WORKERS_PER_NODE "$WORKERS"
zoo_require_int --nodes "$NODES" 1
zoo_require_int --node_rank "$NODE_RANK" 0
zoo_require_int --master_port "$MASTER_PORT" 1024
((MASTER_PORT <= 65535)) || zoo_usage_error "--master_port must be <= 65535, got $MASTER_PORT"
((NODE_RANK < NODES)) || zoo_usage_error "--node_rank must be below --nodes ($NODES), got $NODE_RANK"
if ((NODES > 1)) && [[ -z ${ZOO_OPT[node_rank]:-} || -z ${ZOO_OPT[master_addr]:-} ]]; then
    zoo_usage_error "with --nodes=$NODES give --node_rank and --master_addr (node 0's address) as well"
fi
[[ $BIND_CORE == True || $BIND_CORE == False ]] || zoo_usage_error "--bind_core must be True or False, got '$BIND_CORE'"

zoo_find_python
zoo_resolve_config "${ZOO_POSITIONAL[0]}"
zoo_check_config --distributed=True
zoo_check_data_dir "${ZOO_POSITIONAL[1]}"

# msrun starts every worker as `python <script>` found on PATH, so the chosen
# interpreter's folder must come first there.
PY_DIR=$(dirname "$(command -v "$ZOO_PYTHON")")
[[ -x $PY_DIR/python ]] || zoo_die "msrun starts workers with 'python' from PATH, but there is no 'python' next to $ZOO_PYTHON; set PYTHON to the python of a virtualenv/conda environment with MindSpore"
export PATH="$PY_DIR:$PATH"
MSRUN=$(command -v msrun || true)
[[ -n $MSRUN ]] || zoo_die "msrun not found; it is installed with MindSpore >= 2.3 (pip install mindspore) next to its python: activate that environment or set PYTHON=/path/to/env/bin/python"
zoo_require_device "$ZOO_CFG_DEVICE"
# A busy scheduler port makes msrun wait for the cluster timeout (10 min) first.
if ((NODE_RANK == 0)) && [[ $MASTER_ADDR == 127.0.0.1 || $MASTER_ADDR == localhost ]] \
    && (exec 3<> "/dev/tcp/127.0.0.1/$MASTER_PORT") 2> /dev/null; then
    zoo_die "port $MASTER_PORT is already in use on this machine (another msrun job?); pass --master_port=<free port>"
fi

# Nodes sharing a file system and a --run_name share the run folder: keep their
# launcher logs apart (worker logs are already named by global rank).
LOG_SUFFIX=""
((NODES > 1)) && LOG_SUFFIX="_node$NODE_RANK"
ZOO_LAUNCHER_LOG="launcher$LOG_SUFFIX.log"
zoo_make_run_dir train
zoo_go_background
zoo_run_flags

cmd=("$MSRUN" "--worker_num=$((NODES * WORKERS))" "--local_worker_num=$WORKERS"
    "--master_addr=$MASTER_ADDR" "--master_port=$MASTER_PORT" "--node_rank=$NODE_RANK"
    "--log_dir=$ZOO_RUN_DIR/msrun_logs" --join=True)
[[ $BIND_CORE == True ]] && cmd+=(--bind_core=True)
cmd+=("$ZOO_ROOT/train.py" "--config_path=$ZOO_CONFIG" "--data_dir=$ZOO_DATA_DIR"
    --distributed=True --device_id=-1 "${ZOO_RUN_FLAGS[@]}"
    ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"})
# msrun kills its workers on SIGINT only (they run in their own sessions).
ZOO_CHILD_STOP_SIGNAL=INT
zoo_trap_signals
zoo_say "$((NODES * WORKERS)) worker(s) on $NODES node(s), $WORKERS here (node $NODE_RANK), device $ZOO_CFG_DEVICE"
zoo_say "run folder $ZOO_RUN_DIR (msrun$LOG_SUFFIX.log; worker logs in msrun_logs/)"
zoo_say "command: $(printf '%q ' "${cmd[@]}")"
zoo_start "$ZOO_RUN_DIR/msrun$LOG_SUFFIX.log" 1 "${cmd[@]}"
pid=$ZOO_LAST_PID
zoo_wait_children 0 || true
rc=${ZOO_EXIT[$pid]}
if ((rc == 0)); then
    zoo_say "all workers finished; outputs in $ZOO_RUN_DIR"
else
    zoo_say "training FAILED (msrun exit status $rc)" >&2
    shown=0
    while read -r log && ((shown < 2)); do
        zoo_show_failure "$log" "$(basename "${log%.log}")" >&2
        shown=$((shown + 1))
    done < <(grep -lE "^error: |Traceback|Error" "$ZOO_RUN_DIR"/msrun_logs/worker_*.log 2> /dev/null || true)
    ((shown)) || zoo_show_failure "$ZOO_RUN_DIR/msrun$LOG_SUFFIX.log" msrun >&2
fi
exit "$rc"

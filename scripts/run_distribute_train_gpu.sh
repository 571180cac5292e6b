#!/usr/bin/env bash
# Data-parallel training on NVIDIA GPUs through OpenMPI's mpirun.
# `sh script.sh` (how the upstream READMEs run it) re-runs this script under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set +o posix
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ZOO_USAGE="usage: bash scripts/run_distribute_train_gpu.sh CONFIG DATA_DIR NUM_GPUS [--key=value ...]

Data-parallel training on NUM_GPUS GPUs with mpirun (OpenMPI) and NCCL. Rank r
uses the GPU of its local rank (DEVICE_ID = OMPI_COMM_WORLD_LOCAL_RANK).
msrun (scripts/run_distribute_msrun.sh) does the same without OpenMPI.

  CONFIG      config file, or its name in config/ (e.g. mobilenetv1_imagenet)
  DATA_DIR    dataset root
  NUM_GPUS    processes in total (one per GPU; at most the CPU cores unless --force)
  --cpus_per_rank=N  CPU cores bound to each rank (mpirun --map-by slot:PE=N --bind-to core)
  --force     start more ranks than this machine has CPU cores (env ZOO_FORCE=1)

$ZOO_HELP_KEYS
$ZOO_HELP_BACKGROUND
$ZOO_HELP_ENV
  MPIRUN_ARGS        extra mpirun options, e.g. several hosts: MPIRUN_ARGS=\"-H host1:8,host2:8\".
                     For 2-4 GPU runs bind ranks by NUMA node, or they compete for the
                     same cores and throughput collapses: MPIRUN_ARGS=\"--bind-to numa\"

The run folder gets console.log (all ranks), mpirun_logs/ (one folder per rank), train.log
(rank 0), config.yaml, env.txt and checkpoints/ (rank 0 only unless
--checkpoint.save_on_all_ranks=True). Needs OpenMPI: apt-get install openmpi-bin, or
conda install -c conda-forge openmpi.

example:
  MPIRUN_ARGS=\"--bind-to numa\" bash scripts/run_distribute_train_gpu.sh config/mobilenetv1_imagenet.yaml /data/imagenet 2"

ZOO_RESERVED=("${ZOO_RESERVED_COMMON[@]}"
    "device_target=this launcher runs on GPU; use run_distribute_msrun.sh for other devices"
    "device_id=each rank uses the GPU of its local rank"
    "distributed=this launcher always trains data-parallel")
ZOO_LAUNCHER_OPTIONS=(cpus_per_rank)
ZOO_FORMS=dist_mpi
zoo_parse_args 3 0 "$@"
NUM_GPUS=${ZOO_POSITIONAL[2]}
zoo_require_int NUM_GPUS "$NUM_GPUS" 1
CPUS_PER_RANK=${ZOO_OPT[cpus_per_rank]:-}
[[ -z $CPUS_PER_RANK ]] || zoo_require_int --cpus_per_rank "$CPUS_PER_RANK" 1
# With hosts in MPIRUN_ARGS the ranks are spread over several machines.
if ! [[ ${MPIRUN_ARGS:-} =~ (^|[[:space:]])(-H|--host|-host|--hostfile|-hostfile|--machinefile)([[:space:]=]|$) ]]; then
    zoo_bound_workers NUM_GPUS "$NUM_GPUS" "${CPUS_PER_RANK:-1}"
fi
zoo_find_python
zoo_resolve_config "${ZOO_POSITIONAL[0]}"
zoo_check_config --device_target=GPU --distributed=True
zoo_check_data_dir "${ZOO_POSITIONAL[1]}"
command -v mpirun > /dev/null || zoo_die "mpirun not found: install OpenMPI (apt-get install openmpi-bin, or conda install -c conda-forge openmpi) or use scripts/run_distribute_msrun.sh, which needs no MPI"
zoo_require_device GPU

zoo_make_run_dir train
zoo_go_background "$ZOO_RUN_DIR/console.log"
zoo_run_flags

mpi=(mpirun -n "$NUM_GPUS" --output-filename "$ZOO_RUN_DIR/mpirun_logs" --merge-stderr-to-stdout)
# OpenMPI refuses to start as root unless told; never add it for normal users.
(($(id -u) == 0)) && mpi+=(--allow-run-as-root)
read -r -a extra <<< "${MPIRUN_ARGS:-}"
mpi+=(${extra[@]+"${extra[@]}"})
# upstream's --cpus-per-rank N (OpenMPI 4 and 5 spell it --map-by slot:PE=N)
[[ -n $CPUS_PER_RANK ]] && mpi+=(--map-by "slot:PE=$CPUS_PER_RANK" --bind-to core)
# Each rank picks its GPU from its local rank before train.py starts.
# shellcheck disable=SC2016  # expanded by the rank's shell, not here
rank_shell=(bash -c 'export DEVICE_ID=${OMPI_COMM_WORLD_LOCAL_RANK:-0} RANK_ID=${OMPI_COMM_WORLD_RANK:-0}; exec "$@"' zoo-rank)
cmd=("${mpi[@]}" "${rank_shell[@]}" "$ZOO_PYTHON" "$ZOO_ROOT/train.py" "--config_path=$ZOO_CONFIG"
    "--data_dir=$ZOO_DATA_DIR" --device_target=GPU --distributed=True --device_id=-1
    "${ZOO_RUN_FLAGS[@]}" ${ZOO_PASSTHROUGH[@]+"${ZOO_PASSTHROUGH[@]}"})
zoo_trap_signals
zoo_say "$NUM_GPUS rank(s); run folder $ZOO_RUN_DIR (log: console.log)"
zoo_say "command: $(printf '%q ' "${cmd[@]}")"
zoo_start "$ZOO_RUN_DIR/console.log" 1 "${cmd[@]}"
pid=$ZOO_LAST_PID
zoo_wait_children 0 || true
rc=${ZOO_EXIT[$pid]}
if ((rc == 0)); then
    zoo_say "all ranks finished; outputs in $ZOO_RUN_DIR"
else
    zoo_say "training FAILED (mpirun exit status $rc); see $ZOO_RUN_DIR/console.log and mpirun_logs/" >&2
    zoo_show_failure "$ZOO_RUN_DIR/console.log" "a rank" >&2
fi
exit "$rc"

"""Device, execution mode and data-parallel setup, in one place for every entry point."""
import dataclasses
import os

import mindspore as ms
from mindspore import ParallelMode
from mindspore.communication import get_group_size, get_rank, init

from src.errors import DeviceError

# Environment variables that mean "this process is one of several workers".
_LAUNCHER_VARIABLES = ("MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE", "RANK_TABLE_FILE")


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where this process runs and which part of the data-parallel group it is."""

    device_target: str
    device_id: int
    rank: int = 0
    group_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes shared outputs."""
        return self.rank == 0


def resolve_device_id(configured: int) -> int:
    """``device_id`` from the config, else env ``DEVICE_ID``, else 0."""
    if configured is not None and configured >= 0:
        return configured
    env = os.environ.get("DEVICE_ID", "0")
    try:
        return int(env)
    except ValueError:
        raise DeviceError(f"environment DEVICE_ID={env!r} is not an integer; "
                          f"export DEVICE_ID=0 (or the device index to use)") from None


def launched_as_worker() -> bool:
    """True when a launcher (msrun, mpirun, rank-table script) started several processes."""
    if any(os.environ.get(v) for v in _LAUNCHER_VARIABLES):
        return int(os.environ.get("RANK_SIZE", os.environ.get("MS_WORKER_NUM", "2"))) > 1
    return int(os.environ.get("RANK_SIZE", "1")) > 1


def _check_available(device_target: str) -> None:
    if device_target == "CPU":
        return
    try:
        available = ms.hal.is_available(device_target)
    except Exception:  # pylint: disable=broad-except
        available = False
    if not available:
        raise DeviceError(
            f"device_target {device_target} is not available in this MindSpore installation "
            f"(no {device_target} device or no {device_target} build of MindSpore); "
            f"use --device_target=CPU or install MindSpore for {device_target}")


def setup_device(device_target: str, device_id: int = -1, mode: str = "graph",
                 distributed: bool = False) -> RunContext:
    """Select backend and mode; start data-parallel communication when asked to.

    ``distributed`` is honoured only when several processes were launched; a
    single process asked to run distributed is a clear error, not a hang.
    """
    _check_available(device_target)
    dev_id = resolve_device_id(device_id)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    if device_target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(device_target, dev_id)
    if not distributed:
        return RunContext(device_target, dev_id)
    if not launched_as_worker():
        raise DeviceError(
            "distributed=True but this process was not started by a launcher; use "
            "scripts/run_distribute_train.sh (Ascend), scripts/run_distribute_train_gpu.sh "
            "(GPU) or scripts/run_distribute_msrun.sh (any device), or set --distributed=False")
    try:
        init()
    except RuntimeError as exc:
        raise DeviceError(f"distributed initialisation failed: {str(exc).splitlines()[0]}; "
                          f"check the launcher and the rank table") from None
    rank, group_size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True, device_num=group_size)
    return RunContext(device_target, dev_id, rank, group_size)

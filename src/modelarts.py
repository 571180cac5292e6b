"""Huawei ModelArts adapter: copy inputs from OBS before a run and outputs after.

Only this module knows about ModelArts. With ``modelarts.enabled=False`` (the
default) both functions do nothing.
"""
import os

from src.errors import DeviceError

LOCAL_DATA = "/cache/data"
LOCAL_CHECKPOINT = "/cache/checkpoint"


def _moxing():
    try:
        import moxing  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DeviceError("modelarts.enabled=True needs the 'moxing' package, which exists only "
                          "on ModelArts; run there or set --modelarts.enabled=False") from None
    return moxing


def check_available() -> None:
    """DeviceError unless this is a ModelArts job (the same refusal for every entry point)."""
    _moxing()


def sync_inputs(cfg):
    """Copy ``data_url``/``checkpoint_url`` from OBS; return the config pointing at the copies.

    The checkpoint continues the run when ``resume`` is set (a preempted job
    restarted with the checkpoint it uploaded), and is the starting point
    (``pretrained``) otherwise. In a multi-process job only the first process
    on each server copies; the others wait for its marker file.
    """
    if not cfg.modelarts.enabled:
        return cfg
    mox = _moxing()
    local_rank = int(os.environ.get("DEVICE_ID", "0"))
    changes = {}
    if cfg.modelarts.data_url:
        _copy_once(mox, cfg.modelarts.data_url, LOCAL_DATA, local_rank)
        changes["data.dir"] = LOCAL_DATA
    if cfg.modelarts.checkpoint_url:
        local = os.path.join(LOCAL_CHECKPOINT,
                             os.path.basename(cfg.modelarts.checkpoint_url.rstrip("/")))
        _copy_once(mox, cfg.modelarts.checkpoint_url, local, local_rank, file=True)
        changes["resume" if cfg.resume else "pretrained"] = local
    return cfg.replace(**changes) if changes else cfg


def _copy_once(mox, src, dst, local_rank, file=False):
    import time  # pylint: disable=import-outside-toplevel
    marker = dst.rstrip("/") + ".copied"
    if local_rank == 0:
        if file:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            mox.file.copy(src, dst)
        else:
            mox.file.copy_parallel(src, dst)
        open(marker, "w", encoding="utf-8").close()
    while not os.path.exists(marker):
        time.sleep(1)


def sync_outputs(cfg, run_dir: str) -> None:
    """Copy the run folder to ``train_url`` when running on ModelArts (train.py calls it
    also when training failed or was interrupted)."""
    if cfg.modelarts.enabled and cfg.modelarts.train_url:
        _moxing().file.copy_parallel(run_dir, cfg.modelarts.train_url)

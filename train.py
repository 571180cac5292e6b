"""Train any registered model; the config file names the model and dataset.

    python train.py                                   # demo: makes demo data, trains, evaluates
    python train.py --config_path=config/mobilenetv1_cifar10.yaml --data_dir=/data/cifar10
    python train.py --config_path=config/vgg16_imagenet.yaml --data_dir=/data/imagenet \\
        --device_target=GPU --batch_size=32 --lr.base_lr=0.02
    python train.py --config_path=... --resume=outputs/<run>      # continue where it stopped
    python train.py --config_path=... --run_name=<run> --resume=auto   # same, by run name

Ctrl-C (SIGINT) or SIGTERM stops training after the current step: the position
is saved as <model>_<dataset>-interrupted-e<epoch>-s<step>.ckpt (resumable
exactly), its path is printed, and the exit status is 130 (SIGINT) or 143
(SIGTERM). A second signal stops at once.
"""
import os
import signal
import sys
import threading

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import (REPO_ROOT, ensure_demo_data_if_asked, parse, record_run, run_directory,
                     run_main)

DEMO_CONFIG = os.path.join(REPO_ROOT, "config", "demo.yaml")
USAGE = __doc__


def main(argv) -> int:
    cfg = parse(argv, USAGE, default_config=DEMO_CONFIG)
    if cfg.resume == "auto" and not cfg.run_name:
        from src.errors import ConfigError
        raise ConfigError("--resume=auto continues the run in output_dir/run_name, so it needs "
                          "the run's folder name: add --run_name=<folder under output_dir>")
    if not cfg.distributed:
        _take_sigint_from_mindspore()  # before MindSpore starts its threads
    from src.device import setup_device  # MindSpore loads here, after the config is valid
    from src.engine import fit, install_stop_handlers
    from src.modelarts import sync_inputs, sync_outputs
    from src.utils.logging import RunLogger

    cfg = sync_inputs(cfg)
    ensure_demo_data_if_asked(cfg)
    from src.registry import get_model_spec
    from src.tasks import get_task
    spec = get_model_spec(cfg.model)
    spec.check_image_size(cfg.image_size)  # before the run folder exists
    task = get_task(spec.task)
    needed = ("train", "eval") if cfg.checkpoint.eval_every_epochs > 0 else ("train",)
    task.check_inputs(cfg, needed)
    ctx = setup_device(cfg.device_target, cfg.device_id, cfg.mode, cfg.distributed)
    run_dir = run_directory(cfg, "train", ctx.rank, ctx.group_size)
    record_run(cfg, run_dir, ctx.rank)
    log_name = "train.log" if ctx.rank == 0 else os.path.join(f"rank_{ctx.rank}", "train.log")
    log = RunLogger(os.path.join(run_dir, log_name), echo=ctx.is_main)
    log(f"run folder: {run_dir}")
    if ctx.group_size == 1:
        # Data-parallel ranks keep the default handlers: one rank stopping at a step
        # boundary while the others run on would block them in the next all-reduce.
        install_stop_handlers()
    state, _, metrics = fit(cfg, ctx, run_dir, log)
    if ctx.is_main:
        log(f"training finished: {state.epoch} epochs, checkpoint {state.last_checkpoint}")
        if metrics is None:
            log("no evaluation during training (checkpoint.eval_every_epochs=0); run "
                f"python eval.py --config_path=<config> --checkpoint_path={state.last_checkpoint}")
    sync_outputs(cfg, run_dir)
    return 0


def _take_sigint_from_mindspore() -> None:
    """Receive Ctrl-C in a watcher thread instead of through a signal handler.

    While it runs a graph, MindSpore replaces the SIGINT handler with one that
    turns SIGINT into SIGTERM. So SIGINT is blocked in this thread before
    MindSpore starts any (they inherit the block) and a watcher thread takes
    it with sigwait: during training the first asks the engine to save and
    stop after the current step (exit 130), a second stops at once; outside
    training (nothing to save) it stops at once. SIGTERM keeps an ordinary
    handler (src.engine.install_stop_handlers).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def watch():
        while True:
            signal.sigwait({signal.SIGINT})
            engine = sys.modules.get("src.engine")
            if engine is None or not getattr(engine, "training_in_progress", bool)():
                # Nothing to save (starting up, or finishing): stop at once.
                os.write(2, b"\nerror: interrupted (Ctrl-C)\n")
                os._exit(130)  # pylint: disable=protected-access
            if engine.stop_requested() is not None:
                os.write(2, b"\nreceived SIGINT again: stopping now\n")
                os._exit(130)  # pylint: disable=protected-access
            engine.request_stop(signal.SIGINT)
            os.write(2, b"\nreceived SIGINT: stopping after the current step and saving a "
                        b"checkpoint (press Ctrl-C again to stop at once)\n")

    threading.Thread(target=watch, name="sigint-watcher", daemon=True).start()


if __name__ == "__main__":
    run_main(main, sys.argv[1:])

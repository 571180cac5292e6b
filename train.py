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
import sys

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import (REPO_ROOT, ensure_demo_data_if_asked, parse, record_run, run_directory,
                     run_main)
from src.run_folder import check_resume_request
from src.stop import StopControl

DEMO_CONFIG = os.path.join(REPO_ROOT, "config", "demo.yaml")
USAGE = __doc__


def main(argv) -> int:
    cfg = parse(argv, USAGE, default_config=DEMO_CONFIG, entry="train")
    check_resume_request(cfg)
    stop = StopControl()
    if not cfg.distributed:
        # Data-parallel ranks keep the default handlers: one rank stopping at a step
        # boundary while the others run on would block them in the next all-reduce.
        stop.install()  # before MindSpore starts its threads
    from src.device import setup_device  # MindSpore loads here, after the config is valid
    from src.engine import fit
    from src.modelarts import sync_inputs, sync_outputs
    from src.run_folder import claim
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
    lock = claim(cfg, run_dir, ctx.rank, argv)  # before anything is written there
    try:
        record_run(cfg, run_dir, ctx.rank)
        log_name = "train.log" if ctx.rank == 0 else os.path.join(f"rank_{ctx.rank}", "train.log")
        log = RunLogger(os.path.join(run_dir, log_name), echo=ctx.is_main)
        log(f"run folder: {run_dir}")
        if lock.note:
            log(lock.note)
        try:
            state, _, metrics = fit(cfg, ctx, run_dir, log, stop)
            if ctx.is_main:
                log(f"training finished: {state.epoch} epochs, checkpoint {state.last_checkpoint}")
                if metrics is None:
                    log("no evaluation during training (checkpoint.eval_every_epochs=0); run "
                        f"python eval.py --config_path=<config> "
                        f"--checkpoint_path={state.last_checkpoint}")
        finally:
            # Also after a failure or an interruption: a preempted ModelArts job
            # must still upload the checkpoint that saved its position.
            sync_outputs(cfg, run_dir)
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])

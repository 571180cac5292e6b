"""Evaluate a checkpoint (or every checkpoint in a folder) over the whole eval split.

    python eval.py --config_path=config/tinydarknet_imagenet.yaml --data_dir=/data/imagenet \\
        --checkpoint_path=outputs/<run>/checkpoints/best.ckpt
    python eval.py --config_path=... --checkpoint_path=outputs/<run>/checkpoints   # one line each
    python eval.py --checkpoint_path=<file.ckpt> --data_dir=/data/imagenet   # config from the checkpoint

Classifiers print ``accuracy: {'top_1_accuracy': ..., 'top_5_accuracy': ...}``;
YOLOv3-Tiny prints the COCO evaluation table. Results also go to
``<output_dir>/<run>/eval_results.json``.
"""
import glob
import json
import os
import sys

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import ensure_demo_data_if_asked, parse, record_run, run_directory, run_main

USAGE = __doc__


def checkpoints_to_evaluate(path: str):
    """One checkpoint file, or every .ckpt in a folder sorted by modification time."""
    from src.errors import CheckpointError
    if not path:
        raise CheckpointError("no checkpoint given; pass --checkpoint_path=<file.ckpt or folder>")
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.ckpt")), key=os.path.getmtime)
        if not files:
            raise CheckpointError(f"no .ckpt files in folder {path!r}")
        return files
    return [path]


def main(argv) -> int:
    cfg = parse(argv, USAGE, entry="eval")
    from src.modelarts import sync_inputs
    cfg = sync_inputs(cfg)  # as train.py: refused off ModelArts
    files = checkpoints_to_evaluate(cfg.checkpoint_path)
    from src import checkpoint as ckpt
    from src.device import setup_device
    from src.engine import build_network
    from src.registry import get_model_spec
    from src.tasks import get_task
    from src.utils.io import atomic_write_text

    ensure_demo_data_if_asked(cfg)
    task = get_task(get_model_spec(cfg.model).task)
    task.check_inputs(cfg, ("eval",))
    ctx = setup_device(cfg.device_target, cfg.device_id, cfg.mode)
    net = build_network(cfg)
    dataset = task.eval_dataset(cfg, ctx)
    results = {}
    for path in files:
        tensors, meta = ckpt.read_checkpoint(path)
        ckpt.check_checkpoint_matches(cfg, meta, f"checkpoint {path}", check_dataset=False)
        ckpt.load_network_weights(net, tensors, source=f"checkpoint {path}")
        metrics = task.evaluate(cfg, net, ctx, dataset=dataset)
        print(f"{task.format_metrics(metrics)} ckpt={path}", flush=True)
        results[path] = metrics
    run_dir = run_directory(cfg, "eval")
    record_run(cfg, run_dir)
    out = os.path.join(run_dir, "eval_results.json")
    atomic_write_text(out, json.dumps(results, indent=2, default=float))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])

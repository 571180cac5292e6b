"""Export a checkpoint to MINDIR, ONNX or AIR, then verify the file on CPU.

    python export.py --config_path=config/mobilenetv1_imagenet.yaml \\
        --checkpoint_path=outputs/<run>/checkpoints/best.ckpt --file_format=ONNX
    python export.py --checkpoint_path=outputs/<run>/checkpoints/best.ckpt --export.batch_size=8
        # no --config_path: the config stored in the checkpoint is used

The default batch size is 1, as the Ascend 310 app expects; ``--batch_size`` here
means the exported batch (``export.batch_size``), as in the upstream export scripts. MINDIR and ONNX
exports are compared with the checkpoint network on a fixed batch; the file is
kept only when the largest difference is within ``export.tolerance``.
"""
import sys

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import parse, run_main

USAGE = __doc__


def _export_flag_spellings(argv):
    """Upstream export scripts took ``--batch_size`` for the exported batch: honour that here."""
    renamed = []
    for arg in argv:
        for old in ("--batch_size", "--per_batch_size"):
            if arg == old or arg.startswith(old + "="):
                arg = "--export.batch_size" + arg[len(old):]
        renamed.append(arg)
    return renamed


def main(argv) -> int:
    cfg = parse(_export_flag_spellings(argv), USAGE, program_defaults=[("mode", "graph")],
                entry="export")
    from src.modelarts import sync_inputs
    cfg = sync_inputs(cfg)  # as train.py: refused off ModelArts
    from src.errors import ConfigError
    from src.export import check_format_supported

    check_format_supported(cfg.export.file_format, cfg.device_target)
    if not cfg.checkpoint_path:
        raise ConfigError("no checkpoint given; pass --checkpoint_path=<file.ckpt>")
    from src import checkpoint as ckpt
    from src.device import setup_device
    from src.engine import build_network
    from src.export import export_network
    from src.registry import get_model_spec
    from src.tasks import get_task

    setup_device(cfg.device_target, cfg.device_id, "graph")
    tensors, meta = ckpt.read_checkpoint(cfg.checkpoint_path)
    ckpt.check_checkpoint_matches(cfg, meta, f"checkpoint {cfg.checkpoint_path}", check_dataset=False)
    net = build_network(cfg)
    ckpt.load_network_weights(net, tensors, source=f"checkpoint {cfg.checkpoint_path}")
    task = get_task(get_model_spec(cfg.model).task)
    deploy_net = task.export_network(cfg, net)
    file_base = cfg.export.file_name or f"{cfg.model}_{cfg.dataset}"
    path = export_network(deploy_net, file_base, cfg.export.file_format, cfg.export.batch_size,
                          cfg.image_size, verify=cfg.export.verify, tolerance=cfg.export.tolerance)
    from src.deploy.spec import write_sidecar
    spec_file = write_sidecar(cfg, path)  # lets the deploy tools run without --config_path
    print(f"exported {cfg.model} ({cfg.export.file_format}, input "
          f"{cfg.export.batch_size}x3x{cfg.image_size[0]}x{cfg.image_size[1]}) to {path}")
    print(f"deploy spec (model, preprocessing, config) written to {spec_file}")
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])

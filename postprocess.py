"""Score the result files of deployed inference (infer.py or the C++ inference app).

    python postprocess.py --model_file=yolo.onnx --result_path=./result_Files \\
        --img_path=/data/coco/val2017 --ann_file=/data/coco/annotations/instances_val2017.json
    python postprocess.py --model_file=tinydarknet_imagenet.mindir --result_path=./result_Files \\
        --label_file=imagenet_label.txt

Flags of this script (the rest are config keys, as for eval.py):
  --result_path DIR   folder of result files, ``<image stem>_<output index>.bin``
  --img_path DIR      detection: the images that were run (original sizes are read from them)
  --ann_file FILE     detection: COCO annotations of those images
  --label_file FILE   classification: '<image-stem> <class-index>' lines; prints top-1/top-5
                      and eval.py's accuracy line
  --model_file FILE   the exported model: its ``<file>.json`` deploy spec gives the config
                      (when there is no --config_path)

The config comes from ``--config_path``, else from the ``--model_file`` deploy
spec, else (given only the detection flags, as upstream's 310 script passes
them) the recipe of the one registered detector that has one. Its model's task
scores the files (``Task.score_results``): a classifier's ``<stem>_0.bin`` holds
``num_classes`` logits; a detector writes one file per deploy output, each of
the shape its spec's ``output_layout`` gives for the exported ``image_size`` and
``num_classes`` (so use the values the model was exported with), and prints the
COCO table and ``mAP: x``; the detections and metrics go to the run folder.
``--label_file`` with ``--num_classes`` alone scores a classifier without any config.
"""
import argparse
import os
import sys
from typing import List, Sequence, Tuple

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import REPO_ROOT, parse, run_main
from src.config import parse_overrides, split_config_path
from src.errors import ConfigError
from src.registry import get_model_spec, list_models
from src.tasks import get_task

USAGE = __doc__


def split_flags(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Take this script's own flags out of argv; the rest are config flags."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--result_path", default="")
    parser.add_argument("--img_path", default="")
    parser.add_argument("--ann_file", default="")
    parser.add_argument("--label_file", default="")
    parser.add_argument("--model_file", default="")
    return parser.parse_known_args(list(argv))


def default_detection_config() -> str:
    """The recipe of the only registered detector that names one (upstream's 310 flags)."""
    recipes = [get_model_spec(name).default_config for name in list_models("detection")]
    recipes = [path for path in recipes if path]
    if len(recipes) != 1:
        raise ConfigError(f"{len(recipes)} detection recipes are registered; pass "
                          f"--model_file=<the export> or --config_path=<its config>")
    return os.path.join(REPO_ROOT, recipes[0])


def resolve_config(args, rest: Sequence[str]):
    """The config: --config_path, else the export's deploy spec, else the detection recipe."""
    config_path, overrides = split_config_path(rest)
    if args.model_file and not config_path and not {"-h", "--help"} & set(rest):
        from src.deploy.spec import load_spec, spec_config  # pylint: disable=import-outside-toplevel
        cfg = spec_config(load_spec(args.model_file))
        changes = {key: value for key, value, _ in parse_overrides(overrides)}
        return cfg.replace(**changes) if changes else cfg
    detection_flags = (args.ann_file or args.img_path) and not config_path
    default_config = default_detection_config() if detection_flags else None
    return parse(rest, USAGE, default_config=default_config)


def main(argv) -> int:
    args, rest = split_flags(argv)
    config_given = args.model_file or split_config_path(rest)[0]
    if args.label_file and not config_given:
        # A classifier's logits need only the label file and --num_classes: no config.
        from src.deploy.postprocess_classification import main as classification_main
        return classification_main(argv)
    cfg = resolve_config(args, rest)
    return get_task(get_model_spec(cfg.model).task).score_results(cfg, args)


if __name__ == "__main__":
    run_main(main, sys.argv[1:])

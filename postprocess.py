"""Score the result files of deployed inference (the C++ inference app) against ground truth.

    python postprocess.py --config_path=config/yolov3_tiny_coco.yaml --result_path=./result_Files \\
        --img_path=/data/coco/val2017 --ann_file=/data/coco/annotations/instances_val2017.json

Flags of this script (the rest are config keys, as for eval.py):
  --result_path DIR   folder of result files, ``<image stem>_<output index>.bin``
  --img_path DIR      the images that were run (original sizes are read from them)
  --ann_file FILE     COCO annotations of those images (detection)
  --label_file FILE   labels of those images (classification: '<image-stem> <class-index>'
                      lines; prints top-1/top-5 and eval.py's accuracy line)
  --model_file FILE   the exported model: its ``<file>.json`` deploy spec gives the config
                      (when there is no --config_path)

Detection (YOLOv3-Tiny): ``<stem>_0.bin`` is the stride-32 output and
``<stem>_1.bin`` the stride-16 output of the exported graph, float32 of shape
``(1, H/32, W/32, 3, 5+C)`` and ``(1, H/16, W/16, 3, 5+C)``; H, W come from
``image_size`` and C from ``num_classes``, so use the values the model was
exported with. Prints the COCO table and ``mAP: x``; the detections and metrics
are written to the run folder.

The config comes from ``--config_path``, else from the ``--model_file`` deploy
spec, else (given the detection flags) ``config/yolov3_tiny_coco.yaml``. Each
task has one function in ``POSTPROCESSORS``; a task without one is refused
with a clear message.
"""
import argparse
import json
import os
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import REPO_ROOT, parse, record_run, run_directory, run_main
from src.config import parse_overrides, split_config_path
from src.errors import ConfigError, DataError
from src.registry import get_model_spec
from src.utils.io import atomic_write_text

USAGE = __doc__
DETECTION_CONFIG = os.path.join(REPO_ROOT, "config", "yolov3_tiny_coco.yaml")
from src.datasets.common import IMAGE_SUFFIXES as IMAGE_EXTENSIONS  # noqa: E402


def split_flags(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Take this script's own flags out of argv; the rest are config flags."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--result_path", default="")
    parser.add_argument("--img_path", default="")
    parser.add_argument("--ann_file", default="")
    parser.add_argument("--label_file", default="")
    parser.add_argument("--model_file", default="")
    return parser.parse_known_args(list(argv))


def resolve_config(args, rest: Sequence[str]):
    """The config: --config_path, else the export's deploy spec, else the detection recipe."""
    config_path, overrides = split_config_path(rest)
    if args.model_file and not config_path and not {"-h", "--help"} & set(rest):
        from src.deploy.spec import load_spec, spec_config  # pylint: disable=import-outside-toplevel
        cfg = spec_config(load_spec(args.model_file))
        changes = {key: value for key, value, _ in parse_overrides(overrides)}
        return cfg.replace(**changes) if changes else cfg
    # Upstream's 310 script passes only the detection flags: then the YOLO recipe is the default.
    default_config = DETECTION_CONFIG if (args.ann_file or args.img_path) else None
    return parse(rest, USAGE, default_config=default_config)


def result_stem(file_name: str) -> str:
    """The result-file stem of an image: its name up to the first '.' (as the C++ app writes it)."""
    return os.path.basename(file_name).split(".")[0]


def read_result_file(path: str, shape: Sequence[int], hint: str):
    """A float32 result file reshaped to ``shape``; DataError if missing or of the wrong size."""
    if not os.path.isfile(path):
        raise DataError(f"result file {path!r} not found; run the inference app over every image "
                        f"of --img_path and pass its output folder as --result_path")
    data = np.fromfile(path, dtype=np.float32)
    expected = int(np.prod(shape))
    if data.size != expected:
        raise DataError(f"result file {path!r} holds {data.size} float32 values but {expected} "
                        f"were expected for shape {tuple(shape)}; {hint}")
    return data.reshape(shape)


def image_files(folder: str) -> List[str]:
    """Image files directly inside ``folder``, sorted."""
    if not folder or not os.path.isdir(folder):
        raise DataError(f"image folder {folder!r} not found; pass --img_path=<folder of the "
                        f"images that were run>")
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def postprocess_detection(cfg, args) -> int:
    """COCO mAP of YOLO result files (``<stem>_0.bin``, ``<stem>_1.bin``)."""
    # Detection-only modules load here, so a classifier postprocess never needs pycocotools.
    from src.coco_eval import coco_evaluate  # pylint: disable=import-outside-toplevel
    from src.datasets.coco import load_coco_annotations  # pylint: disable=import-outside-toplevel
    from src.yolov3_tiny.postprocess import (  # pylint: disable=import-outside-toplevel
        DetectionSettings, detect, to_coco_results)
    from src.yolov3_tiny.targets import STRIDES  # pylint: disable=import-outside-toplevel

    ann_file = args.ann_file or cfg.data.eval_ann_file
    if not ann_file:
        raise ConfigError("no annotation file; pass --ann_file=<instances_val2017.json>")
    if not args.result_path or not os.path.isdir(args.result_path):
        raise DataError(f"result folder {args.result_path!r} not found; pass --result_path=<folder "
                        f"written by the inference app>")
    gt = load_coco_annotations(ann_file)
    id_of_file = {info["file_name"]: image_id for image_id, info in gt.imgs.items()}
    category_ids = sorted(gt.getCatIds())
    if len(category_ids) != cfg.num_classes:
        raise DataError(f"{ann_file!r} has {len(category_ids)} categories but num_classes is "
                        f"{cfg.num_classes}; pass --num_classes={len(category_ids)}")
    height, width = cfg.image_size
    anchors_per_layer = [len(mask) for mask in cfg.detection.anchor_masks]
    shapes = [(1, height // s, width // s, a, 5 + cfg.num_classes)
              for s, a in zip(STRIDES, anchors_per_layer)]
    hint = (f"the model must be exported with --image_size={height},{width} and "
            f"--num_classes={cfg.num_classes} (pass the values it was exported with)")
    settings = DetectionSettings.from_config(cfg)
    detections, image_ids, unknown = [], [], 0
    for name in image_files(args.img_path):
        if name not in id_of_file:
            unknown += 1
            continue
        stem = result_stem(name)
        outputs = [read_result_file(os.path.join(args.result_path, f"{stem}_{i}.bin"), shape,
                                    hint)[0] for i, shape in enumerate(shapes)]
        with Image.open(os.path.join(args.img_path, name)) as img:
            image_w, image_h = img.size
        dets = detect(outputs, float(image_w), float(image_h), settings)
        detections += to_coco_results(id_of_file[name], dets, category_ids)
        image_ids.append(id_of_file[name])
    if not image_ids:
        raise DataError(f"none of the images in {args.img_path!r} is listed in {ann_file!r}; "
                        f"pass the matching annotation file")
    run_dir = run_directory(cfg, "postprocess")
    record_run(cfg, run_dir)
    result = coco_evaluate(gt, detections, image_ids,
                           results_path=os.path.join(run_dir, "predictions.json"))
    metrics = result.metrics()
    print(result.table)
    print(f"mAP: {metrics['mAP']:.4f} (over {len(image_ids)} images"
          + (f"; {unknown} image(s) not in the annotation file were skipped" if unknown else "")
          + ")")
    atomic_write_text(os.path.join(run_dir, "metrics.json"),
                      json.dumps(dict(metrics, num_images=len(image_ids),
                                      num_detections=len(detections), table=result.table),
                                 indent=2))
    print(f"results written to {run_dir}")
    return 0


# One function per task: f(cfg, flags) -> exit code. Classification is scored
# by src/deploy/postprocess_classification.py, reached with --label_file.
POSTPROCESSORS: Dict[str, Callable] = {"detection": postprocess_detection}


def main(argv) -> int:
    args, rest = split_flags(argv)
    if args.label_file:
        # Classifiers: top-1/top-5 from <stem>_0.bin logits and the label file.
        from src.deploy.postprocess_classification import main as classification_main
        return classification_main(argv)
    cfg = resolve_config(args, rest)

    task = get_model_spec(cfg.model).task
    handler = POSTPROCESSORS.get(task)
    if handler is None:
        raise ConfigError(f"postprocess.py has no {task} postprocessor yet (model {cfg.model!r}); "
                          f"available: {sorted(POSTPROCESSORS)}")
    return handler(cfg, args)


if __name__ == "__main__":
    run_main(main, sys.argv[1:])

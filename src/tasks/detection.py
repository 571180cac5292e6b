"""Detection task: COCO-format data, the model's loss and decoding, COCOeval.

Training batches are ``(image, *columns)`` where the model's spec gives the
target builder and the column names (``spec.targets``), fed positionally to its
loss network (``spec.loss``). Evaluation runs the deploy network
(``spec.deploy``) over every evaluation image, turns each image's outputs into
boxes with ``spec.decode`` and scores them with COCOeval; postprocess.py does
the same from deploy result files laid out as ``spec.output_layout`` says.
"""
import datetime
import json
import os
import time

import mindspore as ms
import numpy as np
from PIL import Image

from src import kernels
from src.coco_eval import STAT_NAMES, coco_evaluate
from src.datasets.check import check_data_or_raise
from src.datasets.coco import build_eval_dataset, build_train_dataset, reader_for
from src.datasets.letterbox import decode_in_image
from src.detections import to_coco_results
from src.errors import ConfigError, DataError
from src.preprocessing import describe, eval_preprocessing
from src.registry import get_model_spec
from src.tasks import NON_FINITE_EVAL_FIX, Task
from src.utils.finite import NonFiniteTally

PRIMARY_METRIC = "mAP"


def check_inputs(cfg, splits=("train",)):
    """Raise a DataError now if a split's images or annotations are unusable (before outputs)."""
    check_data_or_raise(cfg, splits)  # the readers' cheap checks; parsed once, cached


def train_dataset(cfg, ctx, seed: int):
    """This rank's augmented, multi-scale training batches for one epoch."""
    spec = get_model_spec(cfg.model)
    make_targets, columns = spec.targets(cfg)
    augment = spec.augmentation(cfg) if spec.augmentation is not None else None
    sizes, interval = spec.training_sizes(cfg) if spec.training_sizes is not None else (None, 1)
    return build_train_dataset(cfg, make_targets, columns, rank=ctx.rank,
                               group_size=ctx.group_size, seed=seed, transform=augment,
                               sizes=sizes, size_interval=interval)


def eval_dataset(cfg, ctx=None, batch_size: int = None):
    """Every evaluation image, ``(image, [orig_w, orig_h], image_id)``."""
    return build_eval_dataset(cfg, batch_size)


def loss_network(cfg, net):
    """The model's network-plus-loss cell over the training columns (its loss may use the
    zoo's CPU kernels, e.g. for the ignore mask's IoU)."""
    with kernels.for_config(cfg):
        return get_model_spec(cfg.model).loss(cfg, net)


def export_network(cfg, net):
    """The model's deployable cell (its outputs are what ``spec.decode`` reads)."""
    return get_model_spec(cfg.model).deploy_network(cfg, net)


def predictions_path(cfg) -> str:
    """Where an evaluation writes its COCO-format detections."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return os.path.join(cfg.output_dir, "predictions", f"{cfg.model}_{cfg.dataset}_{stamp}.json")


def evaluate(cfg, net, ctx=None, dataset=None, log=print):
    """COCO bbox metrics of ``net`` over every evaluation image.

    Returns ``{"mAP", "AP50", ..., "AR_large"}`` plus ``table`` (the COCOeval
    printout), ``num_images``, ``num_detections``, ``images_per_second`` and
    ``predictions_file``.
    """
    dataset = dataset if dataset is not None else eval_dataset(cfg, ctx)
    reader = getattr(dataset, "coco_reader", None) or reader_for(cfg, "eval")
    infer = export_network(cfg, net)
    infer.set_train(False)
    decode = get_model_spec(cfg.model).decode(cfg)
    pre = eval_preprocessing(cfg)
    log(describe(pre, cfg.image_size))
    detections, image_ids = [], []
    tally = NonFiniteTally("evaluation image(s)")
    start = time.time()
    for image, image_size, image_id in dataset.create_tuple_iterator(num_epochs=1,
                                                                     output_numpy=True):
        outputs = infer(ms.Tensor(image))
        outputs = [o.asnumpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
        for i, (width, height) in enumerate(image_size):
            if not tally.check(f"image id {int(image_id[i])}", *[o[i] for o in outputs]):
                continue
            dets = decode_in_image(decode, [o[i] for o in outputs], width, height,
                                   cfg.image_size, pre)
            detections += to_coco_results(int(image_id[i]), dets, reader.category_ids)
            image_ids.append(int(image_id[i]))
    seconds = max(time.time() - start, 1e-9)
    tally.raise_if_any("no mAP is reported", NON_FINITE_EVAL_FIX)
    if not image_ids:
        raise ValueError("the evaluation dataset is empty")
    path = predictions_path(cfg)
    result = coco_evaluate(reader.ann_file, detections, image_ids, results_path=path)
    log(f"evaluated {len(image_ids)} images in {seconds:.1f} s ({len(image_ids) / seconds:.1f} "
        f"img/s): {len(detections)} detections written to {path}")
    metrics = result.metrics()
    metrics.update(table=result.table, num_images=len(image_ids), num_detections=len(detections),
                   images_per_second=len(image_ids) / seconds, predictions_file=path)
    return metrics


def format_metrics(metrics) -> str:
    """The COCOeval table followed by ``mAP: x`` (the line users grep for)."""
    return f"{metrics['table']}\nmAP: {metrics['mAP']:.4f}"


# ---------------------------------------------------------------- deploy result files

def result_stem(file_name: str) -> str:
    """The result-file stem of an image: its name up to the first '.' (as the C++ app writes it)."""
    return os.path.basename(file_name).split(".")[0]


def read_result_file(path: str, shape, hint: str) -> np.ndarray:
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


def image_files(folder: str):
    """Image files directly inside ``folder``, sorted."""
    from src.datasets.common import IMAGE_SUFFIXES  # pylint: disable=import-outside-toplevel
    if not folder or not os.path.isdir(folder):
        raise DataError(f"image folder {folder!r} not found; pass --img_path=<folder of the "
                        f"images that were run>")
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


def score_results(cfg, flags) -> int:
    """COCO mAP of deploy result files (``<stem>_<i>.bin``, one per deploy output)."""
    from src.cli import record_run, run_directory  # pylint: disable=import-outside-toplevel
    from src.deploy.common import NON_FINITE_RESULTS_FIX  # pylint: disable=C0415
    from src.datasets.coco import load_coco_annotations  # pylint: disable=import-outside-toplevel
    from src.utils.io import atomic_write_text  # pylint: disable=import-outside-toplevel

    ann_file = flags.ann_file or cfg.data.eval_ann_file
    if not ann_file:
        raise ConfigError("no annotation file; pass --ann_file=<instances_val2017.json>")
    if not flags.result_path or not os.path.isdir(flags.result_path):
        raise DataError(f"result folder {flags.result_path!r} not found; pass --result_path="
                        f"<folder written by the inference app>")
    gt = load_coco_annotations(ann_file)
    id_of_file = {info["file_name"]: image_id for image_id, info in gt.imgs.items()}
    category_ids = sorted(gt.getCatIds())
    if len(category_ids) != cfg.num_classes:
        raise DataError(f"{ann_file!r} has {len(category_ids)} categories but num_classes is "
                        f"{cfg.num_classes}; pass --num_classes={len(category_ids)}")
    spec = get_model_spec(cfg.model)
    shapes = spec.output_shapes(cfg)
    height, width = cfg.image_size
    hint = (f"the model must be exported with --image_size={height},{width} and "
            f"--num_classes={cfg.num_classes} (pass the values it was exported with)")
    decode = spec.decode(cfg)
    pre = eval_preprocessing(cfg)
    detections, image_ids, unknown = [], [], 0
    tally = NonFiniteTally("image(s)")
    for name in image_files(flags.img_path):
        if name not in id_of_file:
            unknown += 1
            continue
        stem = result_stem(name)
        outputs = [read_result_file(os.path.join(flags.result_path, f"{stem}_{i}.bin"), shape, hint)
                   for i, shape in enumerate(shapes)]
        if not tally.check(repr(os.path.join(flags.result_path, f"{stem}_*.bin")), *outputs):
            continue
        with Image.open(os.path.join(flags.img_path, name)) as img:
            image_w, image_h = img.size
        dets = decode_in_image(decode, outputs, image_w, image_h, cfg.image_size, pre)
        detections += to_coco_results(id_of_file[name], dets, category_ids)
        image_ids.append(id_of_file[name])
    tally.raise_if_any("nothing was scored", NON_FINITE_RESULTS_FIX)
    if not image_ids:
        raise DataError(f"none of the images in {flags.img_path!r} is listed in {ann_file!r}; "
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


TASK = Task(name="detection", primary_metric=PRIMARY_METRIC, metric_names=STAT_NAMES,
            check_inputs=check_inputs,
            train_dataset=train_dataset, eval_dataset=eval_dataset, loss_network=loss_network,
            export_network=export_network, evaluate=evaluate, format_metrics=format_metrics,
            score_results=score_results)

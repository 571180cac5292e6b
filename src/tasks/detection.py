"""Detection task (YOLOv3-Tiny on COCO): multi-scale batches, YOLO loss, COCO mAP.

The training columns are ``(image, y_true_32, y_true_16, gt_boxes_32,
gt_boxes_16)``, fed positionally to :class:`~src.yolov3_tiny.loss.YoloWithLoss`.
Evaluation runs the decoding network over every evaluation image, keeps
detections after per-class NMS and scores them with COCOeval.
"""
import datetime
import functools
import os
import time

import mindspore as ms

from src.coco_eval import coco_evaluate
from src.datasets.check import check_data_or_raise
from src.datasets.coco import build_eval_dataset, build_train_dataset, reader_for
from src.utils.logging import format_duration
from src.yolov3_tiny.augment import AugmentSettings
from src.yolov3_tiny.loss import YoloInference, YoloWithLoss
from src.yolov3_tiny.postprocess import DetectionSettings, detect, to_coco_results
from src.yolov3_tiny.targets import STRIDES, assign_targets

PRIMARY_METRIC = "mAP"
TARGET_COLUMNS = ("y_true_32", "y_true_16", "gt_boxes_32", "gt_boxes_16")


def _targets_as_columns(boxes, input_hw, **options):
    y_true, gt_boxes = assign_targets(boxes, input_hw, **options)
    return (*y_true, *gt_boxes)


def target_function(cfg):
    """``f(boxes, input_hw) -> (y_true_32, y_true_16, gt_boxes_32, gt_boxes_16)`` of this config."""
    d = cfg.detection
    # A partial of a module-level function stays picklable for spawned data workers.
    return functools.partial(_targets_as_columns, anchors=d.anchors, anchor_masks=d.anchor_masks,
                             num_classes=cfg.num_classes, iou_threshold=d.assign_iou_threshold,
                             max_boxes=d.max_boxes, label_smoothing=d.label_smoothing,
                             strides=STRIDES)


def check_inputs(cfg, splits=("train",)):
    """Raise a DataError now if a split's images or annotations are unusable (before outputs)."""
    check_data_or_raise(cfg, splits)  # the readers' cheap checks; parsed once, cached


def train_dataset(cfg, ctx, seed: int):
    """This rank's augmented, multi-scale training batches for one epoch."""
    return build_train_dataset(cfg, target_function(cfg), TARGET_COLUMNS, rank=ctx.rank,
                               group_size=ctx.group_size, seed=seed,
                               transform=AugmentSettings.from_config(cfg))


def eval_dataset(cfg, ctx=None, batch_size: int = None):
    """Every evaluation image, ``(image, [orig_w, orig_h], image_id)``."""
    return build_eval_dataset(cfg, batch_size)


def loss_network(cfg, net):
    """YOLOv3-Tiny plus its loss, one cell over the training columns."""
    d = cfg.detection
    return YoloWithLoss(net, d.anchors, d.anchor_masks, cfg.num_classes, d.ignore_threshold,
                        d.coord_scale, d.large_scale)


def export_network(cfg, net):
    """The deployable cell: decoded ``(N, H/s, W/s, 3, 5+C)`` maps, stride 32 first."""
    return YoloInference(net, cfg.detection.anchors, cfg.detection.anchor_masks, cfg.num_classes)


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
    settings = DetectionSettings.from_config(cfg)
    detections, image_ids = [], []
    start = time.time()
    for image, image_size, image_id in dataset.create_tuple_iterator(num_epochs=1,
                                                                     output_numpy=True):
        outputs = [o.asnumpy() for o in infer(ms.Tensor(image))]
        for i, (width, height) in enumerate(image_size):
            dets = detect([o[i] for o in outputs], float(width), float(height), settings)
            detections += to_coco_results(int(image_id[i]), dets, reader.category_ids)
            image_ids.append(int(image_id[i]))
    seconds = max(time.time() - start, 1e-9)
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


def progress_line(epoch, step, steps, loss, lr, images_per_second, eta_epoch, eta_total):
    """Upstream's ``epoch[e], iter[i], loss:..., fps:... imgs/sec, lr:...`` (0-based, global)."""
    global_iter = (epoch - 1) * steps + step
    return (f"epoch[{epoch - 1}], iter[{global_iter}], loss:{loss:.6f}, "
            f"fps:{images_per_second:.2f} imgs/sec, lr:{lr:.8g} "
            f"(step {step}/{steps}, epoch ETA {format_duration(eta_epoch)}, "
            f"total ETA {format_duration(eta_total)})")


"""YOLOv3-Tiny training targets, built in numpy inside the data pipeline.

For every ground-truth box the anchors it is assigned to are: each anchor
whose (w, h) IoU with the box exceeds ``assign_iou_threshold``, plus the best
anchor (so no box goes unassigned). An anchor belongs to one output layer
(``anchor_masks``: stride 32 first); in that layer the box is written into the
grid cell holding its centre, in the anchor's slot.

Outputs per layer:

* ``y_true``: ``(H/stride, W/stride, anchors_per_layer, 5 + C)`` with the box
  ``x, y, w, h`` normalised to the input size, objectness 1 and the (optionally
  smoothed) one-hot class;
* ``gt_boxes``: ``(max_boxes, 4)``, the normalised ``xywh`` of every box written
  into that layer, zero-padded; the loss uses it for the ignore mask.
"""
import functools
from typing import List, Sequence, Tuple

import numpy as np

STRIDES = (32, 16)  # output 0 is the stride-32 map, output 1 the stride-16 map


def anchor_wh_iou(box_wh: np.ndarray, anchors_wh: np.ndarray) -> np.ndarray:
    """IoU of boxes and anchors compared by size only (both centred at the origin).

    ``box_wh`` is ``(n, 2)``, ``anchors_wh`` ``(A, 2)`` in the same units; returns ``(n, A)``.
    """
    box_wh = np.asarray(box_wh, np.float64).reshape(-1, 1, 2)
    anchors_wh = np.asarray(anchors_wh, np.float64).reshape(1, -1, 2)
    intersection = np.prod(np.minimum(box_wh, anchors_wh), axis=-1)
    union = np.prod(box_wh, axis=-1) + np.prod(anchors_wh, axis=-1) - intersection
    return intersection / np.maximum(union, 1e-12)


def class_target(class_index: int, num_classes: int, smoothing: float) -> np.ndarray:
    """One-hot class vector; with smoothing ``1 - s`` for the class and ``s / (C - 1)`` elsewhere."""
    if smoothing > 0 and num_classes > 1:
        target = np.full(num_classes, smoothing / (num_classes - 1), np.float32)
        target[class_index] = 1.0 - smoothing
    else:
        target = np.zeros(num_classes, np.float32)
        target[class_index] = 1.0
    return target


def assign_targets(boxes: np.ndarray, input_hw: Sequence[int], anchors: Sequence,
                   anchor_masks: Sequence[Sequence[int]], num_classes: int,
                   iou_threshold: float, max_boxes: int, label_smoothing: float = 0.0,
                   strides: Sequence[int] = STRIDES) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Build ``(y_true per layer, gt_boxes per layer)`` for one image.

    Args:
        boxes: ``(n, 5)`` rows ``x1, y1, x2, y2, class`` in input pixels (after augmentation).
        input_hw: network input ``(height, width)``, multiples of the strides.
        anchors: ``(A, 2)`` anchor ``(w, h)`` in input pixels.
        anchor_masks: anchor indices per layer, in the order of ``strides``.
        num_classes: C.
        iou_threshold: anchors with a size-IoU above this also predict the box.
        max_boxes: rows of each ``gt_boxes`` array.
        label_smoothing: class target smoothing factor.
    """
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    y_true = [np.zeros((in_h // s, in_w // s, len(mask), 5 + num_classes), np.float32)
              for s, mask in zip(strides, anchor_masks)]
    layer_of_anchor = {int(a): (layer, slot) for layer, mask in enumerate(anchor_masks)
                       for slot, a in enumerate(mask)}
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    if len(boxes):
        centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2.0
        size = boxes[:, 2:4] - boxes[:, 0:2]
        scale = np.array([in_w, in_h], np.float32)
        xywh = np.concatenate([centre / scale, size / scale], axis=1)
        ious = anchor_wh_iou(size, anchors)
        for t in range(len(boxes)):
            chosen = set(np.flatnonzero(ious[t] > iou_threshold).tolist())
            chosen.add(int(np.argmax(ious[t])))
            target_cls = class_target(int(boxes[t, 4]), num_classes, label_smoothing)
            for anchor in sorted(chosen):
                if anchor not in layer_of_anchor:
                    continue
                layer, slot = layer_of_anchor[anchor]
                grid_h, grid_w = y_true[layer].shape[:2]
                # A centre exactly on the right/bottom edge belongs to the last cell.
                col = min(int(np.floor(xywh[t, 0] * grid_w)), grid_w - 1)
                row = min(int(np.floor(xywh[t, 1] * grid_h)), grid_h - 1)
                cell = y_true[layer][row, col, slot]
                cell[0:4] = xywh[t]
                cell[4] = 1.0
                cell[5:] = target_cls
    gt_boxes = [padded_box_list(layer_true, max_boxes) for layer_true in y_true]
    return y_true, gt_boxes


def padded_box_list(layer_true: np.ndarray, max_boxes: int) -> np.ndarray:
    """The ``xywh`` of every assigned slot of one layer, cut or zero-padded to ``max_boxes`` rows."""
    assigned = layer_true[layer_true[..., 4] > 0][:, 0:4]
    out = np.zeros((max_boxes, 4), np.float32)
    count = min(len(assigned), max_boxes)
    out[:count] = assigned[:count]
    return out


TARGET_COLUMNS = ("y_true_32", "y_true_16", "gt_boxes_32", "gt_boxes_16")


def _targets_as_columns(boxes, input_hw, **options):
    y_true, gt_boxes = assign_targets(boxes, input_hw, **options)
    return (*y_true, *gt_boxes)


def target_function(cfg):
    """``(f(boxes, input_hw) -> (y_true_32, y_true_16, gt_boxes_32, gt_boxes_16)), column names)``.

    The columns follow the image, in :class:`~src.yolov3_tiny.loss.YoloWithLoss`'s order.
    """
    d = cfg.detection
    # A partial of a module-level function stays picklable for spawned data workers.
    return functools.partial(_targets_as_columns, anchors=d.anchors, anchor_masks=d.anchor_masks,
                             num_classes=cfg.num_classes, iou_threshold=d.assign_iou_threshold,
                             max_boxes=d.max_boxes, label_smoothing=d.label_smoothing,
                             strides=STRIDES), TARGET_COLUMNS

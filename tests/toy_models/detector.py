"""The toy detector's own parts: one cell per object centre, sigmoid boxes.

Each cell of the stride-16 map predicts ``x, y`` (offset in the cell), ``w, h``
(fraction of the input), objectness and independent class probabilities.
"""
import functools

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.detections import Detections, per_class_nms
from toy_models.nets import BOX_ATTRIBUTES, STRIDE


def assign(boxes, input_hw, num_classes):
    """``(y_true,)``: ``(H/16, W/16, 5 + C)`` with normalised xywh, objectness 1, one-hot class."""
    height, width = int(input_hw[0]) // STRIDE, int(input_hw[1]) // STRIDE
    y_true = np.zeros((height, width, BOX_ATTRIBUTES + num_classes), np.float32)
    for x1, y1, x2, y2, cls in np.asarray(boxes, np.float32).reshape(-1, 5):
        if x2 <= x1 or y2 <= y1:
            continue
        cx, cy = (x1 + x2) / 2 / input_hw[1], (y1 + y2) / 2 / input_hw[0]
        col, row = min(int(cx * width), width - 1), min(int(cy * height), height - 1)
        y_true[row, col, :5] = [cx, cy, (x2 - x1) / input_hw[1], (y2 - y1) / input_hw[0], 1.0]
        y_true[row, col, 5 + int(cls)] = 1.0
    return (y_true,)


def targets(cfg):
    """The target builder (picklable) and its column names."""
    return functools.partial(assign, num_classes=cfg.num_classes), ("y_true",)


class Decode(nn.Cell):
    """Raw map -> ``(N, H/16, W/16, 5 + C)`` decoded, normalised to the input."""

    def construct(self, raw):
        n, _, h, w = raw.shape
        pred = ops.sigmoid(raw.transpose(0, 2, 3, 1))
        grid_x = ops.arange(0, w, dtype=ms.float32).reshape(1, 1, w, 1)
        grid_y = ops.arange(0, h, dtype=ms.float32).reshape(1, h, 1, 1)
        return ops.concat(((pred[..., 0:1] + grid_x) / w, (pred[..., 1:2] + grid_y) / h,
                           pred[..., 2:]), axis=-1).reshape(n, h, w, -1)


class ToyLoss(nn.Cell):
    """Objectness and class BCE everywhere / at objects, L1 on the decoded box at objects."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.decode = Decode()

    def construct(self, image, y_true):
        decoded = self.decode(self.net(image))
        obj = y_true[..., 4:5]
        eps = 1e-6
        bce = -(y_true[..., 4:] * ops.log(decoded[..., 4:] + eps)
                + (1 - y_true[..., 4:]) * ops.log(1 - decoded[..., 4:] + eps))
        objectness = bce[..., 0:1].sum()
        classes = (obj * bce[..., 1:]).sum()
        box = (obj * ops.abs(decoded[..., 0:4] - y_true[..., 0:4])).sum()
        return (objectness + classes + 5.0 * box) / image.shape[0]


class ToyInference(nn.Cell):
    """The deploy network: image -> decoded map."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.decode = Decode()

    def construct(self, image):
        return self.decode(self.net(image))


def loss_network(cfg, net):
    return ToyLoss(net)


def deploy_network(cfg, net):
    return ToyInference(net)


def output_layout(cfg):
    height, width = cfg.image_size
    return [(height // STRIDE, width // STRIDE, BOX_ATTRIBUTES + cfg.num_classes)]


def decode(outputs, image_w, image_h, score_threshold, nms_iou):
    """Best class per cell, score = objectness x class probability, per-class NMS."""
    rows = np.asarray(outputs[0], np.float32).reshape(-1, outputs[0].shape[-1])
    classes = rows[:, 5:].argmax(axis=1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + classes]
    keep = scores >= score_threshold
    rows, classes, scores = rows[keep], classes[keep], scores[keep]
    scale = np.array([image_w, image_h], np.float32)
    centre, size = rows[:, 0:2] * scale, rows[:, 2:4] * scale
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image_w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image_h)
    return per_class_nms(Detections(boxes, scores.astype(np.float32), classes.astype(np.int64)),
                         nms_iou, 100)


def decoder(cfg):
    section = cfg.toy_detector
    return functools.partial(decode, score_threshold=section.score_threshold,
                             nms_iou=section.nms_iou)

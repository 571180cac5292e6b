"""YOLOv3-Tiny head decoding, training loss and the deployable inference cell.

Decoding of one raw head ``(N, A*(5+C), H, W)`` (A = 3 anchors per layer):

* reshape/transpose to ``(N, H, W, A, 5+C)`` (channel = anchor * (5+C) + attribute);
* ``xy = (s * sigmoid(t_xy) - o + grid) / (W, H)`` with the "grid sensitivity"
  constants of upstream (s=1.1, o=0.05 at stride 32; s=1.2, o=0.1 at stride 16),
  which let a centre reach the cell borders; a network built with
  ``grid_sensitivity=False`` (Darknet's weights) decodes with s=1, o=0;
* ``wh = exp(min(t_wh, 10)) * anchor / input_size`` (the cap only keeps gradients
  finite); objectness and classes are sigmoids.

Everything is normalised to the network input, whose size is read from the
image tensor's shape, so one network serves every multi-scale input size (in
GRAPH mode each new size is simply a new compilation).

Loss per layer (B = batch size), as upstream ``YoloLossBlock``:

* box: ``coord_scale * sum(obj * (2 - w*h) * (1 - GIoU(pred, gt)))``;
* objectness: ``sum(obj * BCE + (1 - obj) * BCE * ignore)`` where ``ignore`` is 1
  for predictions whose best IoU with the layer's ground-truth list is below
  ``ignore_threshold`` (no gradient flows through the mask);
* classes: ``sum(obj * BCE(t_cls, class_target))`` (independent sigmoids);
* layer loss = (box + objectness + classes) / B; total = ``large_scale *
  loss(stride 32) + loss(stride 16)``.
"""
from typing import Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from src import kernels
from src.kernels import cells
from src.yolov3_tiny.net import ANCHORS_PER_SCALE, BOX_ATTRIBUTES

# (scale, offset) of the centre decoding per output, stride 32 first.
GRID_SENSITIVITY = ((1.1, 0.05), (1.2, 0.1))
PLAIN_SIGMOID = ((1.0, 0.0), (1.0, 0.0))  # Darknet's yolov3-tiny (scale_x_y = 1)
EPSILON = 1e-6
# exp(t_wh) is capped at exp(10) ~ 22000 anchor sizes (far beyond any image). Unsupervised
# cells can drift to t_wh > 88 where exp overflows; their zero loss weight times the
# infinite derivative would make NaN gradients even though the loss stays finite.
MAX_LOG_SIZE = 10.0


def sigmoid_bce_with_logits(logits, targets):
    """Element-wise binary cross entropy on logits (stable; gradient sigmoid(x) - target)."""
    return ops.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def xywh_to_xyxy(boxes):
    """Centre/size boxes ``(..., 4)`` to corner boxes ``(..., 4)``."""
    half = boxes[..., 2:4] / 2.0
    return ops.concat((boxes[..., 0:2] - half, boxes[..., 0:2] + half), axis=-1)


def box_iou_xywh(boxes1, boxes2):
    """IoU of broadcastable centre/size boxes ``(..., 4)``; returns ``(...)``."""
    a, b = xywh_to_xyxy(boxes1), xywh_to_xyxy(boxes2)
    overlap = ops.relu(ops.minimum(a[..., 2:4], b[..., 2:4])
                       - ops.maximum(a[..., 0:2], b[..., 0:2]))
    intersection = overlap[..., 0] * overlap[..., 1]
    union = boxes1[..., 2] * boxes1[..., 3] + boxes2[..., 2] * boxes2[..., 3] - intersection
    return intersection / (union + EPSILON)


def best_iou_with_ground_truth(pred_boxes, gt_boxes):
    """Best IoU of each predicted box with any of its image's ground-truth boxes.

    ``pred_boxes`` ``(N, H, W, A, 4)`` and ``gt_boxes`` ``(N, M, 4)``, centre/size; returns
    ``(N, H, W, A, 1)``. Same arithmetic as :func:`box_iou_xywh` on the broadcast pair, but
    each coordinate is taken once before broadcasting: no ``(N, H, W, A, M, 4)`` tensor is
    built or sliced (this was 16 % of a YOLOv3-Tiny train step).
    """
    n, m = gt_boxes.shape[0], gt_boxes.shape[1]
    gt = gt_boxes.reshape(n, 1, 1, 1, m, 4)

    def sides(boxes):
        half = boxes[..., 2:4] / 2.0
        low, high = boxes[..., 0:2] - half, boxes[..., 0:2] + half
        return low[..., 0:1], high[..., 0:1], low[..., 1:2], high[..., 1:2]

    px1, px2, py1, py2 = sides(pred_boxes)   # (N, H, W, A, 1) each
    gx1, gx2, gy1, gy2 = (s.squeeze(-1) for s in sides(gt))  # (N, 1, 1, 1, M) each
    overlap_w = ops.relu(ops.minimum(px2, gx2) - ops.maximum(px1, gx1))
    overlap_h = ops.relu(ops.minimum(py2, gy2) - ops.maximum(py1, gy1))
    intersection = overlap_w * overlap_h
    union = (pred_boxes[..., 2:3] * pred_boxes[..., 3:4]
             + (gt[..., 2] * gt[..., 3]) - intersection)
    return (intersection / (union + EPSILON)).max(axis=-1, keepdims=True)


def giou_xyxy(boxes1, boxes2):
    """Generalised IoU of corner boxes ``(..., 4)``; returns ``(..., 1)`` clipped to [-1, 1]."""
    area1 = (boxes1[..., 2:3] - boxes1[..., 0:1]) * (boxes1[..., 3:4] - boxes1[..., 1:2])
    area2 = (boxes2[..., 2:3] - boxes2[..., 0:1]) * (boxes2[..., 3:4] - boxes2[..., 1:2])
    overlap = ops.relu(ops.minimum(boxes1[..., 2:4], boxes2[..., 2:4])
                       - ops.maximum(boxes1[..., 0:2], boxes2[..., 0:2]))
    intersection = overlap[..., 0:1] * overlap[..., 1:2]
    union = area1 + area2 - intersection + EPSILON
    enclose = (ops.maximum(boxes1[..., 2:4], boxes2[..., 2:4])
               - ops.minimum(boxes1[..., 0:2], boxes2[..., 0:2]))
    enclose_area = enclose[..., 0:1] * enclose[..., 1:2] + EPSILON
    giou = intersection / union - (enclose_area - union) / enclose_area
    return ops.clamp(giou, -1.0, 1.0)


class HeadDecoder(nn.Cell):
    """Decode one raw head into ``(prediction (N,H,W,A,5+C), box_xy, box_wh)``, normalised.

    Args:
        anchors_wh: ``(A, 2)`` anchor ``(w, h)`` of this layer in input pixels.
        num_classes: C.
        xy_scale, xy_offset: the grid-sensitivity constants of this layer.
    """

    def __init__(self, anchors_wh: Sequence, num_classes: int, xy_scale: float, xy_offset: float):
        super().__init__()
        anchors = np.asarray(anchors_wh, np.float32).reshape(1, 1, 1, -1, 2)
        self.num_anchors = anchors.shape[3]
        self.attributes = BOX_ATTRIBUTES + num_classes
        self.anchor_w = Tensor(anchors[..., 0:1])
        self.anchor_h = Tensor(anchors[..., 1:2])
        self.xy_scale = xy_scale
        self.xy_offset = xy_offset

    def construct(self, raw, input_h, input_w):
        n, _, h, w = raw.shape
        pred = raw.reshape(n, self.num_anchors, self.attributes, h, w).transpose(0, 3, 4, 1, 2)
        grid_x = ops.arange(0, w, dtype=ms.float32).reshape(1, 1, w, 1, 1)
        grid_y = ops.arange(0, h, dtype=ms.float32).reshape(1, h, 1, 1, 1)
        shifted = ops.sigmoid(pred[..., 0:2]) * self.xy_scale - self.xy_offset
        box_x = (shifted[..., 0:1] + grid_x) / w
        box_y = (shifted[..., 1:2] + grid_y) / h
        box_w = ops.exp(ops.minimum(pred[..., 2:3], MAX_LOG_SIZE)) * self.anchor_w / input_w
        box_h = ops.exp(ops.minimum(pred[..., 3:4], MAX_LOG_SIZE)) * self.anchor_h / input_h
        return pred, ops.concat((box_x, box_y), axis=-1), ops.concat((box_w, box_h), axis=-1)


def uses_grid_sensitivity(net) -> bool:
    """Whether ``net``'s weights expect upstream's scaled centres (True unless built otherwise)."""
    return getattr(net, "grid_sensitivity", True)


def build_decoders(anchors: Sequence, anchor_masks: Sequence, num_classes: int,
                   grid_sensitivity: bool = True) -> nn.CellList:
    """One :class:`HeadDecoder` per output, in network output order (stride 32 first)."""
    constants = GRID_SENSITIVITY if grid_sensitivity else PLAIN_SIGMOID
    if len(anchor_masks) != len(constants):
        raise ValueError(f"YOLOv3-Tiny has {len(constants)} outputs, got "
                         f"{len(anchor_masks)} anchor masks")
    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    decoders = []
    for mask, (scale, offset) in zip(anchor_masks, constants):
        if len(mask) != ANCHORS_PER_SCALE:
            raise ValueError(f"each anchor mask needs {ANCHORS_PER_SCALE} anchors, got {mask}")
        decoders.append(HeadDecoder(anchors[list(mask)], num_classes, scale, offset))
    return nn.CellList(decoders)


class YoloLayerLoss(nn.Cell):
    """Loss of one output layer (already divided by the batch size)."""

    def __init__(self, decoder: HeadDecoder, ignore_threshold: float, coord_scale: float):
        super().__init__()
        self.decoder = decoder
        self.ignore_threshold = ignore_threshold
        self.coord_scale = coord_scale
        self.kernel_iou = cells.BestIoU() if kernels.active() else None
        self.use_kernel_iou = self.kernel_iou is not None

    def construct(self, raw, y_true, gt_boxes, input_h, input_w):
        pred, box_xy, box_wh = self.decoder(raw, input_h, input_w)
        object_mask = y_true[..., 4:5]
        pred_boxes = ops.concat((box_xy, box_wh), axis=-1)

        # Ignore mask: predictions that already overlap some object well get no
        # "no object" penalty; no gradient flows through it.
        if self.use_kernel_iou:
            best_iou = self.kernel_iou(pred_boxes, gt_boxes)
        else:
            best_iou = best_iou_with_ground_truth(ops.stop_gradient(pred_boxes), gt_boxes)
        ignore_mask = ops.stop_gradient((best_iou < self.ignore_threshold).astype(ms.float32))

        conf_bce = sigmoid_bce_with_logits(pred[..., 4:5], object_mask)
        conf_loss = (object_mask * conf_bce + (1.0 - object_mask) * conf_bce * ignore_mask).sum()
        class_loss = (object_mask * sigmoid_bce_with_logits(pred[..., 5:], y_true[..., 5:])).sum()

        giou = giou_xyxy(xywh_to_xyxy(pred_boxes), xywh_to_xyxy(y_true[..., 0:4]))
        small_box_weight = 2.0 - y_true[..., 2:3] * y_true[..., 3:4]
        box_loss = (object_mask * small_box_weight * (1.0 - giou)).sum()
        return (box_loss * self.coord_scale + conf_loss + class_loss) / raw.shape[0]


class YoloWithLoss(nn.Cell):
    """Network plus loss; inputs ``(image, y_true_32, y_true_16, gt_boxes_32, gt_boxes_16)``."""

    def __init__(self, net, anchors, anchor_masks, num_classes: int, ignore_threshold: float,
                 coord_scale: float, large_scale: float):
        super().__init__()
        self.net = net
        decoders = build_decoders(anchors, anchor_masks, num_classes, uses_grid_sensitivity(net))
        self.loss_large = YoloLayerLoss(decoders[0], ignore_threshold, coord_scale)
        self.loss_small = YoloLayerLoss(decoders[1], ignore_threshold, coord_scale)
        self.large_scale = large_scale

    def construct(self, image, y_true_32, y_true_16, gt_boxes_32, gt_boxes_16):
        input_h, input_w = image.shape[2], image.shape[3]
        out_32, out_16 = self.net(image)
        loss_large = self.loss_large(out_32, y_true_32, gt_boxes_32, input_h, input_w)
        loss_small = self.loss_small(out_16, y_true_16, gt_boxes_16, input_h, input_w)
        return loss_large * self.large_scale + loss_small


class YoloInference(nn.Cell):
    """The deployable network: image ``(N,3,H,W)`` -> decoded ``(N, H/s, W/s, A, 5+C)`` per output.

    Each output holds ``x, y, w, h`` normalised to the input size, then the
    sigmoid objectness and the sigmoid class probabilities. Output 0 is stride
    32, output 1 stride 16.
    """

    def __init__(self, net, anchors, anchor_masks, num_classes: int):
        super().__init__()
        self.net = net
        decoders = build_decoders(anchors, anchor_masks, num_classes, uses_grid_sensitivity(net))
        self.decode_large = decoders[0]
        self.decode_small = decoders[1]

    def _decoded(self, decoder, raw, input_h, input_w):
        pred, box_xy, box_wh = decoder(raw, input_h, input_w)
        return ops.concat((box_xy, box_wh, ops.sigmoid(pred[..., 4:])), axis=-1)

    def construct(self, image):
        input_h, input_w = image.shape[2], image.shape[3]
        out_32, out_16 = self.net(image)
        return (self._decoded(self.decode_large, out_32, input_h, input_w),
                self._decoded(self.decode_small, out_16, input_h, input_w))


def loss_network(cfg, net) -> YoloWithLoss:
    """YOLOv3-Tiny plus its loss, one cell over the training columns."""
    d = cfg.detection
    return YoloWithLoss(net, d.anchors, d.anchor_masks, cfg.num_classes, d.ignore_threshold,
                        d.coord_scale, d.large_scale)


def inference_network(cfg, net) -> YoloInference:
    """The deployable cell: decoded ``(N, H/s, W/s, 3, 5+C)`` maps, stride 32 first."""
    return YoloInference(net, cfg.detection.anchors, cfg.detection.anchor_masks, cfg.num_classes)

"""Numpy post-processing of decoded YOLO outputs: boxes in image pixels, scores, NMS.

Input is what :class:`src.yolov3_tiny.loss.YoloInference` (or the exported
MINDIR/ONNX graph) returns for one image: a list of arrays
``(H, W, A, 5 + C)`` holding normalised ``x, y, w, h``, the objectness and the
class probabilities. The spec's ``decode`` (:func:`decoder`) and
``output_layout``; the detection task, ``postprocess.py`` and ``detect.py``
call them through the spec.
"""
import dataclasses
import functools
from typing import List, Sequence, Tuple

import numpy as np

from src.detections import Detections, per_class_nms
from src.yolov3_tiny.targets import STRIDES


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """How raw scores become detections (the ``detection.*`` config keys)."""

    score_threshold: float = 0.001
    multi_label: bool = True
    multi_label_threshold: float = 0.15
    nms_iou: float = 0.5
    max_detections: int = 100  # per image after NMS; <= 0 keeps all

    @classmethod
    def from_config(cls, cfg) -> "DetectionSettings":
        """Settings from a resolved config's ``detection`` section."""
        d = cfg.detection
        return cls(score_threshold=d.score_threshold, multi_label=d.multi_label,
                   multi_label_threshold=d.multi_label_threshold, nms_iou=d.nms_iou,
                   max_detections=d.max_detections)


def candidate_boxes(outputs: Sequence[np.ndarray], image_w: float, image_h: float,
                    settings: DetectionSettings) -> Detections:
    """Every (box, class) pair scoring at least the threshold, before NMS.

    The score is ``objectness * class probability``. In multi-label mode each
    class with probability above ``multi_label_threshold`` gives a candidate,
    otherwise only the most probable class does. Boxes are scaled to the
    original image and clipped to it.
    """
    rows = np.concatenate([np.asarray(o, np.float32).reshape(-1, np.shape(o)[-1])
                           for o in outputs], axis=0)
    xy, wh = rows[:, 0:2], rows[:, 2:4]
    objectness, class_probs = rows[:, 4], rows[:, 5:]
    if settings.multi_label:
        box_index, class_index = np.nonzero(class_probs > settings.multi_label_threshold)
    else:
        box_index = np.arange(len(rows))
        class_index = np.argmax(class_probs, axis=1)
    scores = objectness[box_index] * class_probs[box_index, class_index]
    keep = scores >= settings.score_threshold
    box_index, class_index, scores = box_index[keep], class_index[keep], scores[keep]
    scale = np.array([image_w, image_h], np.float32)
    centre, size = xy[box_index] * scale, wh[box_index] * scale
    corners = np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=1)
    corners[:, [0, 2]] = np.clip(corners[:, [0, 2]], 0.0, image_w)
    corners[:, [1, 3]] = np.clip(corners[:, [1, 3]], 0.0, image_h)
    return Detections(corners, scores.astype(np.float32), class_index.astype(np.int64))


def detect(outputs: Sequence[np.ndarray], image_w: float, image_h: float,
           settings: DetectionSettings) -> Detections:
    """Final detections of one image: candidates, per-class NMS, best ``max_detections``."""
    return per_class_nms(candidate_boxes(outputs, image_w, image_h, settings), settings.nms_iou,
                         settings.max_detections)


def decoder(cfg):
    """``f(outputs of one image, image_w, image_h) -> Detections`` under ``cfg``'s settings."""
    return functools.partial(detect, settings=DetectionSettings.from_config(cfg))


def output_layout(cfg) -> List[Tuple[int, ...]]:
    """Shapes of the deploy outputs for one image: ``(H/s, W/s, A, 5+C)``, stride 32 first."""
    from src.yolov3_tiny.net import BOX_ATTRIBUTES  # pylint: disable=import-outside-toplevel
    height, width = cfg.image_size
    return [(height // stride, width // stride, len(mask), BOX_ATTRIBUTES + cfg.num_classes)
            for stride, mask in zip(STRIDES, cfg.detection.anchor_masks)]

"""Numpy post-processing of decoded YOLO outputs: boxes in image pixels, scores, NMS.

Input is what :class:`src.yolov3_tiny.loss.YoloInference` (or the exported
MINDIR/ONNX graph) returns for one image: a list of arrays
``(H, W, A, 5 + C)`` holding normalised ``x, y, w, h``, the objectness and the
class probabilities. Used by evaluation, ``postprocess.py`` (deploy results)
and ``detect.py``.
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np


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


@dataclasses.dataclass
class Detections:
    """Detections of one image: ``boxes`` (n, 4) as ``x1, y1, x2, y2`` pixels, scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self):
        return len(self.scores)


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


def box_iou_xyxy(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one corner box ``(4,)`` with ``(n, 4)`` corner boxes."""
    overlap_w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    overlap_h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    intersection = overlap_w * overlap_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return intersection / np.maximum(area + areas - intersection, 1e-12)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
               max_keep: int = 0) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first; drop boxes with IoU > threshold).

    Kept boxes come out in descending score order, so stopping after ``max_keep``
    (> 0) gives exactly the best ``max_keep`` of the full result, in far less
    time when an untrained network proposes every box for every class.
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and (max_keep <= 0 or len(keep) < max_keep):
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou_xyxy(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, np.int64)


def per_class_nms(dets: Detections, iou_threshold: float, max_keep: int = 0) -> Detections:
    """NMS separately for each class (boxes of different classes never suppress each other).

    Returns detections in descending score order, at most ``max_keep`` (> 0) of them.
    """
    if len(dets) == 0:
        return dets
    # Shifting each class into its own far-away region makes one NMS pass per-class exact.
    span = float(max(dets.boxes.max(), 1.0)) + 1.0
    shifted = dets.boxes + (dets.classes.astype(np.float32) * span)[:, None]
    keep = greedy_nms(shifted, dets.scores, iou_threshold, max_keep)
    return Detections(dets.boxes[keep], dets.scores[keep], dets.classes[keep])


def detect(outputs: Sequence[np.ndarray], image_w: float, image_h: float,
           settings: DetectionSettings) -> Detections:
    """Final detections of one image: candidates, per-class NMS, best ``max_detections``."""
    return per_class_nms(candidate_boxes(outputs, image_w, image_h, settings), settings.nms_iou,
                         settings.max_detections)


def to_coco_results(image_id: int, dets: Detections, category_ids: Sequence[int]) -> List[Dict]:
    """COCO result dicts (``bbox`` = x, y, w, h in pixels) with the dataset's category ids."""
    results = []
    for (x1, y1, x2, y2), score, cls in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                            dets.classes.tolist()):
        results.append({"image_id": int(image_id), "category_id": int(category_ids[cls]),
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(score), 6)})
    return results

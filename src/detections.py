"""Detections of one image, per-class NMS and COCO result records (numpy only).

Shared by every detector's decoding, the detection task's evaluation,
``postprocess.py`` and ``detect.py``.
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np


@dataclasses.dataclass
class Detections:
    """Detections of one image: ``boxes`` (n, 4) as ``x1, y1, x2, y2`` pixels, scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self):
        return len(self.scores)


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


def to_coco_results(image_id: int, dets: Detections, category_ids: Sequence[int]) -> List[Dict]:
    """COCO result dicts (``bbox`` = x, y, w, h in pixels) with the dataset's category ids."""
    results = []
    for (x1, y1, x2, y2), score, cls in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                            dets.classes.tolist()):
        results.append({"image_id": int(image_id), "category_id": int(category_ids[cls]),
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(score), 6)})
    return results

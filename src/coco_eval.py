"""COCO bbox evaluation (pycocotools COCOeval) with the standard 12-line summary.

``coco_evaluate`` writes the detections JSON atomically (if asked), runs
COCOeval over the evaluated images and returns the 12 summary numbers plus the
table exactly as pycocotools prints it. No detections at all is a valid
outcome (an untrained network): it evaluates to AP 0 instead of crashing in
``COCO.loadRes``.
"""
import contextlib
import copy
import dataclasses
import io
import json
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.datasets.coco import load_coco_annotations
from src.utils.io import atomic_write_text

# Names of COCOeval.stats entries, in order.
STAT_NAMES = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
TABLE_HEADER = "=============coco eval result========="


@dataclasses.dataclass
class CocoEvalResult:
    """The 12 COCOeval summary numbers and the printed table."""

    stats: np.ndarray
    table: str
    num_images: int
    num_detections: int

    def metrics(self) -> Dict[str, float]:
        """``{"mAP": .., "AP50": .., ...}`` (-1 where COCO has no ground truth for a row)."""
        return {name: float(value) for name, value in zip(STAT_NAMES, self.stats)}


def write_detections_json(path: str, detections: List[Dict]) -> str:
    """Write COCO result dicts to ``path`` atomically; return the path."""
    atomic_write_text(path, json.dumps(detections))
    return path


def _empty_results(gt: COCO) -> COCO:
    """A result set with no detections (``COCO.loadRes`` rejects an empty list)."""
    dt = COCO()
    dt.dataset = {"images": copy.deepcopy(gt.dataset.get("images", [])),
                  "categories": copy.deepcopy(gt.dataset.get("categories", [])),
                  "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def coco_evaluate(ground_truth: Union[str, COCO], detections: List[Dict],
                  image_ids: Optional[Sequence[int]] = None,
                  results_path: Optional[str] = None) -> CocoEvalResult:
    """Run COCOeval (bbox) on ``detections`` against ``ground_truth`` (file or COCO).

    ``image_ids`` restricts evaluation to the images that were run (default:
    every image of the ground truth). ``results_path`` also saves the detections.
    """
    gt = ground_truth if isinstance(ground_truth, COCO) else load_coco_annotations(ground_truth)
    if results_path:
        write_detections_json(results_path, detections)
    ids = sorted(int(i) for i in (image_ids if image_ids is not None else gt.getImgIds()))
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        dt = gt.loadRes(copy.deepcopy(detections)) if detections else _empty_results(gt)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    table = TABLE_HEADER + "\n" + summary.getvalue().rstrip("\n")
    return CocoEvalResult(np.asarray(evaluator.stats, np.float64), table, len(ids),
                          len(detections))

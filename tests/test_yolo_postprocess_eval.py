"""Detection post-processing and COCO evaluation on hand-made inputs, and postprocess.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401  (CPU setup before mindspore)
from src.coco_eval import STAT_NAMES, coco_evaluate
from src.config import load_config
from src.deploy.spec import write_sidecar
from src.detections import Detections, greedy_nms, per_class_nms, to_coco_results
from src.yolov3_tiny.postprocess import DetectionSettings, candidate_boxes, detect

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- NMS

def test_greedy_nms_hand_made():
    boxes = np.array([[0, 0, 10, 10],     # 0: best
                      [1, 1, 11, 11],     # 1: IoU with 0 = 81 / 119 = 0.68 -> suppressed
                      [20, 20, 30, 30],   # 2: apart -> kept
                      [5, 0, 15, 10]],    # 3: IoU with 0 = 50 / 150 = 0.33 -> kept
                     np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert greedy_nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert greedy_nms(boxes, scores, 0.3).tolist() == [0, 2]    # 0.33 > 0.3: suppressed too


def test_nms_keeps_boxes_at_or_below_the_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert greedy_nms(boxes, scores, 0.7).tolist() == [0, 1]    # IoU 0.68 <= 0.7: kept
    assert greedy_nms(boxes, scores, 0.6).tolist() == [0]


def test_nms_is_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], np.float32)
    dets = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 0, 1]))
    kept = per_class_nms(dets, 0.5)
    assert kept.classes.tolist() == [0, 1]
    np.testing.assert_allclose(kept.scores, [0.9, 0.7], rtol=1e-6)


# ---------------------------------------------------------------- decoded outputs -> detections

def decoded_rows(rows, grid=(1, 2, 1)):
    """(H, W, A, 5+C) array holding the given rows [x, y, w, h, conf, cls...]."""
    rows = np.asarray(rows, np.float32)
    return rows.reshape(*grid, rows.shape[-1])


def test_candidates_multi_label_and_argmax():
    # Two boxes in a 200x100 image, C = 3.
    out = decoded_rows([[0.5, 0.5, 0.2, 0.4, 0.8, 0.9, 0.5, 0.1],
                        [0.25, 0.5, 0.1, 0.2, 0.5, 0.1, 0.1, 0.12]])
    multi = candidate_boxes([out], 200, 100, DetectionSettings(score_threshold=0.001))
    # Box 0: classes 0 (0.9 > 0.15) and 1 (0.5); box 1: no class above 0.15.
    assert sorted(multi.classes.tolist()) == [0, 1]
    np.testing.assert_allclose(sorted(multi.scores.tolist()), [0.4, 0.72], rtol=1e-6)
    np.testing.assert_allclose(multi.boxes[0], [80, 30, 120, 70], rtol=1e-6)  # centre 100,50 size 40x40
    single = candidate_boxes([out], 200, 100, DetectionSettings(multi_label=False, score_threshold=0.05))
    # argmax: box 0 -> class 0 score 0.72; box 1 -> class 2 score 0.06.
    assert single.classes.tolist() == [0, 2]
    np.testing.assert_allclose(single.scores, [0.72, 0.06], rtol=1e-5)


def test_boxes_are_clipped_to_the_image():
    out = decoded_rows([[0.05, 0.95, 0.3, 0.3, 1.0, 1.0]], grid=(1, 1, 1))
    dets = candidate_boxes([out], 100, 50, DetectionSettings())
    np.testing.assert_allclose(dets.boxes[0], [0, 40, 20, 50], rtol=1e-6)


def test_detect_caps_detections_per_image_by_score():
    rows = [[0.05 + 0.1 * k, 0.5, 0.05, 0.05, 0.1 * (k + 1), 1.0] for k in range(9)]
    out = decoded_rows(rows, grid=(1, 9, 1))
    dets = detect([out], 100, 100, DetectionSettings(max_detections=3))
    np.testing.assert_allclose(dets.scores, [0.9, 0.8, 0.7], rtol=1e-6)
    assert len(detect([out], 100, 100, DetectionSettings(max_detections=0))) == 9


def test_coco_results_use_real_category_ids():
    dets = Detections(np.array([[10, 20, 40, 60]], np.float32), np.array([0.5], np.float32),
                      np.array([2]))
    result = to_coco_results(7, dets, [1, 3, 18])
    assert result == [{"image_id": 7, "category_id": 18, "bbox": [10.0, 20.0, 30.0, 40.0],
                       "score": 0.5}]


# ---------------------------------------------------------------- COCO evaluation

def ground_truth_as_detections(ann_file):
    with open(ann_file, encoding="utf-8") as f:
        doc = json.load(f)
    return doc, [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                  "score": 1.0} for a in doc["annotations"] if not a.get("iscrowd", 0)]


def test_ground_truth_as_detections_scores_ap_one(demo_data, tmp_path):
    ann_file = str(demo_data["coco"] / "annotations" / "instances_val2017.json")
    doc, dets = ground_truth_as_detections(ann_file)
    out = tmp_path / "sub" / "predictions.json"
    result = coco_evaluate(ann_file, dets, results_path=str(out))
    metrics = result.metrics()
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AR100"] == pytest.approx(1.0)
    assert result.num_images == len(doc["images"])
    assert json.loads(out.read_text()) == dets
    lines = result.table.splitlines()
    assert len(lines) == 13 and all(line.startswith(" Average ") for line in lines[1:])
    assert lines[1].endswith("= 1.000") and list(metrics) == list(STAT_NAMES)


def test_no_detections_evaluates_to_zero_with_the_table(demo_data):
    ann_file = str(demo_data["coco"] / "annotations" / "instances_val2017.json")
    result = coco_evaluate(ann_file, [])
    assert result.metrics()["mAP"] == 0.0 and result.num_detections == 0
    assert len(result.table.splitlines()) == 13


def test_evaluation_restricted_to_the_images_run(demo_data):
    ann_file = str(demo_data["coco"] / "annotations" / "instances_val2017.json")
    doc, dets = ground_truth_as_detections(ann_file)
    first = doc["images"][0]["id"]
    result = coco_evaluate(ann_file, [d for d in dets if d["image_id"] == first], image_ids=[first])
    assert result.num_images == 1 and result.metrics()["mAP"] == pytest.approx(1.0)


# ---------------------------------------------------------------- postprocess.py

def write_coco_set(folder, sizes_and_boxes):
    """Images of the given (w, h) and a COCO JSON with their boxes (category 1 or 3)."""
    (folder / "images").mkdir(parents=True)
    images, anns = [], []
    for k, ((w, h), boxes) in enumerate(sizes_and_boxes, start=1):
        name = f"{k:012d}.jpg"
        Image.new("RGB", (w, h), (90, 90, 90)).save(folder / "images" / name)
        images.append({"id": k, "file_name": name, "width": w, "height": h})
        for j, (box, cat) in enumerate(boxes):
            anns.append({"id": 100 * k + j, "image_id": k, "category_id": cat, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    (folder / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": categories}))
    return folder / "images", folder / "ann.json"


def test_postprocess_script_scores_hand_made_result_files(tmp_path):
    # image_size 64x64, 2 classes: outputs (1,2,2,3,7) and (1,4,4,3,7). Each ground-truth box
    # is written as a confident decoded prediction into the stride-16 map.
    img_dir, ann_file = write_coco_set(tmp_path, [((200, 100), [([20, 10, 60, 40], 1)]),
                                                  ((80, 160), [([10, 20, 30, 60], 3),
                                                               ([40, 100, 30, 40], 1)])])
    results = tmp_path / "result_Files"
    results.mkdir()
    for k, (w, h, boxes) in enumerate([(200, 100, [([20, 10, 60, 40], 0)]),
                                       (80, 160, [([10, 20, 30, 60], 1), ([40, 100, 30, 40], 0)])],
                                      start=1):
        large = np.zeros((1, 2, 2, 3, 7), np.float32)
        small = np.zeros((1, 4, 4, 3, 7), np.float32)
        for slot, ((x, y, bw, bh), cls) in enumerate(boxes):
            small[0, 0, 0, slot, :5] = [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h, 0.95]
            small[0, 0, 0, slot, 5 + cls] = 0.9
        large.tofile(results / f"{k:012d}_0.bin")
        small.tofile(results / f"{k:012d}_1.bin")
    base = [sys.executable, "postprocess.py", "--config_path=config/yolov3_tiny_coco.yaml",
            f"--result_path={results}", f"--img_path={img_dir}", f"--ann_file={ann_file}",
            "--image_size=64", "--num_classes=2", f"--output_dir={tmp_path / 'out'}"]
    proc = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mAP: 1.0000" in proc.stdout and "Average Precision" in proc.stdout

    # The config can come from an export's deploy spec (<model>.json) instead of --config_path.
    model_file = tmp_path / "yolo.mindir"
    model_file.write_bytes(b"")
    write_sidecar(load_config("config/yolov3_tiny_coco.yaml",
                              overrides=[("image_size", [64, 64]), ("num_classes", 2)]),
                  str(model_file))
    proc = subprocess.run([sys.executable, "postprocess.py", f"--model_file={model_file}"]
                          + base[3:6] + [base[-1]], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mAP: 1.0000" in proc.stdout

    (results / f"{2:012d}_1.bin").write_bytes(b"\0" * 40)        # wrong size
    proc = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "holds 10 float32 values" in proc.stderr
    assert "--image_size=64,64" in proc.stderr and "Traceback" not in proc.stderr

    (results / f"{2:012d}_1.bin").unlink()                          # missing
    proc = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "000000000002_1.bin" in proc.stderr
    assert "not found" in proc.stderr


def test_nms_stopping_at_max_keep_gives_the_same_best_boxes():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 200, (400, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 60, (400, 2))], axis=1)
    dets = Detections(boxes.astype(np.float32), rng.uniform(0, 1, 400).astype(np.float32),
                      rng.integers(0, 5, 400))
    full = per_class_nms(dets, 0.5)
    capped = per_class_nms(dets, 0.5, max_keep=20)
    assert len(full) > 20 and len(capped) == 20
    np.testing.assert_array_equal(capped.boxes, full.boxes[:20])
    assert (np.diff(full.scores) <= 0).all()


def test_postprocess_maps_letterboxed_predictions_back(tmp_path):
    """With preprocess.resize_mode=letterbox the outputs are on the canvas: boxes go back through it."""
    from src.datasets.letterbox import letterbox_geometry
    images = [((200, 100), [([20, 10, 60, 40], 1)]), ((80, 160), [([10, 20, 30, 60], 1)])]
    img_dir, ann_file = write_coco_set(tmp_path, images)
    results = tmp_path / "result_Files"
    results.mkdir()
    for k, ((w, h), boxes) in enumerate(images, start=1):
        scale, _, (pad_x, pad_y) = letterbox_geometry((h, w), (64, 64))
        large = np.zeros((1, 2, 2, 3, 7), np.float32)
        small = np.zeros((1, 4, 4, 3, 7), np.float32)
        for slot, ((x, y, bw, bh), _) in enumerate(boxes):
            cx, cy = (x + bw / 2) * scale + pad_x, (y + bh / 2) * scale + pad_y
            small[0, 0, 0, slot, :5] = [cx / 64, cy / 64, bw * scale / 64, bh * scale / 64, 0.95]
            small[0, 0, 0, slot, 5] = 0.9
        large.tofile(results / f"{k:012d}_0.bin")
        small.tofile(results / f"{k:012d}_1.bin")
    base = [sys.executable, "postprocess.py", "--config_path=config/yolov3_tiny_coco.yaml",
            f"--result_path={results}", f"--img_path={img_dir}", f"--ann_file={ann_file}",
            "--image_size=64", "--num_classes=2", f"--output_dir={tmp_path / 'out'}"]
    proc = subprocess.run(base + ["--preprocess.resize_mode=letterbox"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mAP: 1.0000" in proc.stdout
    proc = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mAP: 1.0000" not in proc.stdout  # read as a plain resize, the boxes are off

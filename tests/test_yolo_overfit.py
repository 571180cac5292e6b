"""OVERFIT TEST (slow, ~2-3 minutes on 2 CPU cores): YOLOv3-Tiny learns a handful of images.

train.py trains YOLOv3-Tiny from scratch on 8 demo COCO images (128x128, one
batch of 8 per step, 300 steps) through the real engine, then eval.py scores
the final checkpoint on the same 8 images with COCOeval. mAP@0.5 must exceed
0.5: targets, loss, decoding, NMS and evaluation all have to agree for that.

The recipe is honest, not tuned to the threshold: plain upstream loss and
optimizer; the learning rate is low (5e-5 after a 20-step warmup) because the
upstream loss is a sum over cells whose box term (GIoU on exp-decoded sizes) has
flat regions: with few objects per step, a large step throws a box size into a
region with no gradient back (upstream avoids it with a 4-epoch warmup over
~15k steps). Augmentation is kept, only milder (crop scale 0.8-1.2, aspect
jitter 0.1) so that 300 steps suffice. Typical result: mAP@0.5 about 0.8.
"""
import json
import os
import shutil
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401  (CPU setup before mindspore)

from test_deploy_cpp import app_build_dir  # noqa: F401  (session fixture: builds the app once)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IMAGES = 8
STEPS = 300
# Deploy outputs are the same float32 graph on another runtime: decoded maps agree to
# rounding (relative to the value), so the COCO metrics computed from them must be eval.py's.
MAP_TOLERANCE = 1e-4
METRIC_TOLERANCE = 1e-6


def result_maps(folder):
    """``{file name: float32 array}`` of a result_Files folder."""
    return {p.name: np.fromfile(p, np.float32) for p in sorted(Path(folder).iterdir())}


def checkpoint_maps(ckpt_file, model_file, images):
    """The checkpoint's decoding network on the deploy inputs: ``{<stem>_<i>.bin: array}``."""
    import mindspore as ms
    from src import checkpoint as ckpt
    from src.deploy.inputs import iter_network_inputs
    from src.deploy.spec import load_spec, spec_config
    from src.engine import build_network
    from src.tasks import get_task

    spec = load_spec(model_file)
    cfg = spec_config(spec)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = build_network(cfg)
    ckpt.load_network_weights(net, ckpt.read_checkpoint(str(ckpt_file))[0], source="test")
    infer = get_task(spec["task"]).export_network(cfg, net)
    infer.set_train(False)
    maps = {}
    for stem, array in iter_network_inputs(spec, str(images)):
        for i, out in enumerate(infer(ms.Tensor(array[None]))):
            maps[f"{stem}_{i}.bin"] = out.asnumpy().reshape(-1)
    return maps


def max_map_difference(result_dir, reference):
    """Largest difference relative to max(1, |value|): exp-decoded box sizes can be large."""
    got = result_maps(result_dir)
    assert sorted(got) == sorted(reference) and got
    return max(float((np.abs(got[name] - reference[name])
                      / np.maximum(1.0, np.abs(reference[name]))).max()) for name in got)


def small_training_set(coco_dir, target, count):
    """The first ``count`` demo training images without crowd or degenerate boxes, plus JSON."""
    with open(coco_dir / "annotations" / "instances_train2017.json", encoding="utf-8") as f:
        doc = json.load(f)
    by_image = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)

    def clean(img):
        anns = by_image.get(img["id"], [])
        return bool(anns) and all(not a["iscrowd"] and a["bbox"][2] > 1 and a["bbox"][3] > 1
                                  for a in anns)

    chosen = [img for img in doc["images"] if clean(img)][:count]
    (target / "images").mkdir(parents=True)
    for img in chosen:
        shutil.copy(coco_dir / "train2017" / img["file_name"], target / "images")
    ids = {img["id"] for img in chosen}
    doc["images"] = chosen
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
    (target / "ann.json").write_text(json.dumps(doc))
    return target / "images", target / "ann.json"


@pytest.mark.slow
def test_overfit_a_handful_of_images_to_map50_above_half(demo_data, tmp_path, request):
    images, ann = small_training_set(demo_data["coco"], tmp_path / "small", NUM_IMAGES)
    data_flags = [f"--data.train_dir={images}", f"--data.train_ann_file={ann}",
                  f"--data.eval_dir={images}", f"--data.eval_ann_file={ann}",
                  "--image_size=128", f"--batch_size={NUM_IMAGES}", "--data.num_workers=1",
                  f"--output_dir={tmp_path / 'out'}"]
    train = [sys.executable, "train.py", "--config_path=config/yolov3_tiny_coco.yaml",
             *data_flags, "--run_name=overfit", "--detection.multi_scale=[]",
             f"--epochs={STEPS}", "--lr.schedule=constant", "--lr.base_lr=0.00005",
             "--lr.warmup_epochs=20", "--optimizer.weight_decay=0.0001",
             "--detection.crop_scale=0.8,1.2", "--detection.jitter=0.1",
             f"--checkpoint.save_every_epochs={STEPS}", "--log_interval=1", "--seed=1"]
    start = time.time()
    proc = subprocess.run(train, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "epoch[0], iter[1], loss:" in proc.stdout  # upstream-style progress lines
    checkpoint = tmp_path / "out" / "overfit" / "checkpoints"
    assert len(list(checkpoint.glob("*.ckpt"))) == 1
    evaluate = [sys.executable, "eval.py", "--config_path=config/yolov3_tiny_coco.yaml",
                *data_flags, "--run_name=overfit_eval", f"--checkpoint_path={checkpoint}"]
    proc = subprocess.run(evaluate, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "overfit_eval" / "eval_results.json").read_text())
    metrics = next(iter(results.values()))
    print(f"overfit: mAP@0.5 {metrics['AP50']:.3f}, mAP {metrics['mAP']:.3f} after {STEPS} steps "
          f"in {time.time() - start:.0f} s")
    assert "Average Precision  (AP) @[ IoU=0.50 " in proc.stdout and "mAP: " in proc.stdout
    assert metrics["num_images"] == NUM_IMAGES
    assert metrics["AP50"] > 0.5, proc.stdout[-2000:]

    # Deploy path: the ONNX export run by infer.py must give the checkpoint network's
    # decoded maps on the same inputs, and postprocess.py then eval.py's metrics exactly.
    ckpt_file = next(checkpoint.glob("*.ckpt"))
    export_base = tmp_path / "deploy" / "yolo"
    export = [sys.executable, "export.py", "--config_path=config/yolov3_tiny_coco.yaml",
              "--image_size=128", f"--checkpoint_path={ckpt_file}", "--file_format=ONNX",
              f"--file_name={export_base}"]
    proc = subprocess.run(export, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # onnxruntime pinned: the default (auto) may pick OpenCV, whose Winograd rounds differently.
    infer = [sys.executable, "infer.py", f"--model_file={export_base}", f"--data_path={images}",
             f"--output_path={tmp_path / 'deploy'}", "--onnx_runtime=onnxruntime"]
    proc = subprocess.run(infer, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    post = [sys.executable, "postprocess.py", f"--model_file={export_base}.onnx",
            f"--result_path={tmp_path / 'deploy' / 'result_Files'}", f"--img_path={images}",
            f"--ann_file={ann}", f"--output_dir={tmp_path / 'out'}", "--run_name=deploy_post"]
    proc = subprocess.run(post, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    deployed = json.loads((tmp_path / "out" / "deploy_post" / "metrics.json").read_text())
    print(f"deploy (ONNX + postprocess.py): mAP {deployed['mAP']:.6f} vs eval.py {metrics['mAP']:.6f}")
    worst = max_map_difference(tmp_path / "deploy" / "result_Files",
                               checkpoint_maps(ckpt_file, f"{export_base}.onnx", images))
    print(f"deploy (ONNX): decoded maps vs the checkpoint network, max difference {worst:.2e}")
    assert worst <= MAP_TOLERANCE
    assert deployed["num_images"] == NUM_IMAGES
    for name in ("mAP", "AP50", "AR100"):
        assert deployed[name] == pytest.approx(metrics[name], abs=METRIC_TOLERANCE), name

    # The C++ app (OpenCV DNN, CPU backend) through run_infer_310.sh: same agreement.
    # Requested only now, so that a machine without the build tools still runs the rest.
    app_build_dir = request.getfixturevalue("app_build_dir")
    script = ["bash", "scripts/run_infer_310.sh", f"{export_base}.onnx", str(images), str(ann),
              "--backend=cpu", f"--output_dir={tmp_path}", "--run_name=cpp"]
    proc = subprocess.run(script, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, INFER_BUILD_DIR=str(app_build_dir)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Average Precision  (AP) @[ IoU=0.50 " in (tmp_path / "cpp" / "acc.log").read_text()
    cpp = json.loads((tmp_path / "cpp" / "postprocess" / "metrics.json").read_text())
    print(f"deploy (C++ app, OpenCV DNN + postprocess.py): mAP {cpp['mAP']:.6f} vs eval.py "
          f"{metrics['mAP']:.6f}")
    worst = max_map_difference(tmp_path / "cpp" / "result_Files",
                               result_maps(tmp_path / "deploy" / "result_Files"))
    print(f"deploy (C++ app): decoded maps vs onnxruntime, max difference {worst:.2e}")
    assert worst <= MAP_TOLERANCE
    assert cpp["num_images"] == NUM_IMAGES
    for name in ("mAP", "AP50", "AR100"):
        assert cpp[name] == pytest.approx(metrics[name], abs=METRIC_TOLERANCE), name

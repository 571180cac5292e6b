"""Adding a model touches only its own files: two toy models from ``tests/toy_models``.

``ZOO_PLUGINS=tests/toy_models`` registers a toy classifier and a toy detector
(tiny networks, 32x32 / 64x64 inputs) without a line of ``src`` naming them.
Each runs through every entry point as a user would: train.py -> eval.py ->
export.py (MINDIR and ONNX) -> infer.py on both exports -> postprocess.py, and
the deploy numbers must be eval.py's. The classifier must beat chance so that
the agreement is not the trivial one of a collapsed net; for the detector the
deploy paths must reproduce eval.py's detections box for box.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "toy_models"
ENV = dict(os.environ, ZOO_PLUGINS=str(PLUGIN))

CLASSIFIER_CONFIG = """\
model: toy_classifier
dataset: cifar10
num_classes: 10
image_size: [32, 32]
batch_size: 16
epochs: 3
lr: {schedule: constant, base_lr: 0.05, warmup_epochs: 0}
checkpoint: {keep_max: 1}
"""
DETECTOR_CONFIG = """\
model: toy_detector
dataset: coco
num_classes: 80
image_size: [64, 64]
batch_size: 8
epochs: 40
data: {num_workers: 1}
lr: {schedule: constant, base_lr: 0.02, warmup_epochs: 0}
checkpoint: {keep_max: 1, save_every_epochs: 40}
"""


def run(script, *args, expect=0):
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == expect, (f"{script} exited {proc.returncode}:\n"
                                       f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def train_eval_export(tmp_path, config_text, data_flags):
    """Train, evaluate and export both formats; return (eval metrics, export base path)."""
    config = tmp_path / "toy.yaml"
    config.write_text(config_text)
    run("train.py", f"--config_path={config}", *data_flags, f"--output_dir={tmp_path}",
        "--run_name=train")
    run_config = tmp_path / "train" / "config.yaml"
    checkpoint = sorted((tmp_path / "train" / "checkpoints").glob("*.ckpt"))[-1]
    run("eval.py", f"--config_path={run_config}", f"--checkpoint_path={checkpoint}",
        f"--output_dir={tmp_path}", "--run_name=eval")
    metrics = json.loads((tmp_path / "eval" / "eval_results.json").read_text())[str(checkpoint)]
    base = tmp_path / "export" / "toy"
    for file_format in ("MINDIR", "ONNX"):
        run("export.py", f"--config_path={run_config}", f"--checkpoint_path={checkpoint}",
            f"--file_format={file_format}", f"--file_name={base}")
    return metrics, base


def result_arrays(folder):
    return {p.name: np.fromfile(p, np.float32) for p in sorted(folder.iterdir())}


# These tests check each export to float rounding: the ONNX file runs on onnxruntime, pinned,
# because infer.py's default (auto) may pick OpenCV, whose Winograd rounds differently
# (test_deploy_e2e checks the default).
PINNED_RUNTIME = {"onnx": ["--onnx_runtime=onnxruntime"], "mindir": []}


def assert_same_outputs(onnx_dir, mindir_dir):
    onnx, mindir = result_arrays(onnx_dir), result_arrays(mindir_dir)
    assert sorted(onnx) == sorted(mindir) and onnx
    worst = max(float(np.abs(onnx[name] - mindir[name]).max()) for name in onnx)
    assert worst <= 1e-5, f"ONNX and MINDIR outputs differ by {worst:.2e}"


def assert_same_detections(got, want):
    """The same COCO detections (boxes to 0.02 px, scores to 1e-5: float rounding only)."""
    def key(d):
        return (d["image_id"], d["category_id"], -round(d["score"], 4),
                [round(v) for v in d["bbox"]])
    assert len(got) == len(want)
    for a, b in zip(sorted(got, key=key), sorted(want, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert np.allclose(a["bbox"], b["bbox"], atol=0.02), (a, b)


def test_the_toy_models_are_named_nowhere_in_src():
    hits = [str(p) for p in (REPO / "src").rglob("*.py") if "toy_" in p.read_text()]
    assert not hits, hits
    from src.registry import list_models  # without ZOO_PLUGINS they are not registered
    assert "toy_classifier" not in list_models() or os.environ.get("ZOO_PLUGINS")


@pytest.mark.parametrize("entry,message", [
    ("no_such_plugin_module", "cannot import ZOO_PLUGINS entry 'no_such_plugin_module'"),
    ("/no/such/plugin.py", "ZOO_PLUGINS entry '/no/such/plugin.py' not found"),
])
def test_a_bad_plugin_entry_is_one_line(entry, message, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), f"--output_dir={tmp_path}"],
                          cwd=REPO, env=dict(os.environ, ZOO_PLUGINS=entry), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_toy_classifier_train_eval_export_infer_postprocess(demo_data, tmp_path):
    cifar = demo_data["cifar10"]
    metrics, base = train_eval_export(tmp_path, CLASSIFIER_CONFIG, [f"--data_dir={cifar}"])
    assert metrics["top_1_accuracy"] > 0.3, metrics  # chance is 0.1
    run("preprocess.py", f"--model_file={base}.mindir", f"--data_path={cifar}",
        f"--output_path={tmp_path / 'pre'}")
    for kind in ("onnx", "mindir"):
        run("infer.py", f"--model_file={base}.{kind}", f"--data_path={cifar}",
            f"--output_path={tmp_path / kind}", *PINNED_RUNTIME[kind])
        out = run("postprocess.py", f"--model_file={base}.{kind}",
                  f"--result_path={tmp_path / kind / 'result_Files'}",
                  f"--label_file={tmp_path / 'pre' / 'label.txt'}").stdout
        top1 = int(out.split("top1_correct=")[1].split(",")[0])
        top5 = int(out.split("top5_correct=")[1].split(",")[0])
        total = metrics["num_samples"]
        assert f"total={total}," in out
        assert top1 == round(metrics["top_1_accuracy"] * total), out
        assert top5 == round(metrics["top_5_accuracy"] * total), out
    assert_same_outputs(tmp_path / "onnx" / "result_Files", tmp_path / "mindir" / "result_Files")

    # detect.py refuses a classifier's export with one line, writing nothing.
    proc = run("detect.py", f"--model_file={base}.onnx", f"--input={demo_data['coco'] / 'val2017'}",
               f"--output={tmp_path / 'detect'}", expect=2)
    assert "detect.py needs a detection model" in proc.stderr and "toy_classifier" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "detect").exists()


@pytest.mark.slow
def test_toy_detector_train_eval_export_infer_postprocess(demo_data, tmp_path):
    coco = demo_data["coco"]
    images, ann = coco / "train2017", coco / "annotations" / "instances_train2017.json"
    data_flags = [f"--data.train_dir={images}", f"--data.train_ann_file={ann}",
                  f"--data.eval_dir={images}", f"--data.eval_ann_file={ann}"]
    metrics, base = train_eval_export(tmp_path, DETECTOR_CONFIG, data_flags)
    # Not a trivial agreement: there are boxes, and each deploy path must give eval.py's
    # boxes one for one, not only its (here low) mAP.
    assert metrics["num_detections"] > 0, metrics
    reference = json.loads(Path(metrics["predictions_file"]).read_text())
    for kind in ("onnx", "mindir"):
        run("infer.py", f"--model_file={base}.{kind}", f"--data_path={images}",
            f"--output_path={tmp_path / kind}", *PINNED_RUNTIME[kind])
        run("postprocess.py", f"--model_file={base}.{kind}",
            f"--result_path={tmp_path / kind / 'result_Files'}", f"--img_path={images}",
            f"--ann_file={ann}", f"--output_dir={tmp_path}", f"--run_name=post_{kind}")
        deployed = json.loads((tmp_path / f"post_{kind}" / "metrics.json").read_text())
        assert deployed["num_images"] == metrics["num_images"]
        for name in ("mAP", "AP50", "AR100"):
            assert deployed[name] == pytest.approx(metrics[name], abs=1e-6), (kind, name)
        assert_same_detections(
            json.loads((tmp_path / f"post_{kind}" / "predictions.json").read_text()), reference)
    assert_same_outputs(tmp_path / "onnx" / "result_Files", tmp_path / "mindir" / "result_Files")

    # detect.py takes everything from the export and the toy spec (its own score default).
    out_dir = tmp_path / "detect"
    run("detect.py", f"--model_file={base}.onnx", f"--input={coco / 'val2017'}",
        f"--output={out_dir}")
    results = json.loads((out_dir / "detections.json").read_text())
    assert len(results) == len(list((coco / "val2017").iterdir()))
    scores = [d["score"] for r in results for d in r["detections"]]
    assert scores and min(scores) >= 0.2

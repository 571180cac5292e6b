"""Every classifier end to end on CPU: train 1 epoch on demo data -> eval.py ->
export.py (MINDIR + ONNX with their .json specs) -> deploy, then the accuracies
must agree with eval.py's on the same images:

* the Python deploy path (src/deploy/runner.py) on the ONNX export (onnxruntime, and
  OpenCV DNN: --onnx_runtime=opencv) and the MINDIR export (MindSpore), scored by the
  classification postprocess;
* scripts/run_infer_310.sh --backend=cpu: preprocess.py (label file; CIFAR-10
  .bin inputs), the C++ app with OpenCV DNN, postprocess -> acc.log.

Small inputs and a cut-down training set keep it quick; the accuracy is low
after one or two epochs, but for Tiny-DarkNet and MobileNetV1 above chance
(each trains a second epoch for that; VGG16 stays near chance in this budget), and
it has to be the same number on every path. The logits of
the C++ app are also compared with onnxruntime's.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401
from src.deploy.postprocess_classification import classification_accuracy
from src.deploy.preprocess import preprocess
from src.deploy.runner import run_inference
from src.deploy.spec import load_spec
from src.registry import list_models
from test_deploy_cpp import app_build_dir  # noqa: F401  (session fixture: builds the app once)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "run_infer_310.sh"
# One dataset layout and preprocessing variant per model: shorter-side resize
# + crop (full demo training set), CIFAR-10 .bin inputs, and VGG's square
# resize (12 training images per class, with BatchNorm).
NUM_CLASSES = 10
CASES = {
    "tinydarknet": ("config/tinydarknet_imagenet.yaml", "imagenet",
                    ["--image_size=64,64", "--data.resize_eval=73", "--lr.base_lr=0.05",
                     "--epochs=2"]),
    "mobilenetv1": ("config/mobilenetv1_cifar10.yaml", "cifar10",
                    ["--image_size=32,32", "--lr.base_lr=0.05", "--epochs=2"]),
    "vgg16": ("config/vgg16_imagenet.yaml", "small_imagenet",
              ["--image_size=32,32", "--data.resize_eval=40", "--lr.base_lr=0.01",
               "--net.batch_norm=true", "--net.dropout=0", "--epochs=4"]),
}
COMMON = [f"--num_classes={NUM_CLASSES}", "--epochs=1", "--batch_size=16", "--lr.warmup_epochs=0",
          "--data.cutout=0", "--data.color_jitter=0", "--data.hue_jitter=0", "--seed=3",
          "--checkpoint.keep_max=1"]
TOP1_POINTS = 0.5  # allowed top-1 difference, in percentage points
# eval.py's top-1 must be at least this many times chance: agreement between two
# collapsed nets (one class everywhere) would prove nothing.
ABOVE_CHANCE = 2.0


def test_every_classifier_has_a_case():
    assert sorted(CASES) == list_models("classification")


def run_entry_point(script: str, *args) -> str:
    """Run train.py / eval.py / export.py in a fresh interpreter (as users do); return stdout.

    Separate processes also avoid MindSpore compiling a second training graph
    in one process, which fails with a graph-cache error on 2.10.
    """
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def small_imagenet(tmp_path_factory, demo_data):
    """Demo ImageNet with 12 training images per class (all 100 val images)."""
    root = tmp_path_factory.mktemp("small_imagenet")
    shutil.copytree(demo_data["imagenet"] / "val", root / "val")
    for folder in sorted((demo_data["imagenet"] / "train").iterdir()):
        (root / "train" / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:12]:
            shutil.copy(image, root / "train" / folder.name / image.name)
    return root


@pytest.fixture(scope="module", params=sorted(CASES))
def deployed(request, tmp_path_factory, small_imagenet, demo_data):
    """Trained, evaluated and exported model: paths and eval.py's accuracy."""
    model = request.param
    config, data, overrides = CASES[model]
    work = tmp_path_factory.mktemp(f"e2e_{model}")
    data_dir = small_imagenet if data == "small_imagenet" else demo_data[data]
    run_entry_point("train.py", f"--config_path={config}", f"--data_dir={data_dir}",
                    f"--output_dir={work}", "--run_name=train", *COMMON, *overrides)
    run_config = work / "train" / "config.yaml"
    checkpoint = sorted((work / "train" / "checkpoints").glob("*.ckpt"))[-1]
    run_entry_point("eval.py", f"--config_path={run_config}", f"--checkpoint_path={checkpoint}",
                    f"--output_dir={work}", "--run_name=eval")
    metrics = json.loads((work / "eval" / "eval_results.json").read_text())[str(checkpoint)]
    for file_format in ("MINDIR", "ONNX"):
        run_entry_point("export.py", f"--config_path={run_config}", f"--checkpoint_path={checkpoint}",
                        f"--file_format={file_format}", f"--file_name={work / 'export' / model}")
    eval_data = data_dir if data == "cifar10" else data_dir / "val"
    return {"model": model, "work": work, "data": eval_data, "eval": metrics,
            "mindir": str(work / "export" / f"{model}.mindir"),
            "onnx": str(work / "export" / f"{model}.onnx")}


def assert_agrees(metrics, reference, what, model):
    top1 = 100 * metrics["top_1_accuracy"]
    want = 100 * reference["top_1_accuracy"]
    print(f"{what}: top-1 {top1:.2f} % / top-5 {100 * metrics['top_5_accuracy']:.2f} %; "
          f"eval.py top-1 {want:.2f} % / top-5 {100 * reference['top_5_accuracy']:.2f} %")
    assert reference["top_1_accuracy"] >= ABOVE_CHANCE / NUM_CLASSES, \
        f"{what}: eval.py top-1 {want:.2f} % is near chance; the agreement would be trivial"
    assert abs(top1 - want) <= TOP1_POINTS, what
    assert metrics["top_5_accuracy"] == pytest.approx(reference["top_5_accuracy"], abs=0.005), what
    assert metrics["total"] == reference["num_samples"]


def test_python_runner_agrees_with_eval(deployed):
    work = deployed["work"]
    spec = load_spec(deployed["mindir"])  # from the .json export wrote
    assert spec["model"] == deployed["model"] and spec["num_classes"] == NUM_CLASSES
    prepared = preprocess(spec, str(deployed["data"]), str(work / "pre"), log=lambda _: None)
    result_dirs, logs = {}, []
    # None: infer.py's default, which for ONNX on CPU is --onnx_runtime=auto.
    for kind, runtime in (("onnx", "onnxruntime"), ("onnx", "opencv"), ("onnx", None),
                          ("mindir", None)):
        name = f"{kind}_{runtime}" if runtime else f"{kind}_default"
        out = work / f"python_{name}"
        summary = run_inference(deployed[kind], prepared["inputs"], spec, str(out),
                                log=logs.append, onnx_runtime=runtime)
        assert summary["count"] == deployed["eval"]["num_samples"]
        timing = (out / "time_Result" / "test_perform_static.txt").read_text()
        assert re.fullmatch(r"NN inference cost average time: [\d.]+ ms of infer_count \d+\n", timing)
        metrics = classification_accuracy(summary["result_dir"], prepared["label_file"],
                                          NUM_CLASSES)
        assert_agrees(metrics, deployed["eval"], f"{deployed['model']} Python runner ({name})",
                      deployed["model"])
        result_dirs[name] = Path(summary["result_dir"])
    # --onnx_runtime=opencv writes onnxruntime's logits, up to rounding (Winograd for VGG16).
    files = sorted(p.name for p in result_dirs["onnx_onnxruntime"].iterdir())
    assert files == sorted(p.name for p in result_dirs["onnx_opencv"].iterdir())
    # The default ran the ONNX file on the runtime its log line names: that runtime's files.
    picked = next(line.split()[2] for line in logs if line.startswith("ONNX runtime: "))
    assert files == sorted(p.name for p in result_dirs["onnx_default"].iterdir())
    for file in files:
        np.testing.assert_array_equal(np.fromfile(result_dirs["onnx_default"] / file, np.float32),
                                      np.fromfile(result_dirs[f"onnx_{picked}"] / file, np.float32))
    for file in files:
        want = np.fromfile(result_dirs["onnx_onnxruntime"] / file, np.float32)
        np.testing.assert_allclose(np.fromfile(result_dirs["onnx_opencv"] / file, np.float32), want,
                                   rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_cpp_app_agrees_with_eval_and_onnxruntime(deployed, app_build_dir):  # noqa: F811
    work = deployed["work"]
    label = work / "script_label.txt"  # absent: the script's preprocess stage writes it
    env = dict(os.environ, INFER_BUILD_DIR=str(app_build_dir))
    proc = subprocess.run(["bash", str(SCRIPT), deployed["mindir"], str(deployed["data"]), str(label),
                           "--backend=cpu", f"--output_dir={work}", "--run_name=cpp"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = work / "cpp"
    acc = (run / "acc.log").read_text()
    top1 = re.search(r"top1_correct=(\d+), acc=([\d.]+)% \(top-1\)", acc)
    top5 = re.search(r"top5_correct=(\d+), acc=([\d.]+)% \(top-5\)", acc)
    total = int(re.search(r"total=(\d+)", acc).group(1))
    metrics = {"top_1_accuracy": int(top1.group(1)) / total,
               "top_5_accuracy": int(top5.group(1)) / total, "total": total}
    assert_agrees(metrics, deployed["eval"], f"{deployed['model']} C++ app (OpenCV DNN)",
                  deployed["model"])
    assert "NN inference cost average time" in (run / "time_Result" / "test_perform_static.txt").read_text()

    # Same logits as onnxruntime on the Python path (same preprocessing, bit for bit).
    reference = work / "python_onnx" / "result_Files"
    if reference.is_dir():
        cpp_files = sorted((run / "result_Files").iterdir())
        assert [p.name for p in cpp_files] == sorted(p.name for p in reference.iterdir())
        worst = max(float(np.abs(np.fromfile(p, np.float32) -
                                 np.fromfile(reference / p.name, np.float32)).max()) for p in cpp_files)
        print(f"{deployed['model']}: OpenCV DNN vs onnxruntime max logit difference {worst:.2e}")
        assert worst <= 1e-3

"""YOLOv3-Tiny command lines: export.py (decoded outputs) and detect.py (drawn images + JSON;
a classifier refused with one line)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401  (CPU setup before mindspore)
from src import checkpoint as ckpt
from src.config import load_config
from src.datasets.coco import COCO_CLASS_NAMES
from src.engine import build_network
from src.export import ExportedModel
from test_deploy_cpp import app_build_dir  # noqa: F401  (session fixture: builds the app once)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, timeout=300):
    proc = subprocess.run([sys.executable] + args, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """A freshly initialised YOLOv3-Tiny (80 classes) saved as a checkpoint."""
    cfg = load_config("config/yolov3_tiny_coco.yaml", overrides=[("image_size", [64, 64])])
    path = tmp_path_factory.mktemp("yolo_ckpt") / "yolo.ckpt"
    ckpt.save_checkpoint(str(path), build_network(cfg), meta={"epoch": 0, "model": "yolov3_tiny",
                                                              "dataset": "coco", "num_classes": 80})
    return path


@pytest.fixture(scope="module")
def exported_onnx(random_checkpoint, tmp_path_factory):
    """export.py run on the checkpoint: ONNX of the decoding network at 64x96."""
    base = tmp_path_factory.mktemp("yolo_export") / "yolo"
    proc = run(["export.py", "--config_path=config/yolov3_tiny_coco.yaml",
                f"--checkpoint_path={random_checkpoint}", "--file_format=ONNX",
                "--image_size=64,96", f"--export.file_name={base}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return str(base) + ".onnx"


def test_export_gives_decoded_maps_of_the_real_input_size(exported_onnx):
    outputs = ExportedModel(exported_onnx)(np.zeros((1, 3, 64, 96), np.float32))
    assert [o.shape for o in outputs] == [(1, 2, 3, 3, 85), (1, 4, 6, 3, 85)]
    for out in outputs:
        assert (out[..., 4:] >= 0).all() and (out[..., 4:] <= 1).all()   # sigmoids
        assert (out[..., 2:4] > 0).all()                                  # exp sizes
        assert (out[..., 0:2] > -0.2).all() and (out[..., 0:2] < 1.2).all()


def test_opencv_runtime_gives_onnxruntimes_outputs_in_onnx_order(exported_onnx):
    """infer.py --onnx_runtime=opencv: the two decoded maps (different sizes) in ONNX order."""
    batch = np.random.default_rng(3).standard_normal((1, 3, 64, 96)).astype(np.float32)
    expected = ExportedModel(exported_onnx)(batch)
    got = ExportedModel(exported_onnx, onnx_runtime="opencv")(batch)
    assert [o.shape for o in got] == [o.shape for o in expected] == [(1, 2, 3, 3, 85),
                                                                      (1, 4, 6, 3, 85)]
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)


def test_cpp_app_runs_the_export_like_onnxruntime(exported_onnx, demo_data, app_build_dir, tmp_path):
    """The C++ app's OpenCV DNN backend runs the decoded 5-D outputs, in ONNX order."""
    import onnxruntime as ort
    from src.deploy.spec import app_flags, load_spec
    images = demo_data["coco"] / "val2017"
    proc = subprocess.run([str(app_build_dir / "main"), "--backend=cpu", f"--model_path={exported_onnx}",
                           f"--dataset_path={images}", f"--output_dir={tmp_path}",
                           f"--dump_inputs={tmp_path / 'inputs'}", *app_flags(load_spec(exported_onnx))],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    session = ort.InferenceSession(exported_onnx, providers=["CPUExecutionProvider"])
    stems = sorted(p.stem for p in images.iterdir())
    worst = 0.0
    for stem in stems:
        x = np.fromfile(tmp_path / "inputs" / f"{stem}.bin", np.float32).reshape(1, 3, 64, 96)
        for i, want in enumerate(session.run(None, {session.get_inputs()[0].name: x})):
            got = np.fromfile(tmp_path / "result_Files" / f"{stem}_{i}.bin", np.float32)
            assert got.size == want.size, f"output {i} of {stem} has the wrong size"
            worst = max(worst, float(np.abs(got - want.reshape(-1)).max()))
    print(f"YOLOv3-Tiny: OpenCV DNN vs onnxruntime on {len(stems)} images, max difference {worst:.2e}")
    assert worst <= 1e-4


@pytest.fixture()
def two_images(demo_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((demo_data["coco"] / "val2017").iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    return folder


def check_detect_outputs(out_dir, in_dir):
    names = sorted(p.name for p in in_dir.iterdir())
    results = json.loads((out_dir / "detections.json").read_text())
    assert [r["file"] for r in results] == names
    for result in results:
        with Image.open(in_dir / result["file"]) as original, \
                Image.open(out_dir / result["file"]) as drawn:
            assert drawn.size == original.size == (result["width"], result["height"])
        for det in result["detections"]:
            x, y, w, h = det["bbox"]
            assert 0 <= x and 0 <= y and x + w <= result["width"] + 0.01
            assert det["score"] >= 0.2 and isinstance(det["class"], str)
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    return results


def test_detect_with_a_checkpoint_writes_images_and_json(random_checkpoint, two_images, tmp_path):
    out_dir = tmp_path / "out"
    proc = run(["detect.py", "--config_path=config/yolov3_tiny_coco.yaml",
                f"--checkpoint_path={random_checkpoint}", f"--input={two_images}",
                f"--output={out_dir}", "--image_size=64", "--detection.score_threshold=0.2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = check_detect_outputs(out_dir, two_images)
    # An untrained net scores about sigmoid(0)^2 = 0.25 everywhere: boxes are drawn.
    assert sum(len(r["detections"]) for r in results) > 0
    assert all(d["class"] in COCO_CLASS_NAMES for r in results for d in r["detections"])
    assert "object(s)" in proc.stdout


def test_detect_with_an_exported_model(exported_onnx, two_images, tmp_path):
    out_dir = tmp_path / "out_onnx"
    image = sorted(two_images.iterdir())[0]
    proc = run(["detect.py", "--config_path=config/yolov3_tiny_coco.yaml",
                f"--model_file={exported_onnx}", f"--input={image}", f"--output={out_dir}",
                "--image_size=64,96", "--detection.score_threshold=0.2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out_dir / "detections.json").read_text())
    assert [r["file"] for r in results] == [image.name]
    # The wrong input size for the exported graph is one clear error line.
    proc = run(["detect.py", "--config_path=config/yolov3_tiny_coco.yaml",
                f"--model_file={exported_onnx}", f"--input={image}", f"--output={out_dir}",
                "--image_size=64,64"])
    # (refused before the model runs: the export's deploy spec says 64x96)
    assert proc.returncode == 2 and "image_size=[64, 96]" in proc.stderr
    assert "--image_size=64,96" in proc.stderr and "Traceback" not in proc.stderr


def test_detect_refuses_missing_input(tmp_path, random_checkpoint):
    proc = run(["detect.py", "--config_path=config/yolov3_tiny_coco.yaml",
                f"--checkpoint_path={random_checkpoint}", f"--input={tmp_path / 'none'}",
                f"--output={tmp_path / 'out'}"])
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory):
    """A freshly initialised Tiny-DarkNet (10 classes) saved as a checkpoint."""
    cfg = load_config("config/tinydarknet_cifar10.yaml",
                      overrides=[("image_size", [32, 32]), ("data.cutout", 0)])
    path = tmp_path_factory.mktemp("cls_ckpt") / "tinydarknet.ckpt"
    ckpt.save_checkpoint(str(path), build_network(cfg), meta={"epoch": 0, "model": "tinydarknet",
                                                              "dataset": "cifar10",
                                                              "num_classes": 10})
    return path


@pytest.mark.parametrize("config", ["config/yolov3_tiny_coco.yaml", "config/tinydarknet_cifar10.yaml"])
def test_detect_refuses_a_classifier(config, classifier_checkpoint, two_images, tmp_path):
    out_dir = tmp_path / "out"
    proc = run(["detect.py", f"--config_path={config}", f"--checkpoint_path={classifier_checkpoint}",
                f"--input={two_images}", f"--output={out_dir}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "detect.py needs a detection model" in lines[0]
    assert "tinydarknet" in lines[0] and "classification" in lines[0]
    assert not out_dir.exists()

"""The C++ inference app (ascend310_infer/) and scripts/run_infer_310.sh.

* build.sh builds the app (cpu backend; the ascend310 backend is reported as
  skipped without MindSpore's C++ API) and explains missing tools;
* the app's preprocessing equals the Python eval transforms on the demo
  ImageNet/COCO images and on odd images (grayscale, RGBA PNG, tiny);
* the app and the script fail with one clear line (exit 2 for usage, 1 otherwise).

Needs cmake, a C++ compiler and OpenCV's development files
(apt-get install -y cmake g++ libopencv-dev, which .ci/run does); without
them these tests are skipped with that reason.
"""
import glob
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401
from src.deploy.inputs import image_transform
from src.deploy.spec import app_flags, load_spec, write_sidecar

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO / "ascend310_infer" / "build.sh"
SCRIPT = REPO / "scripts" / "run_infer_310.sh"
HAS_ASCEND = bool(glob.glob("/dev/davinci[0-9]*"))
# One 8-bit intensity level after normalisation (1 / smallest std, 57.12): JPEG
# decoders of different libjpeg builds may differ by that much. On this
# project's reference setup (Debian 12 OpenCV 4.6 vs MindSpore 2.10) the
# difference measured is exactly 0.
PREPROCESS_TOLERANCE = 1.0 / 57.12


def missing_build_tools() -> str:
    """Why the app cannot be built here ('' when it can)."""
    if not shutil.which("cmake"):
        return "cmake is not installed (apt-get install -y cmake g++ libopencv-dev)"
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        return "no C++ compiler (apt-get install -y cmake g++ libopencv-dev)"
    found = subprocess.run(["pkg-config", "--exists", "opencv4"], check=False).returncode == 0 \
        if shutil.which("pkg-config") else False
    if not found and not glob.glob("/usr/lib/*/cmake/opencv4/OpenCVConfig.cmake") \
            and not glob.glob("/usr/local/lib/cmake/opencv4/OpenCVConfig.cmake"):
        return "OpenCV development files are missing (apt-get install -y libopencv-dev)"
    return ""


@pytest.fixture(scope="session")
def app_build_dir(tmp_path_factory):
    """Build the app once per session (the e2e tests reuse the same folder)."""
    reason = missing_build_tools()
    if reason:
        pytest.skip(f"cannot build the C++ app: {reason}")
    build_dir = tmp_path_factory.getbasetemp() / "infer_app_build"
    env = dict(os.environ, INFER_BUILD_DIR=str(build_dir))
    proc = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build_dir


@pytest.fixture(scope="session")
def app(app_build_dir):
    return str(app_build_dir / "main")


def run_app(app_path, *args, cwd=None):
    return subprocess.run([app_path, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, check=False)


# --------------------------------------------------------------------------- build

def test_build_reports_its_backends(app):
    proc = run_app(app, "--version")
    assert proc.returncode == 0 and "cpu (OpenCV " in proc.stdout
    if not HAS_ASCEND:
        assert "ascend310 not built" in proc.stdout


def test_build_explains_missing_tools(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    env = dict(os.environ, PATH=str(bin_dir), INFER_BUILD_DIR=str(tmp_path / "b"))
    proc = subprocess.run([shutil.which("bash"), str(BUILD_SH)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 1
    assert "cmake not found" in proc.stderr and "apt-get install -y cmake g++ libopencv-dev" in proc.stderr
    env = dict(os.environ, CXX="/nonexistent/g++", INFER_BUILD_DIR=str(tmp_path / "b"))
    proc = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert proc.returncode == 1 and "no C++ compiler found" in proc.stderr


# --------------------------------------------------------------------------- preprocessing

@pytest.fixture(scope="module")
def odd_images(tmp_path_factory, demo_data):
    """Demo ImageNet val images (class folders) plus grayscale / RGBA PNG / tiny / BMP ones."""
    root = tmp_path_factory.mktemp("odd_images")
    shutil.copytree(demo_data["imagenet"] / "val", root, dirs_exist_ok=True)
    extra = root / "zz_extra"
    extra.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (50, 83), np.uint8), "L").save(extra / "gray.jpg", quality=90)
    Image.fromarray(rng.integers(0, 255, (91, 60, 4), np.uint8), "RGBA").save(extra / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (19, 31, 3), np.uint8)).save(extra / "tiny.jpg", quality=80)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(extra / "square.bmp")
    return root


PREPROCESS_CASES = {
    "shorter side 256, crop 224": ("config/tinydarknet_imagenet.yaml", []),
    "square 256, crop 224 (VGG)": ("config/vgg16_imagenet.yaml", []),
    "shorter side 40, crop 64 (padding)": ("config/mobilenetv1_imagenet.yaml",
                                           ["--image_size=64,64", "--data.resize_eval=40"]),
    "stretch to 96x80 (COCO)": ("config/yolov3_tiny_coco.yaml", ["--image_size=96,80"]),
    "letterbox 96x80, RGB/255 (Darknet COCO)": (
        "config/yolov3_tiny_coco.yaml", ["--image_size=96,80", "--preprocess.resize_mode=letterbox",
                                         "--preprocess.mean=0,0,0", "--preprocess.std=255,255,255"]),
    "stretch to 64x96, mean=std=127.5 (ImageNet)": (
        "config/mobilenetv1_imagenet.yaml", ["--image_size=64,96", "--preprocess.resize_mode=stretch",
                                             "--preprocess.mean=127.5,127.5,127.5",
                                             "--preprocess.std=127.5,127.5,127.5"]),
    "letterbox 64x96, grey 0.3 (ImageNet)": (
        "config/mobilenetv1_imagenet.yaml", ["--image_size=64,96", "--preprocess.resize_mode=letterbox",
                                             "--preprocess.letterbox_fill=0.3"]),
}


@pytest.mark.parametrize("case", sorted(PREPROCESS_CASES))
def test_app_preprocessing_equals_the_python_eval_transforms(case, app, odd_images, demo_data,
                                                             tmp_path):
    config, overrides = PREPROCESS_CASES[case]
    spec = load_spec(config_path=config, cli_args=overrides)
    folder = demo_data["coco"] / "val2017" if spec["dataset"] == "coco" else odd_images
    dump = tmp_path / "dump"
    proc = run_app(app, "--backend=none", f"--dataset_path={folder}", f"--dump_inputs={dump}",
                   *app_flags(spec))
    assert proc.returncode == 0, proc.stderr
    transform = image_transform(spec)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) == len(list(dump.iterdir())) >= 16
    worst, padded = 0.0, 0
    pre = spec["preprocess"]
    for path in files:
        want = transform(str(path))
        got = np.fromfile(dump / f"{path.stem}.bin", np.float32).reshape(want.shape)
        worst = max(worst, float(np.abs(got - want).max()))
        if pre["resize_mode"] == "letterbox":
            fill = (pre["letterbox_fill"] * 255.0 - np.asarray(pre["mean"])) / np.asarray(pre["std"])
            padded += bool(np.allclose(got[:, 0, 0], fill, atol=1e-6)
                           or np.allclose(got[:, -1, -1], fill, atol=1e-6))
    if pre["resize_mode"] == "letterbox":  # images of another aspect ratio are padded
        assert padded >= len(files) // 2, padded
    print(f"{case}: C++ vs Python max abs difference after normalisation {worst:.3g}")
    assert worst <= PREPROCESS_TOLERANCE


# --------------------------------------------------------------------------- outputs

def _multi_output_onnx(path, names):
    """Input x (1x3x4x4); output i = x * (i + 1), named ``names[i]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Mul", ["x", f"k{i}"], [name]) for i, name in enumerate(names)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 4, 4]) for name in names],
        [numpy_helper.from_array(np.float32(i + 1), f"k{i}") for i in range(len(names))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)


def test_app_writes_outputs_in_onnx_order(app, tmp_path):
    """OpenCV lists outputs by name; the app restores the ONNX order from export's output_<i>
    names (12 outputs: neither name order nor reverse layer order is the ONNX order)."""
    from src.deploy.onnx_compat import normalize_onnx_file
    model = tmp_path / "multi.onnx"
    _multi_output_onnx(model, [f"t{11 - i}" for i in range(12)])
    assert normalize_onnx_file(str(model)) == 12
    (tmp_path / "in").mkdir()
    x = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    x.tofile(tmp_path / "in" / "a.bin")
    proc = run_app(app, "--backend=cpu", f"--model_path={model}", f"--dataset_path={tmp_path / 'in'}",
                   "--input_format=bin", "--image_height=4", "--image_width=4",
                   f"--output_dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr
    for i in range(12):
        got = np.fromfile(tmp_path / "out" / "result_Files" / f"a_{i}.bin", np.float32)
        np.testing.assert_allclose(got, (x * (i + 1)).reshape(-1), rtol=1e-6)

    # Without those names the order is unknown: refused, not guessed.
    _multi_output_onnx(model, ["b", "a"])
    proc = run_app(app, "--backend=cpu", f"--model_path={model}", f"--dataset_path={tmp_path / 'in'}",
                   "--input_format=bin", "--image_height=4", "--image_width=4",
                   f"--output_dir={tmp_path / 'out2'}")
    assert proc.returncode == 1 and "cannot tell the output order" in proc.stderr
    assert "re-export it with export.py" in proc.stderr


# --------------------------------------------------------------------------- errors

def test_app_usage_and_input_errors(app, tmp_path):
    proc = run_app(app, "--dataset_path=x", "--colour=red")
    assert proc.returncode == 2 and "unknown flag --colour" in proc.stderr and "usage:" in proc.stderr
    proc = run_app(app, "--model_path=m.onnx")
    assert proc.returncode == 2 and "--dataset_path is required" in proc.stderr
    proc = run_app(app, "--model_path=m.onnx", f"--dataset_path={tmp_path / 'none'}")
    assert proc.returncode == 1 and "data folder" in proc.stderr and "not found" in proc.stderr

    bins = tmp_path / "bins"
    bins.mkdir()
    np.zeros(10, np.float32).tofile(bins / "a.bin")
    proc = run_app(app, "--backend=none", f"--dataset_path={bins}", "--input_format=bin",
                   "--image_height=4", "--image_width=4", f"--dump_inputs={tmp_path / 'd'}")
    assert proc.returncode == 1 and "has 40 bytes" in proc.stderr and "192" in proc.stderr

    proc = run_app(app, "--backend=cpu", "--model_path=m.mindir", f"--dataset_path={bins}",
                   "--input_format=bin")
    assert proc.returncode == 1 and "the cpu backend runs ONNX files" in proc.stderr
    if not HAS_ASCEND:
        proc = run_app(app, "--backend=ascend310", "--model_path=m.mindir", f"--dataset_path={bins}",
                       "--input_format=bin")
        assert proc.returncode == 1 and "this build has no ascend310 backend" in proc.stderr

    for sub in ("a", "b"):
        (tmp_path / "dup" / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "dup" / sub / "x.jpg")
    proc = run_app(app, "--backend=none", f"--dataset_path={tmp_path / 'dup'}",
                   f"--dump_inputs={tmp_path / 'd'}")
    assert proc.returncode == 1 and "same stem 'x'" in proc.stderr


def test_app_refuses_a_zero_std(app, tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.jpg")
    for flag in ("--std=0,0,0", "--std=58.4,0,57.4", "--std=nan,1,1", "--mean=inf,0,0"):
        proc = run_app(app, "--backend=none", f"--dataset_path={tmp_path / 'in'}", flag,
                       f"--dump_inputs={tmp_path / 'd'}")
        assert proc.returncode == 2, (flag, proc.stderr)
        assert proc.stderr.splitlines()[0].startswith(
            "main: error: --mean and --std must be finite and --std non-zero, got --mean="), flag
        assert not (tmp_path / "d").exists()


def test_app_refuses_non_finite_outputs_and_keeps_nothing_of_the_run(app, tmp_path):
    from tests.test_non_finite import div_by_itself_onnx
    model = tmp_path / "div.onnx"
    div_by_itself_onnx(model, 4)
    (tmp_path / "in").mkdir()
    for stem, value in (("a", 1.0), ("b", 0.0), ("c", 0.0), ("d", 2.0)):
        np.full((3, 4, 4), value, np.float32).tofile(tmp_path / "in" / f"{stem}.bin")
    out = tmp_path / "out"
    args = ("--backend=cpu", f"--model_path={model}", f"--dataset_path={tmp_path / 'in'}",
            "--input_format=bin", "--image_height=4", "--image_width=4", f"--output_dir={out}")
    proc = run_app(app, *args)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"main: error: the model gave NaN or Inf outputs for 2 of 4 input(s), first "
        f"'{tmp_path / 'in' / 'b.bin'}'; no result files were kept (check --mean/--std and the "
        f"export: does python infer.py give finite outputs?)"]
    assert not list((out / "result_Files").iterdir())
    assert not (out / "time_Result" / "test_perform_static.txt").exists()

    for stem in ("b", "c"):  # finite again: every result written
        np.full((3, 4, 4), 3.0, np.float32).tofile(tmp_path / "in" / f"{stem}.bin")
    proc = run_app(app, *args)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "result_Files").iterdir()) == [
        "a_0.bin", "b_0.bin", "c_0.bin", "d_0.bin"]


def test_app_refuses_an_image_size_its_export_spec_contradicts(app, tmp_path):
    """A 4x4 export (its <model>.json says so) run at 8x8 is refused before any output;
    OpenCV would run this size-agnostic graph at any size."""
    import json
    from tests.test_non_finite import div_by_itself_onnx
    model = tmp_path / "div.onnx"
    div_by_itself_onnx(model, 4)
    (tmp_path / "div.onnx.json").write_text(json.dumps({"image_size": [4, 4]}, indent=2))
    (tmp_path / "in").mkdir()
    np.ones((3, 8, 8), np.float32).tofile(tmp_path / "in" / "a.bin")
    out = tmp_path / "out"
    proc = run_app(app, "--backend=cpu", f"--model_path={model}", f"--dataset_path={tmp_path / 'in'}",
                   "--input_format=bin", "--image_height=8", "--image_width=8", f"--output_dir={out}")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"main: error: '{model}' was exported for 4x4 inputs (its .json spec) but --image_height/"
        f"--image_width give 8x8; pass --image_height=4 --image_width=4 (run_infer_310.sh takes "
        f"them from the spec)"]
    assert not out.exists()
    # The matching size runs (4x4 inputs).
    np.ones((3, 4, 4), np.float32).tofile(tmp_path / "in" / "a.bin")
    proc = run_app(app, "--backend=cpu", f"--model_path={model}", f"--dataset_path={tmp_path / 'in'}",
                   "--input_format=bin", "--image_height=4", "--image_width=4", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- the script

def run_script(*args, cwd, env=None):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600, check=False)


def test_script_help_and_usage_errors(tmp_path):
    proc = run_script("-h", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(
        "usage: bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_OR_ANNOTATION_FILE")
    assert "example" in proc.stdout
    for args, message in ((["m.mindir", "d"], "expected 3 positional argument(s)"),
                          (["m.mindir", "d", "l", "--backend=gpu"], "--backend must be"),
                          (["m.mindir", "d", "l", "x"], "DEVICE_ID must be a device index"),
                          (["m.mindir", "d", "l", "0", "--backend=cpu"], "DEVICE_ID selects an Ascend"),
                          (["m.mindir", "d", "l", "--image_size=32"], "need --config_path")):
        proc = run_script(*args, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and "usage:" in proc.stderr, proc.stderr


@pytest.fixture
def fake_export(tmp_path, demo_data):
    """A MINDIR/ONNX pair that is not a model, with a genuine deploy spec beside each."""
    from src.config import load_config
    cfg = load_config("config/tinydarknet_imagenet.yaml",
                      cli_args=["--num_classes=10", "--image_size=32,32", "--data.resize_eval=36"])
    for ext in (".mindir", ".onnx"):
        path = tmp_path / f"model{ext}"
        path.write_bytes(b"not a model")
        write_sidecar(cfg, str(path))
    return tmp_path / "model.mindir"


@pytest.mark.skipif(HAS_ASCEND, reason="this machine has an Ascend device")
def test_script_without_an_ascend_device_points_to_the_cpu_path(fake_export, demo_data, tmp_path):
    proc = run_script(fake_export, demo_data["imagenet"] / "val", tmp_path / "label.txt",
                      cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no Ascend 310 on this machine" in proc.stderr
    assert f"run_infer_310.sh {tmp_path / 'model'}.onnx" in proc.stderr and "--backend=cpu" in proc.stderr


def test_script_stops_at_the_failing_stage_and_names_its_log(fake_export, demo_data, app_build_dir,
                                                             tmp_path):
    env = dict(os.environ, INFER_BUILD_DIR=str(app_build_dir))
    label = tmp_path / "label.txt"
    proc = run_script(fake_export, demo_data["imagenet"] / "val", label, "--backend=cpu",
                      f"--output_dir={tmp_path / 'runs'}", "--run_name=r", cwd=tmp_path, env=env)
    run = tmp_path / "runs" / "r"
    assert proc.returncode == 1
    # The first stage to read the ONNX file is the one that writes OpenCV's copy of it.
    log = run / "opencv_model.log"
    assert f"stage 'opencv_model' failed (exit status 1); full log: {log}" in proc.stderr
    assert f"cannot rewrite {str(fake_export.with_suffix('.onnx'))!r} for OpenCV" in proc.stderr  # the log's tail
    assert "[preprocess]" in proc.stdout and "[build]" in proc.stdout
    assert "[infer]" not in proc.stdout and "[postprocess]" not in proc.stdout
    assert label.is_file()  # preprocess made the missing label file
    assert not (run / "acc.log").exists()

    # The app itself, given that file, says what it could not import and what to run instead.
    proc = run_app(app_build_dir / "main", "--backend=cpu", f"--model_path={fake_export.with_suffix('.onnx')}",
                   f"--dataset_path={demo_data['imagenet'] / 'val'}", "--image_height=32", "--image_width=32",
                   f"--output_dir={tmp_path / 'app'}")
    assert proc.returncode != 0
    assert "cannot import" in proc.stderr and "python -m src.deploy.onnx_compat" in proc.stderr

"""Deploy-path building blocks without the C++ app: postprocess, label files,
input walking, the deploy spec, preprocess, and the ONNX rewrite for OpenCV.

The C++ app and the end-to-end agreement with eval.py are in
test_deploy_cpp.py and test_deploy_e2e.py.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401
from src.deploy.common import (DeployError, list_input_files, read_label_file, result_path,
                               scan_result_files, write_label_file)
from src.deploy.postprocess_classification import classification_accuracy, format_report

REPO = Path(__file__).resolve().parents[1]


def write_results(folder: Path, logits: dict, index: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, values in logits.items():
        np.asarray(values, np.float32).tofile(result_path(str(folder), stem, index))
    return folder


def write_labels(path: Path, labels: dict) -> Path:
    write_label_file(str(path), list(labels.items()))
    return path


# Six classes; the label's rank among the logits decides top-1 / top-5.
LOGITS = {
    "img_a": [9, 1, 2, 3, 4, 5],   # label 0 ranked 1st -> top-1 and top-5
    "img_b": [1, 9, 2, 3, 4, 5],   # label 5 ranked 2nd -> top-5 only
    "img_c": [6, 5, 4, 3, 2, 1],   # label 5 ranked 6th -> neither
    "img_d": [1, 2, 3, 9, 4, 5],   # label 3 ranked 1st -> both
}
LABELS = {"img_a": 0, "img_b": 5, "img_c": 5, "img_d": 3}


@pytest.fixture
def scored(tmp_path):
    results = write_results(tmp_path / "result_Files", LOGITS)
    labels = write_labels(tmp_path / "label.txt", LABELS)
    return results, labels


def test_postprocess_counts_top1_and_top5(scored):
    results, labels = scored
    metrics = classification_accuracy(str(results), str(labels), num_classes=6)
    assert metrics == {"top_1_accuracy": 0.5, "top_5_accuracy": 0.75, "top1_correct": 2,
                       "top5_correct": 3, "total": 4}
    report = format_report(metrics)
    assert "total=4, top1_correct=2, acc=50.00% (top-1)" in report
    assert "total=4, top5_correct=3, acc=75.00% (top-5)" in report
    assert "accuracy: {'top_1_accuracy': 0.5, 'top_5_accuracy': 0.75}" in report


def test_postprocess_top5_with_fewer_than_five_classes(tmp_path):
    results = write_results(tmp_path / "r", {"x": [0.1, 0.9, 0.0], "y": [0.9, 0.1, 0.0]})
    labels = write_labels(tmp_path / "l.txt", {"x": 1, "y": 2})
    metrics = classification_accuracy(str(results), str(labels), num_classes=3)
    assert (metrics["top1_correct"], metrics["top5_correct"]) == (1, 2)


def test_missing_result_file_is_an_error(scored):
    results, labels = scored
    os.remove(result_path(str(results), "img_c", 0))
    with pytest.raises(DeployError, match=r"missing result file .*img_c_0\.bin"):
        classification_accuracy(str(results), str(labels), 6)


def test_result_without_a_label_is_an_error(scored, tmp_path):
    results, _ = scored
    partial = write_labels(tmp_path / "partial.txt", {k: LABELS[k] for k in ("img_a", "img_b", "img_c")})
    with pytest.raises(DeployError, match=r"no label for 1 result file.*img_d_0\.bin"):
        classification_accuracy(str(results), str(partial), 6)


@pytest.mark.parametrize("line,message", [
    ("img_a", "bad label line"),
    ("img_a zero", "bad label line"),
    ("img_a 1 2", "bad label line"),
    ("img_a:0", "bad label line"),
    ("img_a 6", "outside 0..5"),
    ("img_a -1", "outside 0..5"),
])
def test_bad_label_line_names_the_line(scored, tmp_path, line, message):
    results, _ = scored
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\n\n" + line + "\n")
    with pytest.raises(DeployError, match=rf"bad\.txt:3: .*{message}"):
        classification_accuracy(str(results), str(bad), 6)


def test_duplicate_label_and_missing_label_file(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("a 1\na 2\n")
    with pytest.raises(DeployError, match="dup.txt:2: stem 'a' appears twice"):
        read_label_file(str(dup))
    with pytest.raises(DeployError, match="label file .* not found"):
        read_label_file(str(tmp_path / "none.txt"))


def test_wrong_size_result_file_is_an_error(scored):
    results, labels = scored
    np.zeros(7, np.float32).tofile(result_path(str(results), "img_b", 0))
    with pytest.raises(DeployError, match=r"img_b_0\.bin' has 28 bytes; 6 float32 logits take 24"):
        classification_accuracy(str(results), str(labels), 6)
    with pytest.raises(DeployError, match="has 24 bytes; 10 float32 logits take 40"):
        classification_accuracy(str(results), str(labels), 10)


def test_detection_results_are_refused(scored):
    results, labels = scored
    write_results(results, {"img_a": [0.0] * 6}, index=1)
    with pytest.raises(DeployError, match="detection model's result folder"):
        classification_accuracy(str(results), str(labels), 6)


def test_unknown_files_in_the_result_folder(scored):
    results, _ = scored
    (results / "notes.bin").write_bytes(b"")
    with pytest.raises(DeployError, match="unexpected file 'notes.bin'"):
        scan_result_files(str(results))


def test_postprocess_command_line(scored, tmp_path):
    results, labels = scored
    cmd = [sys.executable, "postprocess.py",
           f"--result_path={results}", f"--label_file={labels}", "--num_classes=6"]
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "acc=50.00% (top-1)" in ok.stdout and "acc=75.00% (top-5)" in ok.stdout
    os.remove(result_path(str(results), "img_a", 0))
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: missing result file") and "Traceback" not in bad.stderr
    no_classes = subprocess.run(cmd[:-1], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert no_classes.returncode == 2 and "num_classes is unknown" in no_classes.stderr


# --------------------------------------------------------------------------- input files

def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_inputs_in_class_folders_are_sorted_and_numbered(tmp_path):
    for name in ("b/2.JPEG", "b/1.JPEG", "a/9.JPEG", "a/.hidden.JPEG", "a/notes.txt", "c/3.png",
                 "loose.JPEG"):
        touch(tmp_path / name)
    entries = list_input_files(str(tmp_path), (".JPEG", ".png"))
    assert [(s, i) for s, _, i in entries] == [("9", 0), ("1", 1), ("2", 1), ("3", 2)]


def test_flat_inputs_and_stem_collisions(tmp_path):
    for name in ("x.JPEG", "y.jpg", "z.txt"):
        touch(tmp_path / "flat" / name)
    assert [(s, i) for s, _, i in list_input_files(str(tmp_path / "flat"), (".JPEG", ".jpg"))] == \
        [("x", -1), ("y", -1)]
    touch(tmp_path / "dup" / "a" / "same.JPEG")
    touch(tmp_path / "dup" / "b" / "same.JPEG")
    with pytest.raises(DeployError, match="same stem 'same'"):
        list_input_files(str(tmp_path / "dup"), (".JPEG",))


def test_a_dataset_root_instead_of_the_split_folder_is_explained(tmp_path):
    touch(tmp_path / "val" / "n01" / "a.JPEG")
    with pytest.raises(DeployError, match="point the data path at the split folder"):
        list_input_files(str(tmp_path), (".JPEG",))
    with pytest.raises(DeployError, match="no .png files"):
        list_input_files(str(tmp_path / "val" / "n01"), (".png",))


# --------------------------------------------------------------------------- spec and preprocess

def test_spec_from_configs_and_missing_sidecar(tmp_path):
    from src.deploy.spec import app_flags, load_spec
    spec = load_spec(config_path="config/vgg16_imagenet.yaml", cli_args=["--image_size=64,64"])
    assert spec["preprocess"]["resize_mode"] == "square" and spec["num_classes"] == 1000
    flags = app_flags(spec)
    assert "--image_height=64" in flags and "--resize=256" in flags and "--resize_mode=square" in flags
    cifar = load_spec(config_path="config/mobilenetv1_cifar10.yaml")
    assert app_flags(cifar)[0] == "--input_format=bin"
    coco = load_spec(config_path="config/yolov3_tiny_coco.yaml")
    assert coco["task"] == "detection" and "--resize_mode=stretch" in app_flags(coco)
    with pytest.raises(DeployError, match=r"model file .*m\.mindir' not found"):
        load_spec(str(tmp_path / "m.mindir"))
    (tmp_path / "m.mindir").write_bytes(b"")
    with pytest.raises(DeployError, match=r"no deploy spec .*m\.mindir\.json"):
        load_spec(str(tmp_path / "m.mindir"))
    with pytest.raises(DeployError, match="need --config_path"):
        load_spec(str(tmp_path / "m.mindir"), cli_args=["--image_size=32"])


def test_preprocess_imagenet_labels_and_cifar_inputs(demo_data, tmp_path):
    from src.deploy.inputs import cifar_stem
    from src.deploy.preprocess import preprocess
    from src.deploy.spec import load_spec
    spec = load_spec(config_path="config/tinydarknet_imagenet.yaml")
    out = preprocess(spec, str(demo_data["imagenet"] / "val"), str(tmp_path / "in"), log=lambda _: None)
    labels = read_label_file(out["label_file"], 10)
    assert len(labels) == 100 and labels["ILSVRC2012_val_00000001"] == 0 and max(labels.values()) == 9
    flat = tmp_path / "flat"
    flat.mkdir()
    touch(flat / "a.JPEG")
    with pytest.raises(DeployError, match="flat folder"):
        preprocess(spec, str(flat), str(tmp_path / "x"), log=lambda _: None)

    spec = load_spec(config_path="config/vgg16_cifar10.yaml", cli_args=["--image_size=32,32"])
    out = preprocess(spec, str(demo_data["cifar10"]), str(tmp_path / "c"), log=lambda _: None)
    files = sorted(os.listdir(out["inputs"]))
    assert len(files) == 200 and files[0] == cifar_stem(0) + ".bin" == "cifar10_test_00000.bin"
    assert os.path.getsize(os.path.join(out["inputs"], files[0])) == 3 * 32 * 32 * 4
    labels = read_label_file(out["label_file"], 10)
    raw = np.fromfile(next((demo_data["cifar10"] / "cifar-10-verify-bin").glob("test_batch*.bin")),
                      np.uint8).reshape(-1, 3073)
    assert [labels[cifar_stem(i)] for i in range(200)] == raw[:, 0].tolist()


def test_python_runner_inputs_equal_the_eval_dataset(demo_data):
    """The runner's per-image transforms give exactly eval.py's batches (same order too)."""
    from src.config import load_config
    from src.deploy.inputs import iter_network_inputs
    from src.deploy.spec import spec_from_config
    from src.tasks.classification import eval_dataset
    for config, data in (("config/vgg16_imagenet.yaml", demo_data["imagenet"]),
                         ("config/tinydarknet_cifar10.yaml", demo_data["cifar10"])):
        cfg = load_config(config, cli_args=[f"--data_dir={data}", "--image_size=48,48",
                                            "--data.resize_eval=56", "--data.num_workers=1",
                                            "--data.cutout=0"])
        spec = spec_from_config(cfg)
        path = str(data / "val") if cfg.dataset == "imagenet" else str(data)
        ours = np.stack([a for _, a in iter_network_inputs(spec, path)])
        theirs = np.concatenate([b.asnumpy() for b, _ in
                                 eval_dataset(cfg, batch_size=50).create_tuple_iterator()])
        np.testing.assert_array_equal(ours, theirs)


# --------------------------------------------------------------------------- ONNX rewrite

def test_onnx_rewrite_keeps_outputs_and_removes_what_opencv_rejects(tmp_path):
    """Both rewrites compute what the export did; only the OpenCV copy rebuilds Clip."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from src.deploy.onnx_compat import normalize_onnx_file, write_opencv_copy

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    nodes = [
        helper.make_node("Clip", ["x", "zero", "six"], ["relu6"]),
        helper.make_node("Clip", ["x", "lo", "hi"], ["clip"]),
        helper.make_node("Min", ["x", "hi"], ["min"]),
        helper.make_node("Max", ["lo", "x"], ["max"]),
        helper.make_node("Max", ["x", "zero"], ["relu"]),
        helper.make_node("Resize", ["x", "roi", "scales"], ["up"]),
    ]
    outputs = ["relu6", "clip", "min", "max", "relu", "up"]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 2, 6, 6] if o == "up" else [1, 2, 3, 3])
         for o in outputs],
        [const("zero", 0.0), const("six", 6.0), const("lo", -1.5), const("hi", 2.5),
         const("roi", np.zeros(0)), const("scales", [1, 1, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    x = (np.random.default_rng(0).standard_normal((1, 2, 3, 3)) * 5).astype(np.float32)

    def run(path=path):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})

    before = run()
    # The export's rewrite leaves the two Clips (onnxruntime fuses them into a convolution).
    assert normalize_onnx_file(path) == 4 + len(outputs)  # + the outputs renamed output_<i>
    after = run()
    for want, got in zip(before, after):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    rewritten = onnx.load(path)
    assert [n.op_type for n in rewritten.graph.node if n.op_type in ("Clip", "Min", "Max")] == ["Clip"] * 2
    resize = next(n for n in rewritten.graph.node if n.op_type == "Resize")
    assert helper.get_attribute_value(resize.attribute[0]) == b"nearest"
    assert [o.name for o in rewritten.graph.output] == [f"output_{i}" for i in range(len(outputs))]
    assert normalize_onnx_file(path) == 0  # idempotent

    # The copy for OpenCV < 4.7 rebuilds them too; the export is left as it is.
    exported = open(path, "rb").read()
    copy = write_opencv_copy(path, str(tmp_path / "run" / "m.opencv.onnx"))
    assert copy == str(tmp_path / "run" / "m.opencv.onnx") and open(path, "rb").read() == exported
    for want, got in zip(before, run(copy)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(run(copy)[0], np.clip(x, 0, 6))  # ReLU6 stays bit-exact
    assert not [n for n in onnx.load(copy).graph.node if n.op_type in ("Clip", "Min", "Max")]
    assert write_opencv_copy(copy, str(tmp_path / "again.onnx")) == copy  # nothing left to do
    assert not (tmp_path / "again.onnx").exists()


def test_the_opencv_copy_command_names_the_file_to_run_and_keeps_the_spec(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from src.deploy.onnx_compat import main

    def save(path, nodes):  # outputs named as the export names them
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("output_0", TensorProto.FLOAT, [1, 2])],
            [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))

    relu6, relu = tmp_path / "relu6.onnx", tmp_path / "relu.onnx"
    save(relu6, [helper.make_node("Clip", ["x", "lo", "hi"], ["output_0"])])
    save(relu, [helper.make_node("Relu", ["x"], ["output_0"])])
    (tmp_path / "relu6.onnx.json").write_text('{"image_size": [4, 4]}')
    for model, wanted in ((relu6, tmp_path / "out" / "c.onnx"), (relu, relu)):
        proc = subprocess.run([sys.executable, "-m", "src.deploy.onnx_compat", str(model),
                               str(tmp_path / "out" / "c.onnx")], capture_output=True, text=True,
                              cwd=REPO, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == str(wanted)
    assert (tmp_path / "out" / "c.onnx.json").read_text() == '{"image_size": [4, 4]}'
    assert main([str(tmp_path / "missing.onnx"), str(tmp_path / "c.onnx")]) == 2


def test_leaky_relu_becomes_one_node_bit_for_bit(tmp_path):
    """MindSpore writes LeakyReLU as Max(Mul(x, a), x); the export makes it LeakyRelu(x, a),
    which onnxruntime fuses into the convolution before it. Only that exact pattern is folded."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from src.deploy.onnx_compat import normalize_onnx_file

    nodes = [helper.make_node("Mul", ["x", "a"], ["ax"]), helper.make_node("Max", ["ax", "x"], ["leaky"]),
             helper.make_node("Mul", ["b", "x"], ["bx"]), helper.make_node("Max", ["x", "bx"], ["leaky2"]),
             # not LeakyReLU: a slope of 1.5, and a product that is also used elsewhere
             helper.make_node("Mul", ["x", "steep"], ["sx"]), helper.make_node("Max", ["sx", "x"], ["steep_max"]),
             helper.make_node("Mul", ["x", "a"], ["shared"]), helper.make_node("Max", ["shared", "x"], ["kept"]),
             helper.make_node("Relu", ["shared"], ["also"])]
    outputs = ["leaky", "leaky2", "steep_max", "kept", "also"]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 5])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, 3, 5, 5]) for o in outputs],
        [numpy_helper.from_array(np.float32(v), n) for n, v in (("a", 0.1), ("b", 0.2), ("steep", 1.5))])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)
    x = (np.random.default_rng(2).standard_normal((2, 3, 5, 5)) * 3).astype(np.float32)
    x[0, 0, 0, :3] = [0.0, -0.0, 1e-40]  # zeros and a denormal

    def run():
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})

    before = run()
    assert normalize_onnx_file(path) == 2 + len(outputs)
    after = run()
    for want, got in zip(before, after):
        np.testing.assert_array_equal(got, want)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("LeakyRelu") == 2 and ops.count("Max") == 2 and ops.count("Mul") == 2
    alphas = sorted(helper.get_attribute_value(n.attribute[0]) for n in onnx.load(path).graph.node
                    if n.op_type == "LeakyRelu")
    np.testing.assert_allclose(alphas, [0.1, 0.2], rtol=1e-7)


def test_onnx_rewrite_materializes_5d_broadcast_constants(tmp_path):
    """YOLO's decode: 5-D maps times per-anchor sizes plus per-column offsets."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from src.deploy.onnx_compat import normalize_onnx_file

    rng = np.random.default_rng(1)
    shape = [1, 2, 3, 3, 4]
    anchors = rng.standard_normal((1, 1, 1, 3, 1)).astype(np.float32)
    grid = np.arange(3, dtype=np.float32).reshape(1, 1, 3, 1, 1)
    nodes = [helper.make_node("Mul", ["x", "anchors"], ["scaled"]),
             helper.make_node("Add", ["grid", "scaled"], ["shifted"]),
             helper.make_node("Div", ["shifted", "two"], ["y"]),  # scalar: left alone
             helper.make_node("Sigmoid", ["y"], ["z"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("scaled", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(anchors, "anchors"), numpy_helper.from_array(grid, "grid"),
         numpy_helper.from_array(np.float32(2.0), "two")])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)
    x = rng.standard_normal(shape).astype(np.float32)

    def run():
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})

    before = run()
    assert normalize_onnx_file(path) == 2 + 2  # two constants, two outputs
    after = run()
    for want, got in zip(before, after):
        np.testing.assert_array_equal(got, want)
    rewritten = onnx.load(path)
    shapes = {i.name: list(i.dims) for i in rewritten.graph.initializer}
    assert sorted(shapes.values()) == [[], shape, shape]  # the scalar stays a scalar
    # The renamed output is also renamed where it feeds another node.
    assert [n.output[0] for n in rewritten.graph.node][:1] == ["output_1"]
    assert list(rewritten.graph.node[1].input) == [next(k for k in shapes if k.startswith("grid")),
                                                   "output_1"]


def test_onnx_output_naming_refuses_a_name_clash(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    from src.deploy.common import DeployError
    from src.deploy.onnx_compat import normalize_onnx_file

    nodes = [helper.make_node("Relu", ["x"], ["output_0"]), helper.make_node("Sigmoid", ["output_0"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    before = path.read_bytes()
    with pytest.raises(DeployError, match=r"cannot name the ONNX outputs.*'output_0'"):
        normalize_onnx_file(str(path))
    assert path.read_bytes() == before  # the file is left as it was


def test_runner_prefers_the_onnx_export_for_a_name_without_extension(tmp_path):
    from src.deploy.runner import resolve_model_file
    base = tmp_path / "model"
    (tmp_path / "model.mindir").write_bytes(b"")
    assert resolve_model_file(str(base)) == str(base) + ".mindir"
    (tmp_path / "model.onnx").write_bytes(b"")
    assert resolve_model_file(str(base)) == str(base) + ".onnx"
    assert resolve_model_file(str(base) + ".mindir") == str(base) + ".mindir"
    with pytest.raises(DeployError, match="no .*other.onnx or .*other.mindir"):
        resolve_model_file(str(tmp_path / "other"))


def test_opencv_output_layers_are_put_in_onnx_order():
    from src.deploy.onnx_compat import outputs_in_graph_order
    assert outputs_in_graph_order(["output_2", "output_10", "output_0"]) == [
        "output_0", "output_2", "output_10"]
    # Names the export did not give: kept as OpenCV listed them.
    assert outputs_in_graph_order(["logits", "output_0"]) == ["logits", "output_0"]


@pytest.mark.parametrize("args, message", [
    (["--onnx_runtime=opencv"], r"--onnx_runtime=opencv runs ONNX files, but .*model.mindir"),
    (["--onnx_runtime=onnxruntime"], r"--onnx_runtime=onnxruntime runs ONNX files"),
    (["--onnx_runtime=auto"], r"--onnx_runtime=auto runs ONNX files, but .*model.mindir"),
])
def test_infer_refuses_an_onnx_runtime_for_a_mindir_file_before_any_work(tmp_path, args, message):
    model = tmp_path / "model.mindir"
    model.write_bytes(b"")
    proc = subprocess.run([sys.executable, "infer.py", f"--model_file={model}",
                           f"--data_path={tmp_path}", f"--output_path={tmp_path / 'out'}", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), proc.stderr
    assert not (tmp_path / "out").exists()


def _depthwise_conv_file(path, height, width, pad_attributes):
    """A one-node ONNX file: depthwise 3x3 Conv (8 channels, bias) on a 1x8xHxW input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    attributes = {"kernel_shape": [3, 3], **pad_attributes}  # kernel_shape=None: left out
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=8,
                            **{k: v for k, v in attributes.items() if v is not None})
    graph = helper.make_graph(
        [conv], "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, height, width])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return rng.standard_normal((1, 8, height, width)).astype(np.float32)


@pytest.mark.parametrize("height, width, pad_attributes", [
    (1, 1, {"auto_pad": "SAME_UPPER"}),  # MobileNetV1's last blocks at 32x32
    (1, 6, {"pads": [1, 1, 1, 1]}),
    (6, 1, {"pads": [1, 1, 1, 1]}),
    (1, 1, {"auto_pad": "SAME_UPPER", "kernel_shape": None}),  # optional: the weight's shape
])
def test_convolution_over_a_length_one_axis_is_cut_to_the_tap_that_meets_data(
        tmp_path, height, width, pad_attributes):
    """OpenCV 4.10 computes a depthwise 3x3 Conv over a length-1 axis wrong (off by units or
    garbage); the export's rewrite cuts the kernel to the one tap that meets data, which
    every runtime computes right, and the OpenCV runtime applies it to files exported
    elsewhere too."""
    import onnx
    import onnxruntime as ort
    from src.deploy.onnx_compat import normalize_onnx_file
    from src.export import ExportedModel
    raw = tmp_path / "raw.onnx"
    x = _depthwise_conv_file(raw, height, width, pad_attributes)
    want = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # The OpenCV runtime, handed a file this export did not write.
    got = ExportedModel(str(raw), onnx_runtime="opencv")(x)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)

    exported = tmp_path / "exported.onnx"
    exported.write_bytes(raw.read_bytes())
    assert normalize_onnx_file(str(exported)) == 2  # the Conv, and the output renamed output_0
    conv = next(n for n in onnx.load(str(exported)).graph.node if n.op_type == "Conv")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert attributes["kernel_shape"] == [1 if height == 1 else 3, 1 if width == 1 else 3]
    assert "auto_pad" not in attributes
    cut = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(cut, want, rtol=0, atol=1e-6)
    assert normalize_onnx_file(str(exported)) == 0  # idempotent


def test_opencv_runtime_is_cpu_only_and_reports_a_file_it_cannot_read(tmp_path):
    import onnx
    from src.deploy.runner import check_onnx_runtime
    from src.errors import ExportError
    from src.export import ExportedModel
    with pytest.raises(DeployError, match="runs on the CPU only, not on GPU"):
        check_onnx_runtime("m.onnx", "opencv", "GPU")
    check_onnx_runtime("m.onnx", "opencv", "CPU")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ExportError, match=r"cannot read .*broken.onnx.* as an ONNX model: "):
        ExportedModel(str(broken), onnx_runtime="opencv")
    # A valid ONNX file with an operator OpenCV's importer lacks (Det).
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["y"])], "det",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    unsupported = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(unsupported))
    with pytest.raises(ExportError, match=r"^OpenCV .* DNN cannot load .*det.onnx.*Det.*; "
                                          r"run it on onnxruntime instead$") as caught:
        ExportedModel(str(unsupported), onnx_runtime="opencv")
    assert "\n" not in str(caught.value)
    # A valid file the export's rewrites refuse (a tensor already named output_0).
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["output_0"]),
                               helper.make_node("Sigmoid", ["output_0"], ["y"])], "clash",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    clash = tmp_path / "clash.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(clash))
    with pytest.raises(ExportError, match=r"^cannot rewrite .*clash.onnx.* for OpenCV DNN: cannot name "
                                          r"the ONNX outputs.*; run it on onnxruntime instead$"):
        ExportedModel(str(clash), onnx_runtime="opencv")
    with pytest.raises(ExportError, match="unknown ONNX runtime 'tvm'; choose one of onnxruntime, opencv"):
        ExportedModel(str(broken), onnx_runtime="tvm")


# --- --onnx_runtime=auto: the faster runtime, timed at start-up -----------------------------

def _fake_clock(monkeypatch):
    """A clock that only the fake calls advance; the list of calls made."""
    from src.utils import timing
    clock, calls = [0.0], []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(timing.time, "sleep", lambda seconds: None)

    def timed(name, *seconds):
        durations = iter(seconds)
        last = [seconds[0]]

        def call():
            calls.append(name)
            last[0] = next(durations, last[0])
            clock[0] += last[0]
        return call
    return timed, calls


@pytest.mark.parametrize("opencv_seconds, pick", [(0.09, "opencv"), (0.097, "onnxruntime"),
                                                  (0.2, "onnxruntime")])
def test_auto_keeps_onnxruntime_unless_another_is_clearly_faster(monkeypatch, opencv_seconds, pick):
    from src.deploy import runner
    timed, calls = _fake_clock(monkeypatch)
    got, milliseconds = runner.fastest({"onnxruntime": timed("onnxruntime", 0.1),
                                        "opencv": timed("opencv", opencv_seconds)})
    assert runner.AUTO_MARGIN == 1.05
    assert got == pick  # 0.1 / 0.097 = 1.03: under the margin, a tie that onnxruntime keeps
    assert milliseconds == pytest.approx({"onnxruntime": 100.0, "opencv": 1000 * opencv_seconds})
    # 2 untimed calls each, then as many as fit in AUTO_TIMING_SECONDS (within AUTO_CALLS),
    # alternated
    low, high = runner.AUTO_CALLS
    repeats = min(max(low, round(runner.AUTO_TIMING_SECONDS / max(0.1, opencv_seconds))), high)
    assert calls.count("onnxruntime") == calls.count("opencv") == 2 + repeats


def test_auto_takes_a_median_so_one_slow_call_does_not_decide(monkeypatch):
    from src.deploy import runner
    timed, calls = _fake_clock(monkeypatch)
    # onnxruntime's warm-up and first timed call are slow (a busy VM), then it is the faster.
    got, milliseconds = runner.fastest({"onnxruntime": timed("onnxruntime", 0.5, 0.5, 0.5, 0.01),
                                        "opencv": timed("opencv", 0.02)})
    assert got == "onnxruntime" and milliseconds["onnxruntime"] == pytest.approx(10.0)
    assert calls.count("opencv") == 2 + runner.AUTO_CALLS[0]  # a 0.5 s warm-up call: few repeats
    timed, calls = _fake_clock(monkeypatch)
    runner.fastest({"a": timed("a", 0.001), "b": timed("b", 0.001)})
    assert calls.count("a") == 2 + runner.AUTO_CALLS[1]  # fast calls: the upper bound


def test_auto_opens_the_file_on_the_runtime_it_names(tmp_path, monkeypatch):
    from src.deploy import runner
    model_file = tmp_path / "dw.onnx"
    x = _depthwise_conv_file(model_file, 6, 6, {"pads": [1, 1, 1, 1]})
    lines = []
    model = runner.open_model(str(model_file), input_shape=[1, 8, 6, 6], log=lines.append)
    assert len(lines) == 1 and re.fullmatch(
        r"ONNX runtime: (onnxruntime|opencv) \((onnxruntime [\d.]+ ms, opencv [\d.]+ ms per call; "
        r"another is picked when 1.05x faster|[\d.]+x faster than onnxruntime here: onnxruntime "
        r"[\d.]+ ms, opencv [\d.]+ ms per call)\); --onnx_runtime=onnxruntime or opencv pins one",
        lines[0]), lines
    assert model.runtime == lines[0].split()[2]
    want = runner.open_model(str(model_file), onnx_runtime="onnxruntime")(x)[0]
    np.testing.assert_allclose(model(x)[0], want, rtol=0, atol=1e-5)
    # Whichever fastest() names is the one that runs; an explicit runtime is never timed.
    for name in ("opencv", "onnxruntime"):
        monkeypatch.setattr(runner, "fastest", lambda calls, name=name: (name, {n: 1.0 for n in calls}))
        assert runner.open_model(str(model_file), input_shape=[1, 8, 6, 6],
                                 log=lambda _: None).runtime == name
    monkeypatch.setattr(runner, "fastest", None)
    assert runner.open_model(str(model_file), onnx_runtime="opencv", input_shape=[1, 8, 6, 6]
                             ).runtime == "opencv"
    assert runner.open_model(str(model_file), onnx_runtime="onnxruntime", input_shape=[1, 8, 6, 6]
                             ).runtime == "onnxruntime"


def test_auto_falls_back_to_onnxruntime_and_says_why(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper
    from src.deploy import runner
    monkeypatch.setattr(runner, "fastest", None)  # never timed: only onnxruntime can run these
    # OpenCV refuses the file (a tensor already named output_0, see the test above).
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["output_0"]),
                               helper.make_node("Sigmoid", ["output_0"], ["y"])], "clash",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])])
    clash = tmp_path / "clash.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(clash))
    lines = []
    assert runner.open_model(str(clash), input_shape=[1, 3, 2, 2],
                             log=lines.append).runtime == "onnxruntime"
    assert len(lines) == 1 and lines[0].startswith(
        "ONNX runtime: onnxruntime, the only one that loads it (cannot rewrite "), lines
    # A batch the file does not take: onnxruntime is kept, so that the run fails on its first
    # input with the runner's own message.
    dw = tmp_path / "dw.onnx"
    _depthwise_conv_file(dw, 6, 6, {"pads": [1, 1, 1, 1]})
    lines = []
    assert runner.open_model(str(dw), input_shape=[1, 3, 6, 6],
                             log=lines.append).runtime == "onnxruntime"
    assert len(lines) == 1 and lines[0].startswith(
        "ONNX runtime: onnxruntime, as onnxruntime cannot run a [1, 3, 6, 6] batch ("), lines


def test_auto_is_cpu_only_and_refused_for_a_mindir_file():
    from src.deploy.runner import check_onnx_runtime
    with pytest.raises(DeployError, match="--onnx_runtime=auto runs on the CPU only, not on GPU"):
        check_onnx_runtime("m.onnx", "auto", "GPU")
    with pytest.raises(DeployError, match="--onnx_runtime=auto runs ONNX files, but 'm.mindir'"):
        check_onnx_runtime("m.mindir", "auto", "CPU")
    check_onnx_runtime("m.onnx", "auto", "CPU")

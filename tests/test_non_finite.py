"""NaN/Inf model outputs are refused by postprocess.py (both tasks), eval (both tasks' evaluate)
and infer.py: one line with the count and the first item, non-zero exit, nothing scored, and
no file written before the run changed (the C++ app's checks are in test_deploy_cpp.py)."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401  (CPU setup before mindspore)
from src.config import load_config
from src.deploy.spec import write_sidecar
from src.utils.finite import NonFiniteError

REPO = Path(__file__).resolve().parents[1]


def run_script(*args, cwd=REPO):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def snapshot(folder: Path):
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_refusal(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: NaN or Inf"), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ------------------------------------------------------------------ postprocess: classification

def test_classification_postprocess_refuses_nan_and_inf_logits(tmp_path):
    results = tmp_path / "result_Files"
    results.mkdir()
    logits = {"a": np.arange(10, dtype=np.float32), "b": np.full(10, np.nan, np.float32),
              "c": np.array([np.inf] + [0.0] * 9, np.float32)}
    for stem, values in logits.items():
        values.tofile(results / f"{stem}_0.bin")
    (tmp_path / "label.txt").write_text("a 9\nb 1\nc 0\n")
    before = snapshot(tmp_path)
    proc = run_script("postprocess.py", f"--result_path={results}",
                      f"--label_file={tmp_path / 'label.txt'}", "--num_classes=10")
    assert_one_line_refusal(proc, "for 2 of 3 result file(s)", str(results / "b_0.bin"),
                            "nothing was scored", "--std")
    assert "acc=" not in proc.stdout and "accuracy" not in proc.stdout
    assert snapshot(tmp_path) == before

    # Finite again: scored (the refusal is about the values, nothing else).
    np.zeros(10, np.float32).tofile(results / "b_0.bin")
    np.zeros(10, np.float32).tofile(results / "c_0.bin")
    proc = run_script("postprocess.py", f"--result_path={results}",
                      f"--label_file={tmp_path / 'label.txt'}", "--num_classes=10")
    assert proc.returncode == 0 and "top1_correct=" in proc.stdout, proc.stderr


# ------------------------------------------------------------------ postprocess: detection

def test_detection_postprocess_refuses_nan_results(tmp_path):
    from tests.test_yolo_postprocess_eval import write_coco_set
    img_dir, ann_file = write_coco_set(tmp_path, [((200, 100), [([20, 10, 60, 40], 1)]),
                                                  ((80, 160), [([10, 20, 30, 60], 3)])])
    results = tmp_path / "result_Files"
    results.mkdir()
    for k in (1, 2):
        np.zeros((1, 2, 2, 3, 7), np.float32).tofile(results / f"{k:012d}_0.bin")
        small = np.zeros((1, 4, 4, 3, 7), np.float32)
        if k == 2:
            small[0, 1, 1, 0, 4] = np.nan
        small.tofile(results / f"{k:012d}_1.bin")
    before = snapshot(tmp_path)
    proc = run_script("postprocess.py", "--config_path=config/yolov3_tiny_coco.yaml",
                      f"--result_path={results}", f"--img_path={img_dir}",
                      f"--ann_file={ann_file}", "--image_size=64", "--num_classes=2",
                      f"--output_dir={tmp_path / 'out'}")
    assert_one_line_refusal(proc, "for 1 of 2 image(s)", str(results / "000000000002_*.bin"),
                            "nothing was scored")
    assert "mAP" not in proc.stdout
    assert snapshot(tmp_path) == before  # no run folder, no predictions or metrics


# ------------------------------------------------------------------ eval: both tasks' evaluate

class FakeTensor:
    def __init__(self, array):
        self.array = np.asarray(array)

    def asnumpy(self):
        return self.array


class FakeNet:
    """Returns the given outputs batch after batch (stands in for the network)."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def set_train(self, mode):
        assert mode is False

    def __call__(self, image):
        outputs = next(self.batches)
        return tuple(map(FakeTensor, outputs)) if isinstance(outputs, tuple) else FakeTensor(outputs)


class FakeDataset:
    def __init__(self, rows, coco_reader=None):
        self.rows = rows
        self.coco_reader = coco_reader

    def create_tuple_iterator(self, num_epochs=1, output_numpy=False):
        return iter(self.rows)


def test_classification_evaluate_refuses_nan_logits():
    from src.tasks import get_task
    cfg = load_config("config/tinydarknet_cifar10.yaml", cli_args=["--num_classes=10"])
    good, bad = np.eye(10, dtype=np.float32)[:4], np.eye(10, dtype=np.float32)[:4]
    bad[2, 3] = np.nan
    rows = [(None, FakeTensor(np.arange(4))) for _ in range(3)]
    with pytest.raises(NonFiniteError) as info:
        get_task("classification").evaluate(cfg, FakeNet([good, bad, bad]),
                                            dataset=FakeDataset(rows))
    message = str(info.value)
    assert "for 2 of 3 evaluation batch(es), first batch 1" in message
    assert "no accuracy is reported" in message and "\n" not in message
    # All finite: an accuracy (the first four labels are the argmax of eye rows).
    metrics = get_task("classification").evaluate(cfg, FakeNet([good] * 3),
                                                  dataset=FakeDataset(rows))
    assert metrics["top_1_accuracy"] == 1.0 and metrics["num_samples"] == 12


def test_detection_evaluate_refuses_nan_outputs(monkeypatch):
    from src.registry import get_model_spec
    from src.tasks import detection, get_task
    # The fake network stands in for the deploy cell (decoded outputs, spec.output_shapes).
    monkeypatch.setattr(detection, "export_network", lambda cfg, net: net)
    cfg = load_config("config/yolov3_tiny_coco.yaml",
                      overrides=[("image_size", [64, 64]), ("num_classes", 2)])
    shapes = get_model_spec(cfg.model).output_shapes(cfg)
    outputs = tuple(np.zeros((2, *shape), np.float32) for shape in shapes)
    outputs[1].reshape(2, -1)[1, 0] = np.inf
    reader = type("Reader", (), {"category_ids": [1, 3], "ann_file": "unused.json"})()
    rows = [(np.zeros((2, 3, 64, 64), np.float32), np.array([[64, 64], [64, 64]]),
             np.array([7, 8]))]
    with pytest.raises(NonFiniteError) as info:
        get_task("detection").evaluate(cfg, FakeNet([outputs]), log=lambda _: None,
                                       dataset=FakeDataset(rows, coco_reader=reader))
    assert "for 1 of 2 evaluation image(s), first image id 8" in str(info.value)
    assert "no mAP is reported" in str(info.value)


# ------------------------------------------------------------------ infer.py

def div_by_itself_onnx(path, side):
    """Output = x / x: NaN where the input is 0, else 1."""
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Div", ["x", "x"], ["output_0"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("output_0", TensorProto.FLOAT, [1, 3, side, side])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)


def test_infer_refuses_nan_outputs_and_keeps_nothing_of_the_run(tmp_path):
    model = tmp_path / "div.onnx"
    div_by_itself_onnx(model, 32)
    write_sidecar(load_config("config/tinydarknet_cifar10.yaml",
                              cli_args=["--num_classes=10", "--image_size=32,32"]), str(model))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    np.ones((3, 32, 32), np.float32).tofile(inputs / "a.bin")
    np.zeros((3, 32, 32), np.float32).tofile(inputs / "b.bin")
    np.ones((3, 32, 32), np.float32).tofile(inputs / "c.bin")
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    proc = run_script("infer.py", f"--model_file={model}", f"--data_path={inputs}",
                      f"--output_path={out}")
    assert_one_line_refusal(proc, "for 1 of 3 input(s), first 'b'", "no result files were kept")
    assert "wrote the results" not in proc.stdout and "NN inference cost" not in proc.stdout
    assert not list((out / "result_Files").glob("*.bin"))
    assert not (out / "time_Result" / "test_perform_static.txt").exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("out")} == before

    np.full((3, 32, 32), 2.0, np.float32).tofile(inputs / "b.bin")  # finite: all written
    proc = run_script("infer.py", f"--model_file={model}", f"--data_path={inputs}",
                      f"--output_path={out}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "result_Files").glob("*.bin")) == [
        "a_0.bin", "b_0.bin", "c_0.bin"]

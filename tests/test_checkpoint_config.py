"""Checkpoints carry their config: eval/export/detect need no --config_path, and a config or
flag contradicting the checkpoint on what changes results is refused naming the key."""
import json
from pathlib import Path

import pytest

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
from test_cli_errors import error_line, run  # the one-clear-error contract, shared

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "config" / "demo.yaml")


def snapshot(folder):
    return {str(p): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    """One short demo training (tinydarknet, CIFAR-10 at 32x32), saved where --ckpt_path says."""
    save = tmp_path_factory.mktemp("saved_here")
    proc = run("train.py", f"--config_path={DEMO}", "--epochs=1", "--batch_size=64",
               f"--data_dir={demo_data['cifar10']}", "--data.demo=False",
               "--checkpoint.eval_every_epochs=0", f"--ckpt_path={save}", "--run_name=r1")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    [ckpt] = sorted((save / "r1" / "checkpoints").glob("*.ckpt"))  # --ckpt_path = save folder
    return ckpt, demo_data["cifar10"]


def test_checkpoint_stores_the_resolved_config(trained):
    from src.checkpoint import read_checkpoint
    ckpt, _ = trained
    _, meta = read_checkpoint(str(ckpt))
    stored = json.loads(meta["config"])
    assert stored["model"] == "tinydarknet" and stored["image_size"] == [32, 32]
    assert stored["epochs"] == 1 and stored["num_classes"] == 10


def test_eval_without_config_uses_the_checkpoints(trained, tmp_path):
    ckpt, data = trained
    proc = run("eval.py", f"--pre_trained={ckpt}", f"--data_path={data}",
               f"--output_dir={tmp_path}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "using the config stored in" in proc.stdout and "model=tinydarknet" in proc.stdout
    assert "accuracy: {'top_1_accuracy'" in proc.stdout


@pytest.mark.parametrize("args, needles", [
    (["--image_size=64"], ["made with image_size=[32, 32]", "[64, 64]", "--image_size=32,32"]),
    (["--num_classes=12"], ["num_classes=10", "12", "--num_classes=10"]),
    (["--net.weight_init=normal"], ["net=", "weight_init"]),
    (["--data.resize_eval=40"], ["data.resize_eval"]),
    (["--preprocess.resize_mode=letterbox"], ["made with preprocess=", "letterbox"]),
])
def test_eval_refuses_flags_contradicting_the_checkpoint(trained, tmp_path, args, needles):
    ckpt, data = trained
    before = snapshot(ckpt.parent)
    proc = run("eval.py", f"--checkpoint_path={ckpt}", f"--data_path={data}",
               f"--output_dir={tmp_path / 'out'}", *args)
    error_line(proc, str(ckpt), *needles)
    assert not (tmp_path / "out").exists()
    assert snapshot(ckpt.parent) == before


def test_a_config_contradicting_the_checkpoint_is_refused(trained, tmp_path):
    ckpt, data = trained
    proc = run("export.py", f"--config_path={REPO / 'config' / 'tinydarknet_cifar10.yaml'}",
               f"--ckpt_file={ckpt}", f"--file_name={tmp_path / 'net'}")
    error_line(proc, "image_size=[32, 32]", "[227, 227]")
    assert list(tmp_path.iterdir()) == []


def test_export_without_config_then_detect_refuses_the_classifier(trained, tmp_path):
    ckpt, _ = trained
    proc = run("export.py", f"--ckpt_file={ckpt}", f"--file_name={tmp_path / 'net'}",
               "--file_format=ONNX")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (tmp_path / "net.onnx").is_file() and "input 1x3x32x32" in proc.stdout
    image = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (40, 30)).save(image)
    proc = run("detect.py", f"--model_file={tmp_path / 'net.onnx'}", f"--input={image}",
               f"--output={tmp_path / 'det'}")
    error_line(proc, "detection model", "tinydarknet")
    assert not (tmp_path / "det").exists()


def test_checkpoint_without_stored_config_lists_configs_with_its_values(tmp_path):
    from mindspore import nn

    from src.checkpoint import save_checkpoint
    old = tmp_path / "old.ckpt"
    save_checkpoint(str(old), nn.Dense(2, 2), meta={"model": "vgg16", "dataset": "imagenet",
                                                    "num_classes": 5, "image_size": [64, 64]})
    proc = run("eval.py", f"--checkpoint_path={old}", "--print_config")
    # one shipped config fits (vgg16/imagenet): it is used with the checkpoint's values, said
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "config/vgg16_imagenet.yaml" in proc.stdout and "--num_classes=5" in proc.stdout
    assert "num_classes: 5" in proc.stdout and "image_size: [64, 64]" in proc.stdout

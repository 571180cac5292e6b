"""Bounded configuration: hostile YAML, out-of-range numbers and bad tool arguments end
with one short line, before anything is allocated or written."""
import os
import resource
import time
from pathlib import Path

import pytest

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
from src import config as C
from src.config import load_config
from src.errors import ConfigError
from test_cli_errors import error_line, run  # the one-clear-error contract, shared

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _error(path=None, cli=()):
    with pytest.raises(ConfigError) as info:
        load_config(path, cli_args=list(cli))
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message[:400]
    return message


def alias_bomb(width=9, depth=9, key="model"):
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, depth):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + f"\n{key}: *l{depth - 1}\n"


# ------------------------------------------------------------------ hostile YAML

@pytest.mark.parametrize("key", ["model", "net", "image_size", "lr", "detection"])
def test_alias_bomb_is_refused_quickly_without_showing_the_expansion(tmp_path, key):
    text = alias_bomb(key=key)
    assert len(text) < 520  # the bomb was 419 bytes
    path = _write(tmp_path, text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    message = _error(path)
    assert time.monotonic() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB
    assert "alias" in message and path in message and "lol" not in message


def test_many_aliases_are_refused(tmp_path):
    text = "a: &a 1\nnet: {" + ", ".join(f"k{i}: *a" for i in range(C.MAX_YAML_ALIASES + 1)) + "}\n"
    message = _error(_write(tmp_path, "model: vgg16\n" + text))
    assert f"more than {C.MAX_YAML_ALIASES} YAML aliases" in message


def test_deep_alias_nesting_is_refused(tmp_path):
    # 40 aliases, each two levels deeper than the one it repeats: no bracket run is deep
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [[*l{i - 1}]]" for i in range(1, 40)]
    message = _error(_write(tmp_path, "\n".join(lines) + "\nnet: {a: *l39}\n"))
    assert "levels deep" in message


def test_a_few_aliases_still_work(tmp_path):
    path = _write(tmp_path, "model: vgg16\nimage_size: [64, 64]\n"
                            "net: {batch_norm: &t true, has_bias: *t}\n")
    cfg = load_config(path)
    assert cfg.image_size == [64, 64] and cfg.net == {"batch_norm": True, "has_bias": True}


@pytest.mark.parametrize("text, key, lines", [
    ("model: vgg16\nepochs: 3\nmodel: tinydarknet\n", "'model'", "lines 1 and 3"),
    ("model: vgg16\nlr:\n  base_lr: 0.1\n  base_lr: 0.2\n", "'base_lr'", "lines 3 and 4"),
    ("model: vgg16\nnet: {batch_norm: true, batch_norm: false}\n", "'batch_norm'", "lines 2 and 2"),
])
def test_duplicate_yaml_keys_are_an_error(tmp_path, text, key, lines):
    path = _write(tmp_path, text)
    message = _error(path)
    for part in (path, key, "twice", lines):
        assert part in message, message


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    path = _write(tmp_path, "model: vgg16\nnet: {<<: {batch_norm: true}, has_bias: true}\n")
    assert load_config(path).net == {"batch_norm": True, "has_bias": True}


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}\n"])
def test_empty_config_file_is_an_error(tmp_path, text):
    path = _write(tmp_path, text)
    assert "sets no keys" in _error(path)


def test_messages_never_format_an_unbounded_value(tmp_path):
    huge = "[" + ", ".join(str(i) for i in range(5000)) + "]"
    for text in (f"model: {huge}\n", f"epochs: {huge}\n", f"unknown_key: {huge}\n",
                 f"lr: {huge}\n", f"image_size: {huge}\n"):
        message = _error(_write(tmp_path, text))
        assert "4999" not in message, message
    message = _error(cli=["--epochs=" + "x" * 100000])
    assert len(message) < 300


# ------------------------------------------------------------------ numeric ranges

@pytest.mark.parametrize("flag, value, bound", [
    ("batch_size", "0", "between 1 and"),
    ("batch_size", "-4", "between 1 and"),
    ("epochs", "1e23", "between 1 and 100000"),
    ("epochs", "100000000", "between 1 and 100000"),
    ("epochs", "0", "between 1 and 100000"),
    ("num_classes", "-5", "between 2 and"),
    ("num_classes", "1e11", "between 2 and"),
    ("num_classes", "1", "between 2 and"),
    ("data.num_workers", "-3", "between 0 and"),
    ("export.tolerance", "-1", "between 0 and"),
    ("export.batch_size", "0", "between 1 and"),
    ("export.batch_size", "-1", "between 1 and"),
    ("image_size", "100000", "between 16 and 4096"),
    ("image_size", "32,0", "[height, width] > 0"),
    ("lr.milestones", "10,-2", "between 0 and"),
    ("loss.label_smoothing", "1.5", "between 0 and"),
    ("checkpoint.save_every_epochs", "0", "between 1 and"),
])
def test_out_of_range_numbers_name_key_value_and_range(flag, value, bound):
    message = _error(cli=[f"--{flag}={value}"])
    assert f"'{flag}'" in message and bound in message, message


def test_out_of_range_number_in_a_file_names_the_file(tmp_path):
    path = _write(tmp_path, "model: vgg16\nbatch_size: 0\n")
    message = _error(path)
    assert path in message and "'batch_size' must be between 1 and" in message


def test_cutout_larger_than_the_image_names_both_keys():
    with pytest.raises(ConfigError) as info:
        load_config(str(REPO / "config" / "tinydarknet_cifar10.yaml"),
                    cli_args=["--image_size=32,32"], entry="train")
    message = str(info.value)
    for part in ("data.cutout=112", "image_size=[32, 32]", "--data.cutout=16", "--data.cutout=0"):
        assert part in message, message
    cfg = load_config(str(REPO / "config" / "tinydarknet_cifar10.yaml"),
                      cli_args=["--image_size=32,32", "--data.cutout=16"], entry="train")
    assert cfg.data.cutout == 16
    # eval/export do not augment: there the cutout is irrelevant
    assert load_config(str(REPO / "config" / "tinydarknet_cifar10.yaml"),
                       cli_args=["--image_size=32,32"], entry="eval").data.cutout == 112


@pytest.mark.parametrize("model, size, ok", [("vgg16", [64, 96], True), ("vgg16", [33, 33], False),
                                             ("yolov3_tiny", [100, 100], False),
                                             ("tinydarknet", [33, 33], True)])
def test_model_spec_states_the_image_sizes_it_accepts(model, size, ok):
    from src.registry import get_model_spec
    spec = get_model_spec(model)
    if ok:
        spec.check_image_size(size)
    else:
        with pytest.raises(ConfigError, match="multiples of 32"):
            spec.check_image_size(size)


def test_typo_suggestions_only_for_misspellings():
    assert "did you mean 'batch_size'" in _error(cli=["--bach_size=3"])
    assert "did you mean 'lr.base_lr'" in _error(cli=["--lr.base_rl=3"])
    # a misspelling of an upstream flag is never pointed at a key of another meaning
    for wrong, other in (("valid_data_pth", "'data_path'"), ("padd_mode", "'mode'"),
                         ("group_sizes", "'image_size'"), ("checkpoint_uri", "'checkpoint_path'"),
                         ("batch_normal", "'batch_size'"), ("output_pth", "'ckpt_path'"),
                         ("ckpt_intervall", "'log_interval'")):
        assert other not in _error(cli=[f"--{wrong}=3"]), wrong


# ------------------------------------------------------------------ tools

@pytest.mark.parametrize("args, needles", [
    (["--repeats", "0"], ["--repeats", "between 1 and"]),
    (["--batch_size", "0"], ["--batch_size", "between 1 and"]),
    (["--model", "vgg16", "--image_size", "33"], ["--image_size 33", "multiples of 32"]),
    (["--image_size", "100000"], ["--image_size", "4096"]),
    (["--json", "/nonexistent-folder/r.json"], ["--json", "/nonexistent-folder"]),
])
def test_benchmark_argument_errors_are_one_line_before_any_work(args, needles, tmp_path):
    proc = run("benchmark.py", *args)
    error_line(proc, *needles)
    assert "img/s" not in proc.stdout  # nothing was timed


def test_train_refuses_out_of_range_epochs_before_making_a_run_folder(tmp_path):
    out = tmp_path / "runs"
    proc = run("train.py", "--config_path=config/demo.yaml", "--epochs=100000000",
               f"--output_dir={out}")
    error_line(proc, "'epochs'", "between 1 and 100000")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_export_to_a_path_with_spaces_and_non_ascii(tmp_path, fmt, pynative_cpu):
    from mindspore import nn

    from src.export import ExportedModel, export_network
    folder = tmp_path / "my exports" / "modèles ü"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("earlier file")
    net = nn.SequentialCell([nn.Conv2d(3, 4, 3), nn.Flatten()])
    path = export_network(net, str(folder / "réseau 1"), fmt, 1, [8, 8], log=lambda _: None)
    assert path == str(folder / ("réseau 1" + (".mindir" if fmt == "MINDIR" else ".onnx")))
    assert sorted(os.listdir(folder)) == sorted(["keep.txt", os.path.basename(path)])
    assert (folder / "keep.txt").read_text() == "earlier file"
    assert ExportedModel(path)(__import__("numpy").zeros((1, 3, 8, 8), "float32"))[0].shape == (1, 256)


def test_export_into_a_read_only_folder_names_the_export_flag(tmp_path, monkeypatch, pynative_cpu):
    from mindspore import nn

    from src import export as E
    from src.errors import ExportError
    real_access = os.access
    monkeypatch.setattr(E.os, "access", lambda p, mode: False if str(p) == str(tmp_path)
                        else real_access(p, mode))
    with pytest.raises(ExportError) as info:
        E.export_network(nn.Flatten(), str(tmp_path / "net"), "MINDIR", 1, [8, 8])
    assert "--export.file_name" in str(info.value) and "--output_dir" not in str(info.value)
    assert os.listdir(tmp_path) == []

"""Tests for src.config: the one schema, YAML files, command-line overrides and errors."""
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
from src import config as C
from src.config import FLAG_ALIASES, SCHEMA, Config, load_config, parse_overrides
from src.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "config"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def _cfg(name, *cli):
    return load_config(str(CONFIG_DIR / name), cli_args=list(cli))


def _write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _error(*, path=None, cli=(), overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=overrides, cli_args=list(cli))
    message = str(info.value)
    assert "\n" not in message, message  # one line for the user
    return message


def _assert_names(message, *parts):
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# ------------------------------------------------------------------ shipped config files

def test_config_dir_has_the_expected_files():
    names = {p.name for p in CONFIG_FILES}
    assert {"demo.yaml", "tinydarknet_cifar10.yaml", "tinydarknet_imagenet.yaml",
            "mobilenetv1_cifar10.yaml", "mobilenetv1_imagenet.yaml", "vgg16_cifar10.yaml",
            "vgg16_imagenet.yaml", "yolov3_tiny_coco.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("device", ["CPU", "GPU", "Ascend"])
def test_every_config_file_loads_on_every_device(path, device):
    cfg = load_config(str(path), cli_args=[f"--device_target={device}"])
    assert cfg.device_target == device
    # per-device values are resolved to plain scalars
    assert cfg.amp_level in ("O0", "O1", "O2", "O3")
    assert isinstance(cfg.data.num_workers, int)
    assert isinstance(cfg.loss.loss_scale, float)
    assert len(cfg.image_size) == 2


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_file_names_a_registered_model_and_valid_net_options(path):
    from src.registry import get_model_spec
    cfg = load_config(str(path))
    spec = get_model_spec(cfg.model)
    unknown = set(cfg.net) - set(spec.net_options())
    assert not unknown, f"{path.name}: net options {unknown} unknown to {cfg.model}"
    expected_task = "detection" if cfg.dataset == "coco" else "classification"
    assert spec.task == expected_task


# Key values of the upstream recipes (upstream_facts.md 2.3, 3.3, 4.3, 5.5).
RECIPES = {
    "tinydarknet_cifar10.yaml": {
        "model": "tinydarknet", "dataset": "cifar10", "num_classes": 10, "batch_size": 32,
        "epochs": 120, "image_size": [227, 227], "lr.schedule": "multistep", "lr.base_lr": 0.1,
        "lr.milestones": [70, 140, 210, 280], "lr.gamma": 0.1, "lr.warmup_epochs": 0.0,
        "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
        "loss.label_smoothing": 0.0},
    "tinydarknet_imagenet.yaml": {
        "model": "tinydarknet", "dataset": "imagenet", "num_classes": 1000, "batch_size": 128,
        "epochs": 500, "image_size": [224, 224], "lr.schedule": "multistep", "lr.base_lr": 0.1,
        "lr.milestones": [70, 140, 210, 280], "lr.gamma": 0.3, "lr.warmup_epochs": 0.0,
        "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-4,
        "loss.label_smoothing": 0.1},
    "mobilenetv1_cifar10.yaml": {
        "model": "mobilenetv1", "dataset": "cifar10", "num_classes": 10, "batch_size": 32,
        "epochs": 90, "lr.schedule": "poly", "lr.init_lr": 0.01, "lr.base_lr": 0.1,
        "lr.end_lr": 1e-5, "lr.warmup_epochs": 5.0, "optimizer.momentum": 0.9,
        "optimizer.weight_decay": 1e-4, "checkpoint.save_every_epochs": 5,
        "checkpoint.keep_max": 10},
    "mobilenetv1_imagenet.yaml": {
        "model": "mobilenetv1", "dataset": "imagenet", "num_classes": 1001, "batch_size": 256,
        "epochs": 90, "lr.schedule": "linear", "lr.init_lr": 0.0, "lr.base_lr": 0.8,
        "lr.end_lr": 0.0, "lr.warmup_epochs": 0.0, "optimizer.weight_decay": 1e-4,
        "loss.label_smoothing": 0.1, "checkpoint.save_every_epochs": 5,
        "checkpoint.keep_max": 10},
    "vgg16_cifar10.yaml": {
        "model": "vgg16", "dataset": "cifar10", "num_classes": 10, "batch_size": 64,
        "epochs": 70, "lr.schedule": "poly", "lr.init_lr": 0.01, "lr.base_lr": 0.1,
        "lr.warmup_epochs": 5.0, "optimizer.momentum": 0.9, "optimizer.weight_decay": 5e-4,
        "loss.label_smoothing": 0.0, "net.batch_norm": True, "net.has_bias": False,
        "net.pad_mode": "same", "net.dropout": 0.0, "net.weight_init": "xavier_uniform",
        "checkpoint.keep_max": 10},
    "vgg16_imagenet.yaml": {
        "model": "vgg16", "dataset": "imagenet", "num_classes": 1000, "batch_size": 64,
        "epochs": 90, "lr.schedule": "cosine", "lr.base_lr": 0.04, "lr.t_max": 90,
        "lr.warmup_epochs": 0.0, "optimizer.weight_decay": 1e-4, "loss.label_smoothing": 0.1,
        "net.batch_norm": False, "net.has_bias": False, "net.pad_mode": "pad",
        "net.weight_init": "kaiming_normal", "checkpoint.keep_max": 10},
    "yolov3_tiny_coco.yaml": {
        "model": "yolov3_tiny", "dataset": "coco", "num_classes": 80, "batch_size": 32,
        "epochs": 300, "image_size": [640, 640], "lr.schedule": "cosine", "lr.base_lr": 0.001,
        "lr.warmup_epochs": 4.0, "lr.t_max": 300, "lr.eta_min": 0.0,
        "optimizer.momentum": 0.9, "optimizer.weight_decay": 0.016, "loss.loss_scale": 1024.0,
        "detection.multi_scale": [320, 352, 384, 416, 448, 480, 512, 544, 576, 608],
        "detection.nms_iou": 0.5, "detection.score_threshold": 0.001,
        "detection.max_boxes": 90, "detection.ignore_threshold": 0.7,
        "detection.coord_scale": 4.0, "detection.large_scale": 4.0,
        "detection.multi_label": True, "detection.multi_label_threshold": 0.15,
        "detection.anchors": [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]},
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_recipes_match_upstream(name):
    cfg = _cfg(name)
    wrong = {}
    for key, want in RECIPES[name].items():
        got = cfg.get(key, "<missing>")
        if isinstance(want, float):
            ok = isinstance(got, (int, float)) and got == pytest.approx(want)
        else:
            ok = got == want
        if not ok:
            wrong[key] = (got, want)
    assert not wrong, f"{name}: (got, upstream) {wrong}"


def test_upstream_ascend_loss_scale_and_net_options():
    # Upstream Ascend runs use loss scale 1024 (VGG16 CIFAR-10: 1.0).
    for name in ("tinydarknet_cifar10.yaml", "tinydarknet_imagenet.yaml",
                 "mobilenetv1_cifar10.yaml", "mobilenetv1_imagenet.yaml", "vgg16_imagenet.yaml"):
        assert _cfg(name, "--device_target=Ascend").loss.loss_scale == 1024.0, name
    assert _cfg("vgg16_cifar10.yaml", "--device_target=Ascend").loss.loss_scale == 1.0
    assert _cfg("vgg16_imagenet.yaml").net["dropout"] == pytest.approx(0.5)


def test_demo_config_is_small_and_cpu():
    cfg = _cfg("demo.yaml")
    assert cfg.device_target == "CPU" and cfg.amp_level == "O0"
    assert cfg.data.demo is True and cfg.data.dir.endswith("cifar10")
    assert cfg.image_size == [32, 32]


# ------------------------------------------------------------------ precedence and syntax

def test_defaults_file_cli_precedence(tmp_path):
    assert load_config().lr.base_lr == SCHEMA["lr"]["base_lr"].default
    path = _write(tmp_path, "lr:\n  base_lr: 0.05\nbatch_size: 16\n")
    from_file = load_config(path)
    assert from_file.lr.base_lr == 0.05 and from_file.batch_size == 16
    assert from_file.epochs == SCHEMA["epochs"].default  # untouched keys keep the default
    both = load_config(path, cli_args=["--lr.base_lr=0.2"])
    assert both.lr.base_lr == 0.2 and both.batch_size == 16
    # program defaults sit between the file and the command line
    mid = load_config(path, overrides=[("batch_size", 8)])
    assert mid.batch_size == 8
    assert load_config(path, overrides=[("batch_size", 8)],
                       cli_args=["--batch_size=4"]).batch_size == 4


def test_nested_override_changes_only_that_key():
    base = _cfg("vgg16_imagenet.yaml")
    cfg = _cfg("vgg16_imagenet.yaml", "--lr.base_lr=0.05", "--optimizer.momentum=0.8")
    assert cfg.lr.base_lr == 0.05 and cfg.optimizer.momentum == 0.8
    assert cfg.lr.schedule == base.lr.schedule and cfg.lr.t_max == base.lr.t_max
    assert cfg.optimizer.weight_decay == base.optimizer.weight_decay


def test_net_option_override_merges_with_file():
    cfg = _cfg("vgg16_cifar10.yaml", "--net.dropout=0.3")
    assert cfg.net["dropout"] == 0.3 and cfg.net["batch_norm"] is True


@pytest.mark.parametrize("text, want", [
    ("224,256", [224, 256]), ("[224,256]", [224, 256]), ("[224, 256]", [224, 256]),
    ("224", [224, 224]), ("[224]", [224, 224]), (" 96 , 128 ", [96, 128]),
])
def test_image_size_spellings(text, want):
    assert load_config(cli_args=[f"--image_size={text}"]).image_size == want


def test_list_overrides_both_spellings():
    for text in ("30,60,90", "[30,60,90]", "[30, 60, 90]"):
        assert load_config(cli_args=[f"--lr.milestones={text}"]).lr.milestones == [30, 60, 90]
    assert load_config(cli_args=["--lr_epochs=5"]).lr.milestones == [5]
    assert load_config(cli_args=["--lr.milestones=[]"]).lr.milestones == []
    cfg = load_config(cli_args=["--detection.anchors=[[1,2],[3,4]]"])
    assert cfg.detection.anchors == [[1, 2], [3, 4]]


@pytest.mark.parametrize("text, want", [
    ("True", True), ("true", True), ("1", True), ("yes", True), ("on", True),
    ("False", False), ("false", False), ("0", False), ("no", False), ("off", False),
])
def test_bool_spellings(text, want):
    assert load_config(cli_args=[f"--distributed={text}"]).distributed is want
    assert load_config(cli_args=["--data.demo", text]).data.demo is want


def test_bool_in_yaml_file(tmp_path):
    assert load_config(_write(tmp_path, "distributed: 1\ndata: {demo: yes}\n")).data.demo is True
    assert load_config(_write(tmp_path, "distributed: 0\n")).distributed is False


def test_bare_flag_switches_bool_on():
    cfg = load_config(cli_args=["--distributed", "--epochs=3"])
    assert cfg.distributed is True and cfg.epochs == 3


def test_space_separated_form():
    cfg = load_config(cli_args=["--lr.base_lr", "0.3", "--image_size", "64,64",
                                "--device_id", "-1", "--data_dir", "/d"])
    assert cfg.lr.base_lr == 0.3 and cfg.image_size == [64, 64]
    assert cfg.device_id == -1 and cfg.data.dir == "/d"


def test_dashes_in_flag_names_are_underscores():
    assert load_config(cli_args=["--batch-size=7"]).batch_size == 7


def test_numbers_are_converted_to_the_schema_type():
    cfg = load_config(overrides=[("epochs", 3.0)],
                      cli_args=["--lr.base_lr=1", "--lr.warmup_epochs=2"])
    assert cfg.lr.base_lr == 1.0 and isinstance(cfg.lr.base_lr, float)
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr.warmup_epochs == 2.0


def test_config_path_is_split_from_argv():
    path, rest = C.split_config_path(["--config_path", "a.yaml", "--epochs=2"])
    assert path == "a.yaml" and rest == ["--epochs=2"]
    path, rest = C.split_config_path(["--config=b.yaml"])
    assert path == "b.yaml" and rest == []


# ------------------------------------------------------------------ flag aliases

def _sample_value(dotted):
    """A valid command-line value for a dotted key, and what it should load as."""
    key = C._schema_at(dotted)
    want_type = key.value_type()
    if key.choices:
        return str(key.choices[-1]), key.choices[-1]
    if want_type is bool:
        return "true", True
    if want_type is int:
        return "7", 7
    if want_type is float:
        return "0.25", 0.25
    if want_type is list:
        return "3,5", [3, 5]
    return "/some/where", "/some/where"


@pytest.mark.parametrize("alias", sorted(FLAG_ALIASES))
def test_every_alias_maps_to_its_canonical_key(alias):
    canonical = FLAG_ALIASES[alias]
    assert isinstance(C._schema_at(canonical), C.Key), f"{alias} -> {canonical} is not a key"
    [(key, value, source)] = parse_overrides([f"--{alias}=x"])
    assert key == canonical and value == "x" and source == f"command line --{alias}"
    text, want = _sample_value(canonical)
    cfg = load_config(cli_args=[f"--{alias}={text}"])
    assert cfg.get(canonical) == want


REQUIRED_FLAGS = {  # the list: flag -> (value, dotted key, loaded value)
    "data_path": ("/d1", "data.dir", "/d1"),
    "dataset_path": ("/d2", "data.dir", "/d2"),
    "train_data_dir": ("/tr", "data.train_dir", "/tr"),
    "val_data_dir": ("/va", "data.eval_dir", "/va"),
    "data_dir": ("/d3", "data.dir", "/d3"),
    "dataset": ("imagenet", "dataset", "imagenet"),
    "dataset_name": ("coco", "dataset", "coco"),
    "platform": ("GPU", "device_target", "GPU"),
    "pre_trained": ("/p.ckpt", "pretrained", "/p.ckpt"),
    "pretrained": ("/q.ckpt", "pretrained", "/q.ckpt"),
    "checkpoint_path": ("/c.ckpt", "checkpoint_path", "/c.ckpt"),
    "ckpt_file": ("/e.ckpt", "checkpoint_path", "/e.ckpt"),
    "ckpt_path": ("/f.ckpt", "checkpoint_path", "/f.ckpt"),
    "per_batch_size": ("12", "batch_size", 12),
    "max_epoch": ("3", "epochs", 3),
    "epoch_size": ("4", "epochs", 4),
    "is_distributed": ("1", "distributed", True),
    "run_distribute": ("True", "distributed", True),
    "device_id": ("3", "device_id", 3),
    "device_target": ("Ascend", "device_target", "Ascend"),
    "file_format": ("ONNX", "export.file_format", "ONNX"),
    "file_name": ("net_out", "export.file_name", "net_out"),
}


@pytest.mark.parametrize("flag", sorted(REQUIRED_FLAGS))
def test_required_upstream_flags(flag):
    text, dotted, want = REQUIRED_FLAGS[flag]
    assert load_config(cli_args=[f"--{flag}={text}"]).get(dotted) == want
    assert load_config(cli_args=[f"--{flag}", text]).get(dotted) == want


@pytest.mark.parametrize("flag, text, dotted, want", [
    ("dataset_name", "imagenet2012", "dataset", "imagenet"),
    ("dataset", "imagenet2012", "dataset", "imagenet"),
    ("dataset", "coco2017", "dataset", "coco"),
    ("lr_scheduler", "cosine_annealing", "lr.schedule", "cosine"),
    ("lr_scheduler", "exponential", "lr.schedule", "multistep"),
    ("lr_scheduler", "cosine_annealing_V2", "lr.schedule", "cosine_v2"),
    ("lr_scheduler", "cosine_annealing_sample", "lr.schedule", "cosine_sample"),
    ("lr_scheduler", "step", "lr.schedule", "poly"),
    ("lr_decay_mode", "steps", "lr.schedule", "fraction_steps"),
    ("file_format", "onnx", "export.file_format", "ONNX"),
    ("file_format", "mindir", "export.file_format", "MINDIR"),
    ("file_format", "air", "export.file_format", "AIR"),
])
def test_value_aliases(flag, text, dotted, want):
    assert load_config(cli_args=[f"--{flag}={text}"]).get(dotted) == want


def test_value_aliases_in_yaml_file(tmp_path):
    path = _write(tmp_path, "dataset: imagenet2012\nlr: {schedule: cosine_annealing}\n"
                            "export: {file_format: onnx}\n")
    cfg = load_config(path)
    assert (cfg.dataset, cfg.lr.schedule, cfg.export.file_format) == ("imagenet", "cosine", "ONNX")


# ------------------------------------------------------------------ per-device values

PER_DEVICE_YAML = """\
amp_level: {Ascend: O3, GPU: O2, CPU: O1}
data:
  num_workers: {Ascend: 8, GPU: 4, CPU: 1}
loss:
  loss_scale: {Ascend: 1024, GPU: 128.0, CPU: 1}
"""


def test_per_device_values_resolve_from_device_target(tmp_path):
    path = _write(tmp_path, PER_DEVICE_YAML)
    got = {}
    for device in ("CPU", "GPU", "Ascend"):
        cfg = load_config(path, cli_args=[f"--device_target={device}"])
        got[device] = (cfg.amp_level, cfg.data.num_workers, cfg.loss.loss_scale)
    assert got == {"CPU": ("O1", 1, 1.0), "GPU": ("O2", 4, 128.0),
                   "Ascend": ("O3", 8, 1024.0)}


def test_per_device_defaults_resolve():
    assert load_config().amp_level == "O0"
    gpu = load_config(cli_args=["--device_target=GPU"])
    assert (gpu.amp_level, gpu.data.num_workers, gpu.loss.loss_scale) == ("O2", 8, 1024.0)
    cpu = load_config(cli_args=["--device_target=CPU"])
    assert (cpu.amp_level, cpu.data.num_workers, cpu.loss.loss_scale) == ("O0", 2, 1.0)


def test_per_device_shipped_file_differs_by_device():
    got = {d: _cfg("tinydarknet_cifar10.yaml", f"--platform={d}").amp_level
           for d in ("CPU", "GPU", "Ascend")}
    assert got == {"CPU": "O0", "GPU": "O2", "Ascend": "O3"}


def test_plain_value_beats_per_device_mapping():
    cfg = _cfg("tinydarknet_cifar10.yaml", "--device_target=GPU", "--amp_level=O1",
               "--loss_scale=8")
    assert cfg.amp_level == "O1" and cfg.loss.loss_scale == 8.0


def test_per_device_unknown_device_is_an_error(tmp_path):
    path = _write(tmp_path, "amp_level: {Ascend: O2, TPU: O1, CPU: O0}\n")
    message = _error(path=path)
    _assert_names(message, "amp_level", "TPU", path)


def test_per_device_value_is_checked(tmp_path):
    path = _write(tmp_path, "amp_level: {Ascend: O2, GPU: O9, CPU: O0}\n")
    _assert_names(_error(path=path), "amp_level", "O9", path)


def test_per_device_mapping_missing_the_device_is_an_error(tmp_path):
    path = _write(tmp_path, "amp_level: {Ascend: O2}\n")
    _assert_names(_error(path=path), "amp_level", "CPU")
    assert load_config(path, cli_args=["--device_target=Ascend"]).amp_level == "O2"


def test_mapping_on_a_non_per_device_key_is_an_error(tmp_path):
    path = _write(tmp_path, "batch_size: {Ascend: 32, CPU: 8}\n")
    _assert_names(_error(path=path), "batch_size", "Ascend", path)


# ------------------------------------------------------------------ errors

def test_unknown_key_on_command_line_suggests():
    message = _error(cli=["--batch_sise=3"])
    _assert_names(message, "batch_sise", "'3'", "command line --batch_sise",
                  "did you mean 'batch_size'")


def test_unknown_key_in_file_suggests(tmp_path):
    path = _write(tmp_path, "epochz: 3\n")
    _assert_names(_error(path=path), "epochz", "3", path, "did you mean 'epochs'")


def test_unknown_nested_key(tmp_path):
    _assert_names(_error(cli=["--lr.bas_lr=0.1"]), "lr.bas_lr", "0.1",
                  "command line --lr.bas_lr", "lr.base_lr")
    path = _write(tmp_path, "lr:\n  base_lr: 0.1\n  warmup_epoch: 2\n")
    _assert_names(_error(path=path), "lr.warmup_epoch", "2", path, "lr.warmup_epochs")


def test_unknown_nested_key_under_a_scalar():
    _assert_names(_error(cli=["--epochs.max=3"]), "epochs.max", "3", "--epochs.max")


@pytest.mark.parametrize("flag, value, type_name", [
    ("batch_size", "abc", "int"), ("batch_size", "1.5", "int"), ("epochs", "true", "int"),
    ("lr.base_lr", "fast", "float"), ("optimizer.weight_decay", "yes", "float"),
    ("distributed", "maybe", "bool"), ("data.demo", "2", "bool"),
    ("image_size", "a,b", "int"), ("lr.milestones", "x,y", "int"),
])
def test_wrong_type_on_command_line(flag, value, type_name):
    message = _error(cli=[f"--{flag}={value}"])
    _assert_names(message, repr(flag), type_name, f"command line --{flag}")
    assert any(part in message for part in (repr(value), repr(value.split(",")[0])))


@pytest.mark.parametrize("text, key, shown", [
    ("batch_size: [1, 2]\n", "batch_size", "[1, 2]"),
    ("lr: {base_lr: fast}\n", "lr.base_lr", "'fast'"),
    ("distributed: maybe\n", "distributed", "'maybe'"),
    ("lr: {milestones: {a: 1}}\n", "lr.milestones", "{'a': 1}"),
    ("image_size: [224, 224, 3]\n", "image_size", "[224, 224, 3]"),
    ("image_size: [0, 224]\n", "image_size", "[0, 224]"),
    ("net: 3\n", "net", "3"),
    ("model: [vgg16]\n", "model", "['vgg16']"),
])
def test_wrong_type_in_file(tmp_path, text, key, shown):
    path = _write(tmp_path, text)
    _assert_names(_error(path=path), repr(key), shown, path)


def test_list_expected():
    _assert_names(_error(cli=["--detection.anchors=5"]), "detection.anchors", "list", "'5'",
                  "--detection.anchors")


def test_invalid_choice():
    message = _error(cli=["--device_target=TPU"])
    _assert_names(message, "device_target", "TPU", "command line --device_target",
                  "Ascend", "GPU", "CPU")
    _assert_names(_error(cli=["--lr_scheduler=warp"]), "lr.schedule", "warp",
                  "--lr_scheduler", "cosine")
    _assert_names(_error(cli=["--file_format=PB"]), "export.file_format", "PB", "--file_format")
    _assert_names(_error(cli=["--mode=eager"]), "mode", "eager")


def test_invalid_choice_in_file(tmp_path):
    path = _write(tmp_path, "dataset: mnist\n")
    _assert_names(_error(path=path), "dataset", "mnist", path, "cifar10")


def test_section_given_a_scalar(tmp_path):
    _assert_names(_error(cli=["--lr=fast"]), "lr.base_lr", "fast")  # --lr is upstream's alias
    _assert_names(_error(cli=["--optimizer=0.5"]), "optimizer", "0.5",
                  "command line --optimizer", "optimizer.momentum")
    path = _write(tmp_path, "lr: 0.1\n")
    _assert_names(_error(path=path), "'lr'", "0.1", path, "section")


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    _assert_names(_error(path=path), path, "not found", "--config_path")


def test_invalid_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "model: vgg16\nlr:\n  base_lr: [0.1\nepochs: 3\n")
    message = _error(path=path)
    _assert_names(message, path, "not valid YAML", "line ")
    line = int(message.split("line ")[1].split(":")[0].split()[0])
    assert 3 <= line <= 4


def test_yaml_tab_indentation(tmp_path):
    path = _write(tmp_path, "lr:\n\tbase_lr: 0.1\n")
    _assert_names(_error(path=path), path, "line 2")


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just text\n", "str"),
                                         ("3\n", "int")])
def test_yaml_that_is_not_a_mapping(tmp_path, text, kind):
    path = _write(tmp_path, text)
    _assert_names(_error(path=path), path, "mapping", kind)


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}\n", "---\n"])
def test_empty_yaml_file_is_an_error(tmp_path, text):
    # It used to train the MobileNetV1 defaults: a config that says nothing is a mistake.
    path = _write(tmp_path, text)
    _assert_names(_error(path=path), path, "sets no keys", "model")


def test_yaml_python_tags_are_rejected(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, f'model: !!python/object/apply:os.system ["touch {marker}"]\n')
    message = _error(path=path)
    _assert_names(message, path, "line 1")
    assert not marker.exists(), "the YAML loader executed a python tag"
    path = _write(tmp_path, '!!python/object/apply:os.system ["echo hi"]\n', "b.yaml")
    _assert_names(_error(path=path), path)


def test_unreadable_yaml_bytes(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"model: \xff\xfe\x00vgg\n")
    _assert_names(_error(path=str(path)), str(path))


def test_positional_argument_is_an_error():
    _assert_names(_error(cli=["train"]), "'train'", "--key=value")


def test_errors_from_config_replace():
    cfg = load_config()
    with pytest.raises(ConfigError, match=r"'lr.base_lr'.*'x'.*Config.replace"):
        cfg.replace(**{"lr.base_lr": "x"})
    with pytest.raises(ConfigError, match="did you mean"):
        cfg.replace(epoch=3)


# ------------------------------------------------------------------ network options

def test_unknown_net_option_via_create_model():
    from src.registry import create_model
    with pytest.raises(ConfigError) as info:
        create_model("vgg16", 10, (32, 32), batch_norm=True, dropuot=0.5)
    _assert_names(str(info.value), "dropuot", "vgg16", "dropout")


def test_unknown_net_option_from_config_reaches_build_network():
    from src.engine import build_network
    cfg = _cfg("vgg16_cifar10.yaml", "--net.bacth_norm=false", "--image_size=32")
    with pytest.raises(ConfigError) as info:
        build_network(cfg)
    _assert_names(str(info.value), "bacth_norm", "vgg16")


def test_unknown_model():
    from src.registry import get_model_spec
    with pytest.raises(ConfigError, match="resnet"):
        get_model_spec(load_config(cli_args=["--model=resnet"]).model)


def test_net_values_are_yaml_parsed():
    cfg = load_config(cli_args=["--net.batch_norm=false", "--net.dropout=0.5",
                                "--net.pad_mode=same"])
    assert cfg.net == {"batch_norm": False, "dropout": 0.5, "pad_mode": "same"}


# ------------------------------------------------------------------ the Config object

def test_config_is_frozen():
    cfg = _cfg("demo.yaml")
    with pytest.raises(AttributeError):
        cfg.epochs = 3
    with pytest.raises(AttributeError):
        cfg.lr.base_lr = 3.0
    with pytest.raises(AttributeError):
        cfg.no_such_key  # pylint: disable=pointless-statement
    # the views it hands out are copies
    cfg.to_dict()["epochs"] = 999
    cfg.get("lr")["base_lr"] = 999
    cfg.get("image_size").append(5)
    assert cfg.epochs == 8 and cfg.lr.base_lr == 0.05 and cfg.image_size == [32, 32]


def test_config_access_styles():
    cfg = _cfg("vgg16_cifar10.yaml")
    assert cfg.lr.base_lr == cfg["lr"]["base_lr"] == cfg.get("lr.base_lr") == 0.1
    assert cfg.get("lr.nothing", "dflt") == "dflt"
    assert "lr" in cfg and "nothing" not in cfg
    assert isinstance(cfg.net, dict) and isinstance(cfg.lr, Config)


def test_replace_revalidates_and_copies():
    cfg = _cfg("demo.yaml")
    new = cfg.replace(**{"lr.base_lr": "0.3", "epochs": 2.0})
    assert new.lr.base_lr == 0.3 and new.epochs == 2 and isinstance(new.epochs, int)
    assert cfg.lr.base_lr == 0.05 and cfg.epochs == 8  # original untouched
    assert cfg.replace(dataset="imagenet2012").dataset == "imagenet"
    with pytest.raises(ConfigError):
        cfg.replace(device_target="TPU")
    with pytest.raises(ConfigError):
        cfg.replace(lr=0.1)
    with pytest.raises(ConfigError):
        cfg.replace(**{"image_size": [1, 2, 3]})


def test_replace_resolves_per_device_mappings():
    cfg = load_config(cli_args=["--device_target=GPU"])
    new = cfg.replace(amp_level={"Ascend": "O3", "GPU": "O1", "CPU": "O0"})
    assert new.amp_level == "O1"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_dump_round_trips(tmp_path, path):
    cfg = load_config(str(path), cli_args=["--device_target=GPU", "--lr.base_lr=0.07",
                                           "--image_size=96,128", "--net.extra=1"]
                      if "vgg" not in path.name else ["--device_target=GPU"])
    dumped = _write(tmp_path, cfg.dump(), "dumped.yaml")
    again = load_config(dumped)
    assert again.to_dict() == cfg.to_dict()
    assert again.dump() == cfg.dump()


def test_save_config_writes_config_yaml(tmp_path):
    cfg = _cfg("mobilenetv1_cifar10.yaml", "--epochs=3")
    written = C.save_config(cfg, str(tmp_path))
    assert written == str(tmp_path / "config.yaml")
    assert load_config(written).to_dict() == cfg.to_dict()


def test_help_text_lists_every_key_and_alias():
    text = C.help_text()
    for dotted in C._all_keys():
        assert f"--{dotted}" in text, dotted
    for alias in FLAG_ALIASES:
        assert f"--{alias} -> " in text, alias


def test_every_schema_default_is_valid():
    """The defaults themselves pass the schema checks (and resolve for each device)."""
    for dotted in C._all_keys():
        key = C._schema_at(dotted)
        for device in C.DEVICES:
            assert C._coerce(key, key.default, dotted, "test", device) is not None


# ------------------------------------------------------------------ no sys.argv at import

def _import_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_importing_entry_points_does_not_read_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--garbage=1", "positional", "-x", "--lr=q"])
    importlib.import_module("src.config")
    importlib.import_module("src.cli")
    for script in ("train", "eval", "export"):
        module = _import_file(f"_zoo_entry_{script}", REPO / f"{script}.py")
        assert callable(module.main)
    assert sys.argv[1] == "--garbage=1"  # untouched


IMPORT_WITH_GARBAGE_ARGV = """
import importlib, importlib.util, sys
sys.argv = ["prog", "--garbage=1", "positional", "-x", "--lr=q", "--config_path=/nonexistent"]
for name in ("src.config", "src.cli", "src.engine", "src.registry", "src.export"):
    importlib.import_module(name)
for script in ("train", "eval", "export"):
    spec = importlib.util.spec_from_file_location("entry_" + script, script + ".py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
from src.config import load_config
assert load_config().epochs == 1
print("imported fine")
"""


def test_fresh_import_with_garbage_argv_in_a_subprocess():
    import subprocess
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", IMPORT_WITH_GARBAGE_ARGV], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported fine" in proc.stdout


def test_load_config_ignores_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--epochs=77"])
    assert load_config().epochs == SCHEMA["epochs"].default
    assert os.environ.get("PYTEST_CURRENT_TEST")  # sanity: we are under pytest

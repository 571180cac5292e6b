"""Every python command line and flag of the five upstream READMEs (tests/../shared/seeds):
each runs as the seed means it, runs after a printed translation, or is refused with one
line that holds its fix. Nothing exits 0 doing something else.

Paths are swapped for temporary ones, devices for CPU, and most commands go through
``--print_config`` (the same config resolution as a real run, then exit 0); the
resolved config is compared with what the seed says the command does.
"""
import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
from src.cli import run_main
from src.config import load_config
from src.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
RAN, TRANSLATED, REFUSED = "runs as written", "runs after printed translation", "refused with fix"
TALLY = {RAN: 0, TRANSLATED: 0, REFUSED: 0}


def _entry(script):
    spec = importlib.util.spec_from_file_location(f"seed_{script[:-3]}", REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENTRIES = {}


@pytest.fixture(scope="module", autouse=True)
def print_tally(request):
    """The tally of this module's seed commands, printed when it ends (pytest -s shows it)."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\nseed commands: " + ", ".join(f"{k}: {v}" for k, v in TALLY.items()))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Checkpoints carrying the config of a shipped recipe (tensors: a tiny stand-in net)."""
    from mindspore import nn

    from src.checkpoint import save_checkpoint
    root = tmp_path_factory.mktemp("seed_ckpts")
    made = {}
    for name, extra in (("tinydarknet_imagenet", []), ("mobilenetv1_cifar10", []),
                        ("vgg16_cifar10", []), ("yolov3_tiny_coco", [])):
        cfg = load_config(str(CONFIG / f"{name}.yaml"), cli_args=extra)
        path = root / f"{name}.ckpt"
        save_checkpoint(str(path), nn.Dense(2, 2), meta={
            "model": cfg.model, "dataset": cfg.dataset, "num_classes": cfg.num_classes,
            "image_size": list(cfg.image_size), "epoch": 1,
            "config": json.dumps(cfg.to_dict(), sort_keys=True)})
        made[name] = str(path)
    return made


def resolve(script, argv, capsys):
    """(exit code, notes, resolved config dict or None, error lines, all output)."""
    if script not in ENTRIES:
        ENTRIES[script] = _entry(script)
    with pytest.raises(SystemExit) as info:
        run_main(ENTRIES[script].main, list(argv) + ["--print_config"])
    out, err = capsys.readouterr()
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    body = "\n".join(line for line in out.splitlines() if not line.startswith("note: "))
    cfg = yaml.safe_load(body) if info.value.code == 0 else None
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    return info.value.code or 0, notes, cfg, errors, out + err


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def check(script, argv, capsys, expect=None, refused=(), translated=None):
    """One seed command: refused (with these fix fragments) or resolved to ``expect``."""
    code, notes, cfg, errors, output = resolve(script, argv, capsys)
    assert "Traceback" not in output, output[-3000:]
    if refused:
        assert code != 0, f"{script} {argv} exited 0; expected a refusal\n{output[-2000:]}"
        assert len(errors) == 1, output[-2000:]
        for needle in refused:
            assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
        TALLY[REFUSED] += 1
        return errors[0]
    assert code == 0, f"{script} {argv} refused: {errors}"
    for dotted, want in (expect or {}).items():
        assert _get(cfg, dotted) == want, f"{script} {argv}: {dotted}={_get(cfg, dotted)!r}, " \
                                          f"the seed means {want!r}"
    if translated is not None:
        assert notes, f"{script} {argv}: a translation must be printed"
        for needle in translated:
            assert any(needle in n for n in notes), (needle, notes)
        TALLY[TRANSLATED] += 1
    else:
        assert not [n for n in notes if " means " in n or " read as " in n], notes
        TALLY[RAN] += 1
    return notes


# ------------------------------------------------------------------ Tiny-DarkNet (EN + CN)

TINY = f"--config_path={CONFIG / 'tinydarknet_imagenet.yaml'}"

# tinydarknet config.py keys given as flags -> what they set (flag, value, dotted, expected)
TINY_KEYS = [
    ("pre_trained", "False", "pretrained", ""),
    ("num_classes", "1000", "num_classes", 1000),
    ("lr_init", "0.1", "lr.base_lr", 0.1),  # Tiny-DarkNet's lr_init is the peak rate
    ("batch_size", "128", "batch_size", 128),
    ("epoch_size", "500", "epochs", 500),
    ("momentum", "0.9", "optimizer.momentum", 0.9),
    ("weight_decay", "1e-4", "optimizer.weight_decay", 1e-4),
    ("data_path", "/data/ImageNet_Original/train/", "data.dir", "/data/ImageNet_Original/train/"),
    ("train_data_dir", "/data/in/train/", "data.train_dir", "/data/in/train/"),
    ("val_data_path", "/data/in/val/", "data.eval_dir", "/data/in/val/"),
    ("val_data_dir", "/data/in/val/", "data.eval_dir", "/data/in/val/"),
    ("device_target", "CPU", "device_target", "CPU"),
    ("keep_checkpoint_max", "10", "checkpoint.keep_max", 10),
    ("lr_scheduler", "exponential", "lr.schedule", "multistep"),
    ("lr_epochs", "70,140,210,280", "lr.milestones", [70, 140, 210, 280]),
    ("lr_gamma", "0.3", "lr.gamma", 0.3),
    ("eta_min", "0.0", "lr.eta_min", 0.0),
    ("T_max", "150", "lr.t_max", 150),
    ("warmup_epochs", "0", "lr.warmup_epochs", 0.0),
    ("is_dynamic_loss_scale", "0", "loss.dynamic_loss_scale", False),
    ("loss_scale", "1024", "loss.loss_scale", 1024.0),
    ("label_smooth_factor", "0.1", "loss.label_smoothing", 0.1),
]




@pytest.mark.parametrize("argv, expect, note", [
    (["--image_height=224", "--image_width=192"], {"image_size": [224, 192]}, "--image_size[1]=192"),
    (["--use_label_smooth=True", "--label_smooth_factor=0.1"], {"loss.label_smoothing": 0.1},
     "--use_label_smooth=True means nothing to change"),
    (["--onnx_filename=tinydarknet.onnx"],
     {"export.file_name": "tinydarknet", "export.file_format": "ONNX"}, "--export.file_format=ONNX"),
    (["--air_filename=tinydarknet.air"],
     {"export.file_name": "tinydarknet", "export.file_format": "AIR"}, "--export.file_format=AIR"),
])
def test_tinydarknet_keys_with_a_translation(argv, expect, note, capsys):
    check("train.py", [TINY] + argv, capsys, expect, translated=[note])


def test_tinydarknet_checkpoint_path_on_train_is_refused_with_the_save_folder(capsys):
    # upstream Tiny-DarkNet's checkpoint_path is where training saves: here that is output_dir
    check("train.py", [TINY, "--checkpoint_path=/train_tinydarknet.ckpt"], capsys,
          refused=["--output_dir", "--pretrained", "--resume"])


def test_tinydarknet_eval_without_arguments(capsys):
    # python eval.py > eval.log
    check("eval.py", [], capsys, refused=["--checkpoint_path=", "--config_path="])


def test_tinydarknet_cn_train_with_upstream_config_name(capsys, tmp_path):
    # python train.py --config_path=./config/imagenet_config_gpu.yaml --dataset_name=imagenet
    #   --train_data_dir=../dataset/imagenet_original/train --device_target=GPU
    argv = ["--config_path=./config/imagenet_config_gpu.yaml", "--dataset_name=imagenet",
            f"--train_data_dir={tmp_path}/train", "--device_target=CPU"]
    check("train.py", argv, capsys, refused=["--config_path=config/tinydarknet_imagenet.yaml"])
    argv[0] = TINY
    check("train.py", argv, capsys, {"model": "tinydarknet", "dataset": "imagenet",
                                     "data.train_dir": f"{tmp_path}/train"})


def test_tinydarknet_cn_eval(capsys, ckpts, tmp_path):
    # python eval.py -device_target=GPU --val_data_dir=... --dataset_name=imagenet
    #   --config_path=./config/imagenet_config_gpu.yaml --checkpoint_path=$PATH2
    argv = ["-device_target=CPU", f"--val_data_dir={tmp_path}/val", "--dataset_name=imagenet",
            "--config_path=./config/imagenet_config_gpu.yaml",
            f"--checkpoint_path={ckpts['tinydarknet_imagenet']}"]
    check("eval.py", argv, capsys, refused=["--config_path=config/tinydarknet_imagenet.yaml"])
    argv[3] = TINY
    check("eval.py", argv, capsys, {"device_target": "CPU", "data.eval_dir": f"{tmp_path}/val",
                                    "checkpoint_path": ckpts["tinydarknet_imagenet"]},
          translated=["read as --device_target=CPU"])


def test_tinydarknet_cn_export(capsys):
    # python export.py --dataset [DATASET] --file_name [FILE_NAME] --file_format [EXPORT_FORMAT]
    line = check("export.py", ["--dataset=cifar10", "--file_name=tinydarknet",
                               "--file_format=MINDIR"], capsys,
                 refused=["--config_path=config/tinydarknet_cifar10.yaml", "--checkpoint_path"])
    assert line.count("python export.py --config_path=") == 3  # the three CIFAR-10 recipes


# ------------------------------------------------------------------ MobileNetV1

def test_mobilenetv1_train(capsys, tmp_path):
    # python train.py --platform Ascend --dataset_path [TRAIN_DATASET_PATH]
    line = check("train.py", ["--platform", "CPU", "--dataset_path", str(tmp_path)], capsys,
                 refused=["--config_path=config/mobilenetv1_imagenet.yaml",
                          f"--dataset_path {tmp_path}"])
    assert "Traceback" not in line


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet2012"])
def test_mobilenetv1_eval(dataset, capsys, ckpts, tmp_path):
    # python eval.py --dataset [cifar10|imagenet2012] --dataset_path [VAL] --pretrain_ckpt [CKPT]
    check("eval.py", ["--dataset", dataset, "--dataset_path", str(tmp_path), "--pretrain_ckpt",
                      ckpts["mobilenetv1_cifar10"]], capsys,
          {"model": "mobilenetv1", "checkpoint_path": ckpts["mobilenetv1_cifar10"],
           "data.dir": str(tmp_path), "dataset": dataset.replace("2012", "")})


# ------------------------------------------------------------------ YOLOv3-Tiny

YOLO = f"--config_path={CONFIG / 'yolov3_tiny_coco.yaml'}"

YOLO_FLAGS = [  # train.py --help of the seed: flag, value, dotted, expected
    ("device_target", "CPU", "device_target", "CPU"),
    ("data_dir", "/d/coco", "data.dir", "/d/coco"),
    ("per_batch_size", "16", "batch_size", 16),
    ("pretrained_backbone", "/b.ckpt", "pretrained_backbone", "/b.ckpt"),
    ("resume_yolo", "/y.ckpt", "pretrained", "/y.ckpt"),
    ("lr_scheduler", "cosine_annealing", "lr.schedule", "cosine"),
    ("lr", "0.001", "lr.base_lr", 0.001),
    ("lr_epochs", "220,250", "lr.milestones", [220, 250]),
    ("lr_gamma", "0.1", "lr.gamma", 0.1),
    ("eta_min", "0", "lr.eta_min", 0.0),
    ("t_max", "300", "lr.t_max", 300),
    ("max_epoch", "300", "epochs", 300),
    ("warmup_epochs", "4", "lr.warmup_epochs", 4.0),
    ("weight_decay", "0.016", "optimizer.weight_decay", 0.016),
    ("momentum", "0.9", "optimizer.momentum", 0.9),
    ("loss_scale", "1024", "loss.loss_scale", 1024.0),
    ("label_smooth_factor", "0.1", "detection.label_smoothing", 0.1),  # the detector's key
    ("log_interval", "100", "log_interval", 100),
    ("ckpt_path", "outputs/", "output_dir", "outputs/"),  # where training saves
    ("is_distributed", "0", "distributed", False),
    ("resize_rate", "10", "detection.multi_scale_interval", 10),
]




@pytest.mark.parametrize("argv, expect, note", [
    (["--training_shape=416"], {"image_size": [416, 416], "detection.multi_scale": []},
     "--image_size=416"),
    (["--ckpt_interval=-1"], {"checkpoint.save_every_epochs": 1},
     "--checkpoint.save_every_epochs=1"),
    (["--is_save_on_master=1"], {"checkpoint.save_on_all_ranks": False},
     "--checkpoint.save_on_all_ranks=false"),
    (["--is_save_on_master=0"], {"checkpoint.save_on_all_ranks": True},
     "--checkpoint.save_on_all_ranks=true"),
    (["--label_smooth=0", "--label_smooth_factor=0"], {"detection.label_smoothing": 0.0},
     "--detection.label_smoothing=0.0"),
])
def test_yolo_train_flags_with_a_translation(argv, expect, note, capsys):
    check("train.py", [YOLO] + argv, capsys, expect, translated=[note])


@pytest.mark.parametrize("argv, needles", [
    (["--rank=0"], ["--rank", "launcher", "--distributed=True"]),
    (["--group_size=1"], ["--group_size", "launcher"]),
    (["--need_profiler=1"], ["--need_profiler", "benchmark.py"]),
    (["--ckpt_interval=500"], ["--checkpoint.save_every_epochs="]),
    (["--label_smooth=1"], ["--label_smooth_factor="]),
    (["--lr_max=0.1", "--lr=0.01"], ["--lr_max=0.1", "--lr=0.01", "keep one"]),
])
def test_yolo_train_flags_refused_with_their_fix(argv, needles, capsys):
    check("train.py", [YOLO] + argv, capsys, refused=needles)


def test_yolo_export(capsys, ckpts):
    # python export.py --ckpt_file [CKPT_PATH] --file_name [FILE_NAME] --file_format [FILE_FORMAT]
    check("export.py", ["--ckpt_file", ckpts["yolov3_tiny_coco"], "--file_name", "yolo",
                        "--file_format", "MINDIR"], capsys,
          {"model": "yolov3_tiny", "checkpoint_path": ckpts["yolov3_tiny_coco"],
           "export.file_name": "yolo", "export.file_format": "MINDIR"})


@pytest.mark.parametrize("script", ["train.py", "eval.py", "export.py"])
def test_modelarts_flags_are_refused_the_same_everywhere(script, capsys, ckpts):
    # ModelArts (a/b): enable_modelarts=True data_dir=/cache/data/coco2017/ ...
    argv = [YOLO, "--enable_modelarts=True", "--data_dir=/cache/data/coco2017/",
            "--weight_decay=0.016", "--warmup_epochs=4", "--lr_scheduler=cosine_annealing"]
    if script != "train.py":
        argv += ["--checkpoint_url=s3://dir_to_your_trained_ckpt/",
                 f"--pretrained={ckpts['yolov3_tiny_coco']}", "--testing_shape=640"]
    check(script, argv, capsys, refused=["moxing", "--modelarts.enabled=False"])


def test_yolo_modelarts_eval_keys_off_modelarts(capsys, ckpts):
    check("eval.py", [YOLO, "--data_dir=/cache/data/coco2017/",
                      "--checkpoint_url=s3://dir_to_your_trained_ckpt/",
                      f"--pretrained={ckpts['yolov3_tiny_coco']}", "--testing_shape=640"], capsys,
          {"modelarts.checkpoint_url": "s3://dir_to_your_trained_ckpt/",
           "checkpoint_path": ckpts["yolov3_tiny_coco"], "image_size": [640, 640]})


# ------------------------------------------------------------------ VGG16

VGG = f"--config_path={CONFIG / 'vgg16_cifar10.yaml'}"


@pytest.mark.parametrize("argv", [
    ["--data_path=DATA", "--device_id=0"],  # python train.py --data_path= --device_id=
    ["--device_target=CPU", "--device_id=0", "--dataset=cifar10", "--data_path=DATA"],
    ["--device_target=CPU", "--dataset=imagenet2012", "--is_distributed=0", "--data_path=DATA"],
])
def test_vgg16_train_without_config_lists_the_configs(argv, capsys, tmp_path):
    argv = [a.replace("DATA", str(tmp_path)) for a in argv]
    line = check("train.py", argv, capsys, refused=["--config_path=config/vgg16_",
                                                    f"--data_path={tmp_path}"])
    if "--dataset=imagenet2012" in argv:
        assert line.count("--config_path=") == 3  # the ImageNet recipes only


@pytest.mark.parametrize("argv", [
    ["--data_path=DATA", "--pre_trained=CKPT"],
    ["--device_target=CPU", "--device_id=0", "--dataset=cifar10", "--data_path=DATA",
     "--pre_trained=CKPT"],
    ["--data_path=DATA", "--dataset=cifar10", "--device_target=CPU", "--pre_trained=CKPT"],
])
def test_vgg16_eval_takes_the_checkpoints_config(argv, capsys, ckpts, tmp_path):
    argv = [a.replace("DATA", str(tmp_path)).replace("CKPT", ckpts["vgg16_cifar10"]) for a in argv]
    check("eval.py", argv, capsys, {"model": "vgg16", "checkpoint_path": ckpts["vgg16_cifar10"],
                                    "data.dir": str(tmp_path), "net.batch_norm": True})


VGG_FLAGS = [  # train.py usage and config.py of the seed
    ("device_target", "CPU", "device_target", "CPU"),
    ("data_path", "/d", "data.dir", "/d"),
    ("dataset", "cifar10", "dataset", "cifar10"),
    ("is_distributed", "0", "distributed", False),
    ("device_id", "6", "device_id", 6),
    ("pre_trained", "/w.ckpt", "pretrained", "/w.ckpt"),
    ("ckpt_path", "/save/here", "output_dir", "/save/here"),
    ("num_classes", "10", "num_classes", 10),
    ("lr", "0.01", "lr.base_lr", 0.01),
    ("lr_init", "0.01", "lr.init_lr", 0.01),  # VGG16's lr_init is the warmup start
    ("lr_max", "0.1", "lr.base_lr", 0.1),
    ("lr_epochs", "30,60,90,120", "lr.milestones", [30, 60, 90, 120]),
    ("lr_scheduler", "step", "lr.schedule", "poly"),
    ("warmup_epochs", "5", "lr.warmup_epochs", 5.0),
    ("batch_size", "64", "batch_size", 64),
    ("max_epoch", "70", "epochs", 70),
    ("momentum", "0.9", "optimizer.momentum", 0.9),
    ("weight_decay", "5e-4", "optimizer.weight_decay", 5e-4),
    ("loss_scale", "1.0", "loss.loss_scale", 1.0),
    ("label_smooth_factor", "0", "loss.label_smoothing", 0.0),
    ("image_size", "224,224", "image_size", [224, 224]),
    ("pad_mode", "same", "net.pad_mode", "same"),
    ("has_bias", "False", "net.has_bias", False),
    ("batch_norm", "True", "net.batch_norm", True),
    ("keep_checkpoint_max", "10", "checkpoint.keep_max", 10),
]


FLAG_CASES = ([("tinydarknet", TINY) + k for k in TINY_KEYS] + [("yolo", YOLO) + k for k in YOLO_FLAGS]
              + [("vgg16", VGG) + k for k in VGG_FLAGS])


@pytest.mark.parametrize("config, flag, value, dotted, want", [c[1:] for c in FLAG_CASES],
                         ids=[f"{c[0]}-{c[2]}" for c in FLAG_CASES])
def test_seed_flags_run_as_written(config, flag, value, dotted, want, capsys):
    """Each upstream flag (train.py --help, config.py keys) sets what the seed says."""
    check("train.py", [config, f"--{flag}={value}"], capsys, {dotted: want})


@pytest.mark.parametrize("argv, expect, note", [
    (["--ckpt_interval=5"], {"checkpoint.save_every_epochs": 5}, "save_every_epochs=5"),
    (["--label_smooth=0"], {"loss.label_smoothing": 0.0}, "--loss.label_smoothing=0.0"),
    (["--padding=0"], {"net.pad_mode": "same"}, "--net.pad_mode=same"),
    (["--padding=1", "--pad_mode=pad"], {"net.pad_mode": "pad"}, "--net.pad_mode=pad"),
    (["--initialize_mode=XavierUniform"], {"net.weight_init": "xavier_uniform"}, "xavier_uniform"),
    (["--initialize_mode=KaimingNormal"], {"net.weight_init": "kaiming_normal"}, "kaiming_normal"),
    (["--has_dropout=True"], {"net.dropout": 0.5}, "--net.dropout=0.5"),
    (["--has_dropout=False"], {"net.dropout": 0.0}, "--net.dropout=0.0"),
])
def test_vgg16_keys_with_a_translation(argv, expect, note, capsys):
    check("train.py", [VGG] + argv, capsys, expect, translated=[note])


@pytest.mark.parametrize("argv, needles", [
    (["--buffer_size=10"], ["--buffer_size", "shuffled"]),
    (["--padding=0", "--pad_mode=pad"], ["--padding=0", "--pad_mode=pad", "keep one"]),
    (["--label_smooth=1"], ["--label_smooth_factor="]),
])
def test_vgg16_keys_refused_with_their_fix(argv, needles, capsys):
    check("train.py", [VGG] + argv, capsys, refused=needles)


def test_vgg16_options_on_another_model_are_refused(capsys):
    check("train.py", [TINY, "--has_bias=True"], capsys, refused=["upstream vgg16", "tinydarknet"])
    check("train.py", [TINY, "--batch_norm=True"], capsys, refused=["vgg16", "--net.batch_norm"])


# ------------------------------------------------------------------ the demo and a real run

def test_python_train_py_alone_is_the_demo(capsys):
    check("train.py", [], capsys, {"model": "tinydarknet", "data.demo": True,
                                   "data.dir": "demo_data/cifar10"})


def test_a_flag_only_one_model_has_chooses_the_config_and_says_so(capsys):
    notes = check("train.py", ["--dataset=coco"], capsys, {"model": "yolov3_tiny"})
    assert any("config/yolov3_tiny_coco.yaml" in n for n in notes)
    notes = check("train.py", ["--has_bias=False", "--dataset=cifar10"], capsys,
                  {"model": "vgg16", "net.has_bias": False})
    assert any("config/vgg16_cifar10.yaml" in n for n in notes)


def test_readme_alias_table_is_the_generated_one():
    from src.config import alias_table
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- alias-table:start -->\n")[1].split("\n<!-- alias-table:end -->")[0]
    assert block == alias_table(), "README's alias table is stale: paste src.config.alias_table()"


@pytest.mark.parametrize("name, configs", [
    ("default_config.yaml", ["config/mobilenetv1_cifar10.yaml", "config/yolov3_tiny_coco.yaml"]),
    ("cifar10_config.yaml", ["config/tinydarknet_cifar10.yaml", "config/vgg16_cifar10.yaml"]),
    ("imagenet2012_config.yaml", ["config/vgg16_imagenet.yaml"]),
])
def test_upstream_config_file_names_every_model_spec_that_claims_it(name, configs):
    """The specs' upstream_config_files: a name several upstreams used lists each model's config."""
    from src.config import read_yaml
    with pytest.raises(ConfigError) as caught:
        read_yaml(f"./config/{name}")
    message = str(caught.value)
    assert all(c in message for c in configs), message
    assert all(os.path.isfile(REPO / c) for c in configs)
    assert (f"--config_path={configs[0]}" in message) == (len(configs) == 1), message

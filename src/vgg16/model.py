"""VGG16 as the zoo sees it: an image classifier (loss, evaluation and deploy are the task's).

Its upstream's own flags are read here too: ``--has_bias``/``--batch_norm``/``--pad_mode``
are network options, ``--has_dropout``/``--initialize_mode``/``--padding`` translate to them.
"""
from src.config import as_bool_flag, show
from src.errors import ConfigError
from src.registry import ModelSpec, register_model

_INIT_MODES = {"xavieruniform": "xavier_uniform", "kaimingnormal": "kaiming_normal",
               "kaiminguniform": "kaiming_uniform", "normal": "normal",
               "truncatednormal": "truncated_normal"}


def _has_dropout(value, ctx):
    """VGG16: `--net.dropout=0.5` (True) or `0.0` (False)"""
    return [("net.dropout", 0.5 if as_bool_flag(value, "has_dropout") else 0.0)]


def _initialize_mode(value, ctx):
    """VGG16: `--net.weight_init=xavier_uniform` (XavierUniform) / `kaiming_normal` (KaimingNormal)"""
    mode = _INIT_MODES.get(str(value).replace("_", "").lower())
    if mode is None:
        raise ConfigError(f"--initialize_mode={show(value)[1:-1]} is not an upstream VGG16 mode; "
                          f"use XavierUniform or KaimingNormal (or --net.weight_init=<scheme>)")
    return [("net.weight_init", mode)]


def _padding(value, ctx):
    """VGG16: `--net.pad_mode=same` (0) or `pad` (1)"""
    modes = {"0": "same", "1": "pad"}
    if str(value) not in modes:
        raise ConfigError(f"--padding={show(value)[1:-1]}: upstream VGG16 used padding 0 with "
                          f"pad_mode same and 1 with pad_mode pad; pass --padding=0 or --padding=1")
    return [("net.pad_mode", modes[str(value)])]


SPEC = register_model(ModelSpec(
    "vgg16", "classification", builder="src.vgg16.net:vgg16",
    input_multiple="src.vgg16.net:DOWNSAMPLE", title="VGG16",
    upstream_flags={"has_bias": "net.has_bias", "batch_norm": "net.batch_norm",
                    "pad_mode": "net.pad_mode"},
    upstream_translations={"has_dropout": _has_dropout, "initialize_mode": _initialize_mode,
                           "padding": _padding},
    upstream_config_files={"cifar10_config.yaml": "config/vgg16_cifar10.yaml",
                           "imagenet2012_config.yaml": "config/vgg16_imagenet.yaml"}))

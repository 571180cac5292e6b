"""The effective input preprocessing of a config: the model spec's, as ``preprocess`` overrides it.

Every consumer (evaluation datasets, detect.py, the export's deploy spec, the
deploy runners) asks :func:`eval_preprocessing`, so a config (or a converted
checkpoint's stored config) changes all of them at once.
"""
import dataclasses

from src.errors import ConfigError
from src.registry import Preprocessing, get_model_spec


def eval_preprocessing(cfg) -> Preprocessing:
    """The model's :class:`Preprocessing` under ``cfg`` with ``cfg.preprocess`` applied.

    mean/std stay None (the dataset's statistics) unless the model or the config
    sets them; resize_mode None means the dataset's own evaluation resize.
    """
    pre = get_model_spec(cfg.model).preprocessing_for(cfg)
    section = cfg.preprocess
    changes = {}
    for key in ("mean", "std"):
        values = list(getattr(section, key))
        if values:
            if len(values) != 3:
                raise ConfigError(f"preprocess.{key} has {len(values)} value(s); give 3 (RGB, "
                                  f"0-255 scale), e.g. --preprocess.{key}=127.5,127.5,127.5, "
                                  f"or leave it empty for the model's default")
            changes[key] = tuple(float(v) for v in values)
    if section.resize_mode:
        changes["resize_mode"] = section.resize_mode
    changes["letterbox_fill"] = float(section.letterbox_fill)
    return dataclasses.replace(pre, **changes)


def describe(pre: Preprocessing, image_size) -> str:
    """One line naming the input preprocessing (printed by detect.py and the COCO evaluation)."""
    height, width = (int(v) for v in image_size)
    resize = {"letterbox": f"letterbox to {height}x{width} (fill {pre.letterbox_fill:g})",
              "stretch": f"resize to {height}x{width}"}.get(
                  pre.resize_mode, f"the dataset's resize to {height}x{width}")

    def stats(name, values):
        return f"{name} [" + ", ".join(f"{v:g}" for v in values) + "]" if values \
            else f"the dataset's {name}"
    return f"preprocessing: {resize}, {stats('mean', pre.mean)}, {stats('std', pre.std)}"

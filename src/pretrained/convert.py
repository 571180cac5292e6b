"""Fill a zoo network from a source file by its recipe and write a self-describing checkpoint.

Every network parameter (BN moving statistics included) must receive a source
tensor of exactly its shape, and every source tensor must be used; anything
else is a :class:`ConversionError` and nothing is written.

The checkpoint carries, besides the tensors: ``model``, ``dataset``,
``num_classes``, ``image_size``, ``config`` (the resolved config as sorted JSON,
net options included), ``class_names`` and ``class_labels`` (JSON lists in the
zoo's class order), ``preprocessing`` (JSON: the source's input pipeline, for
which the config has no keys yet) and ``converted_from`` (JSON: source,
file name, sha256, the published accuracy when the file is a known one).
"""
import json
import os
from typing import Dict, Optional

import numpy as np

from src.pretrained import ConversionError, darknet
from src.pretrained.known_files import identify, sha256_of
from src.pretrained.recipes import ReadArgs, Recipe, get_recipe

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO_ROOT, "config")


def preprocess_overrides(preprocessing: Dict[str, object]):
    """The config's ``preprocess.*`` values of a recipe's source preprocessing.

    Entry points that take their config from the checkpoint then preprocess as
    the source framework did (the "preprocessing" meta entry says it in full).
    """
    overrides = [(f"preprocess.{key}", list(preprocessing[key])) for key in ("mean", "std")
                 if preprocessing.get(key) is not None]
    if preprocessing.get("resize_mode"):
        overrides.append(("preprocess.resize_mode", preprocessing["resize_mode"]))
    if "letterbox_fill" in preprocessing:
        overrides.append(("preprocess.letterbox_fill", preprocessing["letterbox_fill"]))
    return overrides


def recipe_config(recipe: Recipe, num_classes: int):
    """The resolved config a converted checkpoint records."""
    from src.config import load_config
    overrides = [("num_classes", num_classes), ("image_size", list(recipe.image_size))]
    overrides += [(f"net.{k}", v) for k, v in recipe.net_options.items()]
    overrides += list(recipe.config_overrides)
    overrides += preprocess_overrides(recipe.preprocessing)
    return load_config(os.path.join(CONFIG_DIR, recipe.config_file), overrides=overrides)


def fill_network(net, tensors: Dict[str, np.ndarray], source: str) -> int:
    """Set every parameter of ``net`` from ``tensors`` (exact names and shapes); return the count."""
    import mindspore as ms
    from src.checkpoint import network_parameters
    pairs = network_parameters(net)
    names = {name for name, _ in pairs}
    missing = [name for name in names if name not in tensors]
    unused = [name for name in tensors if name not in names]
    wrong = [f"{name} {tuple(tensors[name].shape)} vs {tuple(param.shape)}"
             for name, param in pairs
             if name in tensors and tuple(tensors[name].shape) != tuple(param.shape)]
    if missing or unused or wrong:
        parts = [f"{len(v)} {what}: " + ", ".join(sorted(v)[:3]) + (" ..." if len(v) > 3 else "")
                 for what, v in (("network parameters not filled", missing),
                                 ("source tensors unused", unused),
                                 ("shape mismatches", wrong)) if v]
        raise ConversionError(f"{source} does not fit the zoo's network ({'; '.join(parts)}); "
                              f"check --model and --cfg")
    for name, param in pairs:
        param.set_data(ms.Tensor(np.ascontiguousarray(tensors[name], np.float32)))
    return len(pairs)


def convert(source: str, model: str, input_path: str, output_path: str,
            cfg_path: Optional[str] = None, labels_path: Optional[str] = None,
            source_bn_eps: Optional[float] = None, log=print) -> Dict[str, object]:
    """Convert ``input_path`` into the checkpoint ``output_path``; return its metadata."""
    from src.checkpoint import save_checkpoint
    from src.registry import create_model
    recipe = get_recipe(source, model)
    if not output_path.endswith(".ckpt"):
        raise ConversionError(f"--output={output_path!r} must name a .ckpt file")
    if not os.path.isfile(input_path):
        raise ConversionError(f"--input={input_path!r} not found; pass the downloaded weights "
                              f"file (or use --download=<name>)")
    out_dir = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(out_dir):
        raise ConversionError(f"the folder of --output={output_path!r} does not exist; create it "
                              f"first")
    if recipe.default_cfg:
        cfg_path = cfg_path or darknet.cfg_path_for(recipe.default_cfg)
    elif cfg_path:
        raise ConversionError(f"--cfg is for Darknet weights; {source} files describe "
                              f"themselves")

    digest = sha256_of(input_path)
    known = identify(digest)
    if known and (known.source, known.model) != (source, model):
        raise ConversionError(f"{input_path!r} is the published {known.name} ({known.source} "
                              f"{known.model}); use --source={known.source} --model={known.model}")
    if known:
        log(f"{os.path.basename(input_path)} is the published {known.name} weights "
            f"(sha256 {digest[:12]}...): {known.published}")
    else:
        log(f"note: {os.path.basename(input_path)} (sha256 {digest[:12]}...) is not a known "
            f"published file; converting it as {source} {model} weights")

    target_eps = float(recipe.net_options.get("bn_eps", 1e-5))
    eps = recipe.source_bn_eps if source_bn_eps is None else float(source_bn_eps)
    converted = recipe.read(ReadArgs(input_path, cfg_path, labels_path, eps, target_eps))
    cfg = recipe_config(recipe, converted.num_classes)
    # Every parameter is overwritten: skip the random init (20 s for VGG16's 138 M values).
    from mindspore.nn.utils import no_init_parameters
    with no_init_parameters():
        net = create_model(model, converted.num_classes, tuple(recipe.image_size), **cfg.net)
    count = fill_network(net, converted.tensors, repr(input_path))
    origin = {"source": source, "file": os.path.basename(input_path), "sha256": digest,
              "source_bn_eps": eps}
    if cfg_path and recipe.default_cfg:
        origin["cfg"] = os.path.basename(cfg_path)
    if known:
        origin.update(known=known.name, published=known.published)
    meta = {
        "model": model, "dataset": cfg.dataset, "num_classes": converted.num_classes,
        "image_size": list(recipe.image_size),
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "class_names": json.dumps(converted.class_names),
        "class_labels": json.dumps(converted.class_labels),
        "preprocessing": json.dumps(recipe.preprocessing, sort_keys=True),
        "converted_from": json.dumps(origin, sort_keys=True),
    }
    save_checkpoint(output_path, net, meta=meta)
    log(f"converted {count} tensors ({sum(int(np.prod(t.shape)) for t in converted.tensors.values())}"
        f" values) into {output_path}: {model}, {converted.num_classes} classes, "
        f"input {recipe.image_size[0]}x{recipe.image_size[1]}")
    return meta

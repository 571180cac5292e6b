"""Per (source, model): where each source tensor goes and what the converted network must be.

A recipe gives the network options that make the zoo's network compute what
the source framework computed, the config the checkpoint records (base YAML,
input size, eval resize), the source's input preprocessing, and a reader that
turns the source file into ``{zoo parameter name: array}`` plus the class
count and names.
"""
import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.datasets.coco_categories import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
from src.datasets.common import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from src.pretrained import ConversionError, darknet

SOURCES = ("darknet", "torchvision", "timm")
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DARKNET_IMAGENET_WNIDS = os.path.join(DATA_DIR, "darknet_imagenet_wnids.txt")
DARKNET_IMAGENET_NAMES = os.path.join(DATA_DIR, "darknet_imagenet_names.txt")
DARKNET_TRAINING_BN_EPS = 1e-5  # what Darknet's (GPU) training and published numbers used
TORCH_BN_EPS = 1e-5
BN_TARGET_SUFFIXES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                      "running_var": "moving_variance"}


@dataclasses.dataclass
class Converted:
    """What a source file becomes: zoo tensors, class count and names."""

    tensors: Dict[str, np.ndarray]
    num_classes: int
    class_names: List[str]
    class_labels: List[str]  # dataset folder / category labels, in the zoo's class order


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to convert one source framework's weights of one model."""

    source: str
    model: str
    config_file: str                 # the zoo's YAML recipe the checkpoint's config starts from
    net_options: Dict[str, object]
    image_size: Tuple[int, int]
    config_overrides: Tuple[Tuple[str, object], ...]
    # Recorded in the checkpoint's "preprocessing" entry and, as far as the zoo's
    # pipeline does it, in its config's preprocess section (convert.preprocess_overrides):
    # mean/std RGB on the 0-255 scale and resize_mode as src.registry.Preprocessing
    # (None: shorter side to resize_shorter, centre crop), plus the letterbox fill.
    preprocessing: Dict[str, object]
    read: Callable                   # read(args) -> Converted
    source_bn_eps: float
    suffixes: Tuple[str, ...]        # input file name endings this source uses
    default_cfg: Optional[str] = None  # the shipped Darknet cfg


@dataclasses.dataclass(frozen=True)
class ReadArgs:
    """Inputs of a recipe's reader."""

    path: str
    cfg_path: Optional[str]
    labels_path: Optional[str]
    source_bn_eps: float
    target_bn_eps: float


# ---------------------------------------------------------------------------- Darknet

# Zoo cell of each Darknet convolution, in cfg order: (conv cell, BN cell or None).
YOLOV3_TINY_DARKNET_CELLS = tuple(
    [(f"backbone.conv{i}.conv", f"backbone.conv{i}.bn") for i in range(9)]
    + [("head_stride32", None)]
    + [(f"backbone.conv{i}.conv", f"backbone.conv{i}.bn") for i in (9, 10)]
    + [("head_stride16", None)])
TINYDARKNET_FEATURES = (0, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19)
TINYDARKNET_DARKNET_CELLS = tuple(
    [(f"features.{i}.conv", f"features.{i}.bn") for i in TINYDARKNET_FEATURES[:-1]]
    + [(f"features.{TINYDARKNET_FEATURES[-1]}.conv", None)])


def _darknet_tensors(args: ReadArgs, cells, model: str):
    cfg_path = args.cfg_path
    convs = darknet.conv_layers(cfg_path)
    if len(convs) != len(cells):
        raise ConversionError(f"{cfg_path!r} has {len(convs)} convolutions but the zoo's {model} "
                              f"has {len(cells)}; pass --cfg of a {model} network (or another "
                              f"--model)")
    layers = darknet.read_weights(args.path, convs, args.source_bn_eps, args.target_bn_eps,
                                  cfg_path)
    tensors = {}
    for conv, layer, (conv_cell, bn_cell) in zip(convs, layers, cells):
        if conv.batch_normalize != (bn_cell is not None):
            raise ConversionError(
                f"{cfg_path!r} layer {conv.index} is {'' if conv.batch_normalize else 'not '}"
                f"batch-normalised, unlike the zoo's {model} ({conv_cell}); it is another "
                f"network: check --model and --cfg")
        tensors[f"{conv_cell}.weight"] = layer["weight"]
        if bn_cell is None:
            tensors[f"{conv_cell}.bias"] = layer["bias"]
        else:
            tensors[f"{bn_cell}.beta"] = layer["bias"]
            for key in ("gamma", "moving_mean", "moving_variance"):
                tensors[f"{bn_cell}.{key}"] = layer[key]
    return convs, tensors


def read_labels(path: str) -> Tuple[List[str], List[str]]:
    """(labels, display names) from a file of ``<label>[ <name>]`` lines, in file order."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"cannot read labels file {path!r} ({exc}); pass a text file with "
                              f"one label per line") from None
    labels = [row.split(None, 1)[0] for row in rows]
    names = [row.split(None, 1)[1] if " " in row or "\t" in row else row.split(None, 1)[0]
             for row in rows]
    if len(set(labels)) != len(labels):
        raise ConversionError(f"labels file {path!r} lists a label twice; each class needs a "
                              f"unique label")
    return labels, names


def darknet_imagenet_labels() -> Tuple[List[str], List[str]]:
    """Darknet's 1000 ImageNet wnids in its output order, with their short names."""
    with open(DARKNET_IMAGENET_WNIDS, encoding="utf-8") as f:
        wnids = f.read().split()
    with open(DARKNET_IMAGENET_NAMES, encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f if line.strip()]
    return wnids, names


def read_darknet_tinydarknet(args: ReadArgs) -> Converted:
    """tiny.cfg weights; the 1000 outputs permuted from Darknet's label order to sorted wnids."""
    convs, tensors = _darknet_tensors(args, TINYDARKNET_DARKNET_CELLS, "tinydarknet")
    num_classes = convs[-1].filters
    if args.labels_path:
        labels, names = read_labels(args.labels_path)
    elif num_classes == 1000:
        labels, names = darknet_imagenet_labels()
    else:
        raise ConversionError(f"{args.cfg_path!r} has {num_classes} classes, not Darknet's 1000 "
                              f"ImageNet ones; pass --labels=<file> with its labels in output order")
    if len(labels) != num_classes:
        raise ConversionError(f"the labels file lists {len(labels)} classes but the network has "
                              f"{num_classes}; pass the labels of this network")
    # The zoo's classification datasets number classes by sorted folder name.
    order = sorted(range(num_classes), key=lambda k: labels[k])
    last = TINYDARKNET_DARKNET_CELLS[-1][0]
    for key in (f"{last}.weight", f"{last}.bias"):
        tensors[key] = np.ascontiguousarray(tensors[key][order])
    return Converted(tensors, num_classes, [names[k] for k in order], [labels[k] for k in order])


def read_darknet_yolov3_tiny(args: ReadArgs) -> Converted:
    """yolov3-tiny.cfg weights (any class count); head channels already anchor-major."""
    convs, tensors = _darknet_tensors(args, YOLOV3_TINY_DARKNET_CELLS, "yolov3_tiny")
    filters = convs[-1].filters
    if filters % 3 or filters // 3 <= 5:
        raise ConversionError(f"{args.cfg_path!r}: the head has {filters} filters, not "
                              f"3 * (classes + 5); it is not a YOLOv3-Tiny cfg")
    num_classes = filters // 3 - 5
    if args.labels_path:
        labels, names = read_labels(args.labels_path)
        if len(labels) != num_classes:
            raise ConversionError(f"the labels file lists {len(labels)} classes but the network "
                                  f"has {num_classes}; pass the labels of this network")
    elif num_classes == len(COCO_CLASS_NAMES):
        # Darknet's classes are COCO's categories in id order (the zoo's order too).
        labels, names = [str(c) for c in COCO_CATEGORY_IDS], list(COCO_CLASS_NAMES)
    else:
        labels = names = [f"class_{k}" for k in range(num_classes)]
    return Converted(tensors, num_classes, list(names), list(labels))


# ---------------------------------------------------------------------------- PyTorch

def _map_state_dict(state: Dict[str, np.ndarray], mapping: Dict[str, str], path: str,
                    optional: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Rename ``state`` by ``mapping``; every source key must be mapped and present."""
    missing = [k for k in mapping if k not in state]
    extra = [k for k in state if k not in mapping and not k.endswith(tuple(optional))]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (" + ", ".join(missing[:3])
                         + (", ..." if len(missing) > 3 else "") + ")")
        if extra:
            parts.append(f"{len(extra)} unexpected (" + ", ".join(extra[:3])
                         + (", ..." if len(extra) > 3 else "") + ")")
        raise ConversionError(f"{path!r} does not hold the expected tensors: "
                              + "; ".join(parts) + "; it is another network or another "
                              "framework's file: check --source and --model")
    return {mapping[k]: np.asarray(v, np.float32) for k, v in state.items() if k in mapping}


VGG16_TORCHVISION_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_ZOO_CONVS = (0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16)


def vgg16_torchvision_mapping() -> Dict[str, str]:
    """torchvision ``vgg16`` state-dict names -> the zoo's VGG16 (``has_bias`` on)."""
    mapping = {}
    for src, dst in zip(VGG16_TORCHVISION_CONVS, VGG16_ZOO_CONVS):
        for kind in ("weight", "bias"):
            mapping[f"features.{src}.{kind}"] = f"features.{dst}.conv.{kind}"
    for index in (0, 3, 6):
        for kind in ("weight", "bias"):
            mapping[f"classifier.{index}.{kind}"] = f"classifier.{index}.{kind}"
    return mapping


MOBILENETV1_TIMM_STAGES = (1, 2, 2, 6, 2)


def mobilenetv1_timm_mapping() -> Dict[str, str]:
    """timm ``mobilenetv1_100`` names -> the zoo's MobileNetV1 ``features.k`` cells."""
    mapping = {"conv_stem.weight": "features.0.conv.weight"}

    def bn(src, dst):
        for kind, target in BN_TARGET_SUFFIXES.items():
            mapping[f"{src}.{kind}"] = f"{dst}.bn.{target}"

    bn("bn1", "features.0")
    k = 1
    for stage, blocks in enumerate(MOBILENETV1_TIMM_STAGES):
        for block in range(blocks):
            prefix = f"blocks.{stage}.{block}"
            mapping[f"{prefix}.conv_dw.weight"] = f"features.{2 * k - 1}.conv.weight"
            bn(f"{prefix}.bn1", f"features.{2 * k - 1}")
            mapping[f"{prefix}.conv_pw.weight"] = f"features.{2 * k}.conv.weight"
            bn(f"{prefix}.bn2", f"features.{2 * k}")
            k += 1
    mapping["classifier.weight"] = "classifier.weight"
    mapping["classifier.bias"] = "classifier.bias"
    return mapping


def _imagenet_classes(num_classes: int) -> Tuple[List[str], List[str]]:
    """Names and wnids of the 1000 ImageNet classes in sorted-wnid order (torchvision/timm's)."""
    if num_classes != 1000:
        labels = [f"class_{k}" for k in range(num_classes)]
        return labels, labels
    wnids, names = darknet_imagenet_labels()
    order = sorted(range(len(wnids)), key=lambda k: wnids[k])
    return [names[k] for k in order], [wnids[k] for k in order]


def _fold_torch_bn_eps(tensors: Dict[str, np.ndarray], args: ReadArgs):
    for name, value in tensors.items():
        if name.endswith(".moving_variance"):
            tensors[name] = (value.astype(np.float64) + args.source_bn_eps
                             - args.target_bn_eps).astype(np.float32)


def _classifier_classes(tensors, key, args) -> Tuple[int, List[str], List[str]]:
    num_classes = int(tensors[key].shape[0])
    if args.labels_path:
        labels, names = read_labels(args.labels_path)
        if len(labels) != num_classes:
            raise ConversionError(f"the labels file lists {len(labels)} classes but the network "
                                  f"has {num_classes}; pass the labels of this network")
        return num_classes, names, labels
    names, labels = _imagenet_classes(num_classes)
    return num_classes, names, labels


def read_torchvision_vgg16(args: ReadArgs) -> Converted:
    """torchvision VGG16 ``.pth`` (read without torch and without running pickled code)."""
    from src.pretrained.torch_pickle import load_state_dict
    tensors = _map_state_dict(load_state_dict(args.path), vgg16_torchvision_mapping(), args.path)
    num_classes, names, labels = _classifier_classes(tensors, "classifier.6.weight", args)
    return Converted(tensors, num_classes, names, labels)


def load_safetensors(path: str) -> Dict[str, np.ndarray]:
    """Tensors of a ``.safetensors`` file (a JSON header and raw data; nothing executable)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"{path!r} is not a readable safetensors file ({first})") from None


def read_timm_mobilenetv1(args: ReadArgs) -> Converted:
    """timm ``mobilenetv1_100`` ``model.safetensors`` (or a ``.pth`` state dict)."""
    if args.path.endswith((".pth", ".pt", ".bin")):
        from src.pretrained.torch_pickle import load_state_dict
        state = load_state_dict(args.path)
    else:
        state = load_safetensors(args.path)
    tensors = _map_state_dict(state, mobilenetv1_timm_mapping(), args.path,
                              optional=(".num_batches_tracked",))
    _fold_torch_bn_eps(tensors, args)
    num_classes, names, labels = _classifier_classes(tensors, "classifier.weight", args)
    return Converted(tensors, num_classes, names, labels)


# ---------------------------------------------------------------------------- the recipes

RGB_UNIT_RANGE = {"color": "RGB", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}
RECIPES = {
    ("darknet", "yolov3_tiny"): Recipe(
        source="darknet", model="yolov3_tiny", config_file="yolov3_tiny_coco.yaml",
        net_options={"bn_eps": 1e-5, "leaky_alpha": 0.1, "grid_sensitivity": False},
        image_size=(416, 416), config_overrides=(),
        preprocessing={"resize_mode": "letterbox", "letterbox_fill": 0.5,
                       "letterbox_fill_note": "value of the padding after normalisation "
                                              "(Darknet's grey 0.5 on RGB/255)",
                       "interpolation": "bilinear", **RGB_UNIT_RANGE},
        read=read_darknet_yolov3_tiny, source_bn_eps=DARKNET_TRAINING_BN_EPS,
        suffixes=(".weights",), default_cfg="yolov3-tiny.cfg"),
    ("darknet", "tinydarknet"): Recipe(
        source="darknet", model="tinydarknet", config_file="tinydarknet_imagenet.yaml",
        net_options={"leaky_alpha": 0.1, "final_conv": "linear", "bn_eps": 1e-5},
        image_size=(224, 224),
        # Darknet's classifier validation: shorter side to 224, centre crop 224.
        config_overrides=(("data.resize_eval", 224), ("data.square_resize_eval", False)),
        preprocessing={"resize_mode": None, "resize_shorter": 224,
                       "crop": 224, "interpolation": "bilinear", **RGB_UNIT_RANGE},
        read=read_darknet_tinydarknet, source_bn_eps=DARKNET_TRAINING_BN_EPS,
        suffixes=(".weights",), default_cfg="tiny.cfg"),
    ("torchvision", "vgg16"): Recipe(
        source="torchvision", model="vgg16", config_file="vgg16_imagenet.yaml",
        net_options={"has_bias": True, "batch_norm": False, "pad_mode": "pad"},
        image_size=(224, 224),
        config_overrides=(("data.resize_eval", 256), ("data.square_resize_eval", False)),
        preprocessing={"resize_mode": None, "resize_shorter": 256,
                       "crop": 224, "interpolation": "bilinear", "color": "RGB",
                       "mean": list(IMAGENET_MEAN_RGB), "std": list(IMAGENET_STD_RGB)},
        read=read_torchvision_vgg16, source_bn_eps=TORCH_BN_EPS, suffixes=(".pth", ".pt")),
    ("timm", "mobilenetv1"): Recipe(
        source="timm", model="mobilenetv1", config_file="mobilenetv1_imagenet.yaml",
        net_options={"stride2_padding": "symmetric", "bn_eps": 1e-5},
        image_size=(224, 224),
        # timm's crop_pct 0.875 at 224: shorter side 256, centre crop 224.
        config_overrides=(("data.resize_eval", 256), ("data.square_resize_eval", False)),
        preprocessing={"resize_mode": None, "resize_shorter": 256,
                       "crop": 224, "interpolation": "bicubic", "color": "RGB",
                       "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
        read=read_timm_mobilenetv1, source_bn_eps=TORCH_BN_EPS,
        suffixes=(".safetensors", ".pth", ".pt", ".bin")),
}


def get_recipe(source: str, model: str) -> Recipe:
    """The recipe of (source, model); a ConversionError naming the supported pairs otherwise."""
    if source not in SOURCES:
        raise ConversionError(f"unknown --source={source!r}; choose one of {list(SOURCES)}")
    recipe = RECIPES.get((source, model))
    if recipe is None:
        pairs = ", ".join(f"--source={s} --model={m}" for s, m in RECIPES)
        raise ConversionError(f"no conversion of {source} weights for --model={model!r}; "
                              f"supported: {pairs}")
    return recipe

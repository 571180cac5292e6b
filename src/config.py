"""One configuration schema for every model: defaults -> YAML file -> command line.

The defaults below are the single place where every key, its type and its
meaning are written down. A YAML file in ``config/`` overrides some of them,
``--key=value`` flags override the file, and the result is a frozen
:class:`Config`. Unknown keys, wrong types and invalid choices are errors that
name the key, the value and where it came from.

Nested keys are written with dots on the command line (``--lr.base_lr=0.05``),
lists as ``--image_size=224,224`` or ``--image_size=[224,224]``. The flag
spellings of the upstream model-zoo READMEs are accepted as aliases (see
``FLAG_ALIASES``). Keys marked per-device may hold a mapping
``{Ascend: .., GPU: .., CPU: ..}`` that is resolved from ``device_target``.

Importing this module never reads ``sys.argv``: entry points pass their
arguments to :func:`load_config` explicitly.
"""
import argparse
import copy
import dataclasses
import math
import os
import reprlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from src.errors import ConfigError

DEVICES = ("Ascend", "GPU", "CPU")
# Limits that keep the YAML parser fast on hostile input (its cost grows with the
# cube of the bracket nesting depth). Real configs are a few KB and 3 levels deep.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NESTING = 64
# An alias bomb (anchors of anchors) is small text whose expansion is huge:
# aliases, the expanded node count and the expanded depth are all bounded.
MAX_YAML_ALIASES = 64
MAX_YAML_NODES = 10000
# Ranges of the numeric keys, checked before anything is allocated.
MAX_EPOCHS = 100000
MAX_BATCH = 65536
MAX_CLASSES = 100000
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 16, 4096
MAX_WORKERS = 1024
MAX_STEPS = 10 ** 9


@dataclasses.dataclass(frozen=True)
class Key:
    """Schema of one config key."""

    default: Any
    help: str
    type: type = None  # defaults to type(default); list for lists
    choices: Tuple = None
    item_type: type = None  # element type of list values
    per_device: bool = False  # value may be {Ascend: .., GPU: .., CPU: ..}
    value_aliases: Dict[str, Any] = None  # e.g. imagenet2012 -> imagenet
    low: float = None  # inclusive range of a number (each item of a list of numbers)
    high: float = None

    def value_type(self):
        return self.type or type(self.default)


# Every shared key, with its default and a one-line meaning. Each model package adds
# its own section (``config_section`` of its spec, see add_config_section).
SCHEMA: Dict[str, Any] = {
    # --- what to run -------------------------------------------------------
    "model": Key("mobilenetv1", "network name (see src/registry.py)"),
    "dataset": Key("cifar10", "dataset format", choices=("cifar10", "imagenet", "coco"),
                   value_aliases={"imagenet2012": "imagenet", "coco2017": "coco"}),
    "num_classes": Key(10, "number of classes the network predicts", low=2, high=MAX_CLASSES),
    "image_size": Key([224, 224], "network input [height, width]", type=list, item_type=int,
                      low=MIN_IMAGE_SIDE, high=MAX_IMAGE_SIDE),
    "net": Key({}, "network options of the chosen model (checked against its builder)", type=dict),
    # --- device ------------------------------------------------------------
    "device_target": Key("CPU", "backend", choices=DEVICES),
    "device_id": Key(-1, "device index; -1 = env DEVICE_ID or 0", low=-1, high=4095),
    "mode": Key("graph", "MindSpore execution mode", choices=("graph", "pynative")),
    "amp_level": Key({"Ascend": "O2", "GPU": "O2", "CPU": "O0"},
                     "mixed precision level", type=str, choices=("O0", "O1", "O2", "O3"),
                     per_device=True),
    "cpu_kernels": Key("auto", "CPU conv/max-pool/LeakyReLU kernels: auto = the zoo's oneDNN kernels "
                       "when they build (src/kernels), zoo = require them, mindspore = MindSpore's own",
                       choices=("auto", "zoo", "mindspore")),
    "seed": Key(1, "random seed for weights, data order and augmentation", low=0, high=2 ** 32 - 1),
    # --- data --------------------------------------------------------------
    "data": {
        "dir": Key("", "dataset root (standard sub-folders are found inside it)"),
        "train_dir": Key("", "training split; empty = derived from data.dir"),
        "eval_dir": Key("", "evaluation split; empty = derived from data.dir"),
        "train_ann_file": Key("", "COCO training annotations; empty = derived from data.dir"),
        "eval_ann_file": Key("", "COCO evaluation annotations; empty = derived from data.dir"),
        "num_workers": Key({"Ascend": 8, "GPU": 8, "CPU": 2},
                           "data workers per process (clamped to the cores)", type=int,
                           per_device=True, low=0, high=MAX_WORKERS),
        "eval_batch_size": Key(0, "evaluation batch size; 0 = batch_size", low=0, high=MAX_BATCH),
        "resize_eval": Key(256, "eval resize (shorter side) before the center crop; ImageNet",
                           low=MIN_IMAGE_SIDE, high=MAX_IMAGE_SIDE),
        "square_resize_eval": Key(False, "eval resize to a square (VGG upstream) instead of the shorter side"),
        "color_jitter": Key(0.0, "brightness/contrast/saturation jitter strength (0 = off)",
                            low=0, high=1),
        "hue_jitter": Key(0.0, "hue jitter for ImageNet training (0 = off)", low=0, high=0.5),
        "cutout": Key(0, "CutOut square size for CIFAR training (0 = off)", low=0,
                      high=MAX_IMAGE_SIDE),
        "demo": Key(False, "make the built-in demo dataset under data.dir if it is missing"),
    },
    "batch_size": Key(32, "images per device per step", low=1, high=MAX_BATCH),
    "epochs": Key(1, "training epochs", low=1, high=MAX_EPOCHS),
    # --- optimizer and schedule ----------------------------------------------
    "optimizer": {
        "momentum": Key(0.9, "SGD momentum", low=0, high=1),
        "weight_decay": Key(1e-4, "L2 weight decay", low=0, high=1),
        "decay_bn_and_bias": Key(False, "also decay BatchNorm gamma/beta and biases"),
    },
    "lr": {
        "schedule": Key("cosine", "schedule name (src/lr_schedules.py)",
                        choices=("constant", "multistep", "cosine", "cosine_v2", "cosine_sample",
                                 "poly", "fraction_steps", "linear_cosine", "linear"),
                        value_aliases={"exponential": "multistep", "cosine_annealing": "cosine",
                                       "cosine_annealing_V2": "cosine_v2",
                                       "cosine_annealing_sample": "cosine_sample",
                                       "step": "poly", "steps": "fraction_steps"}),
        "base_lr": Key(0.1, "peak learning rate (after warmup)", low=0, high=1000),
        "init_lr": Key(0.0, "learning rate at the start of warmup", low=0, high=1000),
        "end_lr": Key(0.0, "final learning rate (linear schedule)", low=0, high=1000),
        "warmup_epochs": Key(0.0, "linear warmup length in epochs", low=0, high=MAX_EPOCHS),
        "milestones": Key([], "epochs at which multistep decays", type=list, item_type=int,
                          low=0, high=MAX_EPOCHS),
        "gamma": Key(0.1, "multistep decay factor", low=0, high=1000),
        "eta_min": Key(0.0, "cosine floor", low=0, high=1000),
        "t_max": Key(0, "cosine period in epochs; 0 = epochs", low=0, high=MAX_EPOCHS),
    },
    # --- loss --------------------------------------------------------------
    "loss": {
        "label_smoothing": Key(0.0, "label smoothing factor (classifiers)", low=0, high=0.999),
        "loss_scale": Key({"Ascend": 1024.0, "GPU": 1024.0, "CPU": 1.0},
                          "static loss scale", type=float, per_device=True, low=1e-6,
                          high=2.0 ** 32),
        "dynamic_loss_scale": Key(False, "dynamic loss scaling (skips overflowing steps)"),
    },
    # --- outputs and checkpoints ---------------------------------------------
    "output_dir": Key("outputs", "runs are written to output_dir/run_name"),
    "run_name": Key("", "run folder name; empty = <model>_<dataset>_<time>"),
    "log_interval": Key(0, "steps between progress lines; 0 = about 10 per epoch", low=0,
                        high=MAX_STEPS),
    "pretrained": Key("", "checkpoint whose weights initialise training"),
    "pretrained_backbone": Key("", "checkpoint whose backbone.* weights initialise training "
                               "(upstream YOLO spelling; the rest starts fresh)"),
    "resume": Key("", "checkpoint (or run folder, or 'auto') to continue training from"),
    "checkpoint_path": Key("", "checkpoint (file or folder) to evaluate or export"),
    "checkpoint": {
        "save_every_epochs": Key(1, "epochs between checkpoints", low=1, high=MAX_EPOCHS),
        "keep_max": Key(5, "how many periodic checkpoints to keep (0 = all)", low=0,
                         high=MAX_EPOCHS),
        "eval_every_epochs": Key(0, "evaluate during training every N epochs (0 = never)", low=0,
                                 high=MAX_EPOCHS),
        "keep_best": Key(True, "keep best.ckpt by top-1 when evaluating during training"),
        "save_on_all_ranks": Key(False, "every rank writes checkpoints, not only rank 0"),
    },
    # --- export --------------------------------------------------------------
    "export": {
        "file_format": Key("MINDIR", "export format", choices=("MINDIR", "ONNX", "AIR"),
                           value_aliases={"mindir": "MINDIR", "onnx": "ONNX", "air": "AIR"}),
        "file_name": Key("", "output file without extension; empty = <model>_<dataset>"),
        "batch_size": Key(1, "batch size baked into the exported graph", low=1, high=MAX_BATCH),
        "verify": Key(True, "compare the export against the checkpoint network on CPU"),
        "tolerance": Key(1e-4, "max abs difference allowed by the verification", low=0,
                         high=1e6),
    },
    # --- distributed -----------------------------------------------------------
    "distributed": Key(False, "data-parallel training over all launched processes"),
    # --- cloud (ModelArts) -------------------------------------------------------
    "modelarts": {
        "enabled": Key(False, "run on Huawei ModelArts (needs the moxing package)"),
        "data_url": Key("", "OBS URL of the dataset"),
        "train_url": Key("", "OBS URL for outputs"),
        "checkpoint_url": Key("", "OBS URL of a checkpoint"),
    },
}

# --- input preprocessing (evaluation, detect, export, deploy) ---------------------
# Empty values keep the model spec's default (src.preprocessing.eval_preprocessing);
# converted checkpoints record their source's values here.
RESIZE_MODES = ("stretch", "letterbox")
SCHEMA["preprocess"] = {
    "mean": Key([], "RGB mean on the 0-255 scale, 3 values; empty = the model's default",
                type=list, item_type=float, low=0, high=255),
    "std": Key([], "RGB std on the 0-255 scale, 3 values; empty = the model's default",
               type=list, item_type=float, low=1e-6, high=1e6),
    "resize_mode": Key("", "eval resize: stretch (plain resize to image_size), letterbox "
                       "(aspect kept, padded); empty = the model's default",
                       choices=("",) + RESIZE_MODES),
    "letterbox_fill": Key(0.5, "letterbox padding as a fraction of 255, before normalisation "
                          "(Darknet's grey 0.5)", low=0, high=1),
}

# Upstream flag spellings (seed READMEs) -> canonical dotted key.
FLAG_ALIASES: Dict[str, str] = {
    "data_path": "data.dir", "dataset_path": "data.dir", "data_dir": "data.dir",
    "data_url_local": "data.dir",
    "train_data_dir": "data.train_dir", "val_data_dir": "data.eval_dir",
    "ann_file": "data.eval_ann_file",
    "dataset_name": "dataset",
    "platform": "device_target",
    "resume_yolo": "pretrained",
    "ckpt_file": "checkpoint_path",
    "per_batch_size": "batch_size",
    "max_epoch": "epochs", "epoch_size": "epochs",
    "is_distributed": "distributed", "run_distribute": "distributed",
    "file_format": "export.file_format", "file_name": "export.file_name",
    "class_num": "num_classes",
    "lr_scheduler": "lr.schedule", "lr_decay_mode": "lr.schedule",
    "lr_max": "lr.base_lr", "lr_end": "lr.end_lr",
    "warmup_epochs": "lr.warmup_epochs", "lr_epochs": "lr.milestones", "lr_gamma": "lr.gamma",
    "T_max": "lr.t_max", "t_max": "lr.t_max", "eta_min": "lr.eta_min",
    "lr": "lr.base_lr",
    "momentum": "optimizer.momentum", "weight_decay": "optimizer.weight_decay",
    "loss_scale": "loss.loss_scale",
    "is_dynamic_loss_scale": "loss.dynamic_loss_scale",
    "keep_checkpoint_max": "checkpoint.keep_max",
    "enable_modelarts": "modelarts.enabled",
    "val_data_path": "data.eval_dir",
    "checkpoint_url": "modelarts.checkpoint_url", "data_url": "modelarts.data_url",
    "train_url": "modelarts.train_url", "output_path": "output_dir",
}  # plus each model's own (``config_aliases`` of its spec, see add_config_section)
_CHECKPOINT_TO_READ = {"eval": "checkpoint_path", "export": "checkpoint_path",
                       "detect": "checkpoint_path"}

# Upstream flags whose meaning differs between entry points or models (the seeds
# disagree): flag -> {entry point or model: canonical key}; "*" stands for the rest.
# A flag without "*" exists only where it is listed.
CONTEXT_ALIASES: Dict[str, Dict[str, str]] = {
    # YOLOv3-Tiny's and VGG16's train.py save checkpoints there; eval/export read one.
    "ckpt_path": {"train": "output_dir", "*": "checkpoint_path"},
    # Training starts from these weights; eval/export (VGG16, MobileNetV1, YOLO) read them.
    "pre_trained": {**_CHECKPOINT_TO_READ, "*": "pretrained"},
    "pretrained": {**_CHECKPOINT_TO_READ, "*": "pretrained"},
    "pretrain_ckpt": {**_CHECKPOINT_TO_READ, "*": "pretrained"},
    # The warmup start for most models; a model's spec may read it otherwise (upstream_flags).
    "lr_init": {"*": "lr.init_lr"},
    "label_smooth_factor": {"*": "loss.label_smoothing"},
    "testing_shape": {"eval": "image_size", "export": "image_size", "detect": "image_size"},
}

ENTRY_POINTS = ("train", "eval", "export", "detect")
# Keys that name a file to read: a boolean-looking value (--pre_trained=False) means none.
PATH_KEYS = ("pretrained", "resume", "checkpoint_path")
_NONE_WORDS = {"", "false", "none", "null", "no", "0", "off"}


class Config:
    """Frozen, attribute-access view of a resolved configuration."""

    def __init__(self, values: Dict[str, Any]):
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name):
        try:
            value = self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None
        return Config(value) if isinstance(value, dict) and name != "net" else value

    def __getitem__(self, name):
        return self.__getattr__(name)

    def __setattr__(self, name, value):
        raise AttributeError("Config is frozen; use Config.replace(...) for a modified copy")

    def __contains__(self, name):
        return name in self._values

    def get(self, dotted: str, default=None):
        """Value of a dotted key (``lr.base_lr``), or default if absent."""
        node = self._values
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def to_dict(self) -> Dict[str, Any]:
        """A deep copy of the plain nested dict."""
        return copy.deepcopy(self._values)

    def replace(self, **dotted_values) -> "Config":
        """A copy with some keys changed (``replace(**{'lr.base_lr': 0.05})``), re-validated."""
        values = self.to_dict()
        for dotted, value in dotted_values.items():
            _set_checked(values, dotted, value, "Config.replace")
        return Config(_resolve_per_device(values))

    def dump(self) -> str:
        """YAML text of the resolved config."""
        return yaml.safe_dump(self._values, sort_keys=False, default_flow_style=None)

    def __repr__(self):
        return f"Config({self._values!r})"


# --------------------------------------------------------------------------- helpers

def _schema_at(dotted: str):
    node = SCHEMA
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _all_keys(schema=SCHEMA, prefix="") -> List[str]:
    keys = []
    for name, node in schema.items():
        full = prefix + name
        keys.extend(_all_keys(node, full + ".") if isinstance(node, dict) else [full])
    return keys


def _defaults(schema=SCHEMA) -> Dict[str, Any]:
    return {name: _defaults(node) if isinstance(node, dict) else copy.deepcopy(node.default)
            for name, node in schema.items()}


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 6
_SHORT.maxlevel = 3


def show(value) -> str:
    """``repr(value)`` cut to a few dozen characters at a bounded cost (any input size)."""
    return _SHORT.repr(value)


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance with adjacent transpositions, or ``limit + 1`` once it exceeds it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous, current = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1,
                             previous[j - 1] + (ca != cb))
            if (before is not None and i > 1 and j > 1 and ca == b[j - 2]
                    and a[i - 2] == cb):
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
    return current[-1]


def typo_suggestion(name: str, candidates: Sequence[str]) -> Optional[str]:
    """The candidate ``name`` is a misspelling of (1-2 edits), else None.

    Only misspellings: a name that merely looks like another key
    (``val_data_path`` / ``data_path``, ``batch_norm`` / ``batch_size``) means
    something else, and suggesting it would point the user the wrong way.
    """
    limit = 1 if len(name) <= 6 else 2
    best = None
    for candidate in candidates:
        distance = _edit_distance(name, candidate, limit)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def _unknown_key(dotted: str, value, source: str) -> ConfigError:
    close = typo_suggestion(dotted, _all_keys() + list(FLAG_ALIASES) + list(CONTEXT_ALIASES)
                            + list(SEED_TRANSLATIONS))
    hint = f"; did you mean {close!r}?" if close else "; see --help for every key"
    return ConfigError(f"unknown config key {dotted!r} = {show(value)} (from {source}){hint}")


def _check_range(key: Key, value, dotted: str, source: str):
    """ConfigError unless ``key.low <= value <= key.high`` (each bound when given)."""
    if (key.low is not None and value < key.low) or (key.high is not None and value > key.high):
        if key.high is None:
            wanted = f"at least {key.low:g}"
        elif key.low is None:
            wanted = f"at most {key.high:g}"
        else:
            wanted = f"between {key.low:g} and {key.high:g}"
        raise ConfigError(f"config key {dotted!r} must be {wanted}, got {show(value)} "
                          f"(from {source})")
    return value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce_scalar(value, want: type, dotted: str, source: str):
    def bad():
        return ConfigError(f"config key {dotted!r} expects {want.__name__}, "
                           f"got {show(value)} (from {source})")

    if want is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if want is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
            try:  # 1e3 is a whole number written as a float
                number = float(value.strip())
            except ValueError:
                raise bad() from None
            if math.isfinite(number) and number.is_integer():
                return int(number)
        raise bad()
    if want is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise bad() from None
        else:
            raise bad()
        if not math.isfinite(number):
            raise ConfigError(f"config key {dotted!r} must be a finite number, got {show(value)} "
                              f"(from {source})")
        return number
    if want is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise bad()


def _yaml_nesting(text: str) -> int:
    """Deepest bracket nesting in ``text`` (quotes ignored: an upper bound)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


class _BoundedLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """The safe loader with a cap on aliases and an error for a key given twice."""

    def __init__(self, text: str, what: str):
        super().__init__(text)
        self.what = what
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise ConfigError(f"{self.what} uses more than {MAX_YAML_ALIASES} YAML aliases "
                                  f"(*name); write the values out instead")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode):
                    continue
                name = key_node.value
                if name in seen:
                    raise ConfigError(
                        f"{self.what} sets key {show(name)} twice (lines {seen[name]} and "
                        f"{key_node.start_mark.line + 1}); keep one of them")
                seen[name] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root, what: str) -> None:
    """ConfigError when the document, aliases expanded, is too big or too deep."""
    sizes = {}  # id(node) -> (expanded node count, expanded depth)

    def measure(node, depth):
        if depth > MAX_YAML_NESTING:
            raise ConfigError(f"{what} nests more than {MAX_YAML_NESTING} levels deep "
                              f"(aliases expanded)")
        known = sizes.get(id(node))
        if known is None:
            count, deepest = 1, 1
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                [part for pair in node.value for part in pair]
                if isinstance(node, yaml.MappingNode) else [])
            for child in children:
                child_count, child_depth = measure(child, depth + 1)
                count += child_count
                deepest = max(deepest, child_depth + 1)
                if count > MAX_YAML_NODES:
                    break
            known = sizes[id(node)] = (count, deepest)
        if known[0] > MAX_YAML_NODES:
            raise ConfigError(f"{what} expands to more than {MAX_YAML_NODES} values (YAML "
                              f"aliases repeating aliases?); write the values out instead")
        if depth + known[1] > MAX_YAML_NESTING + 1:
            raise ConfigError(f"{what} nests more than {MAX_YAML_NESTING} levels deep "
                              f"(aliases expanded)")
        return known

    measure(root, 1)


def _safe_yaml(text: str, what: str):
    """``yaml.safe_load`` with size and nesting limits; ConfigError naming ``what``."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} is {len(text)} characters long, more than the "
                          f"{MAX_CONFIG_BYTES} a config may have")
    if _yaml_nesting(text) > MAX_YAML_NESTING:
        raise ConfigError(f"{what} nests brackets more than {MAX_YAML_NESTING} levels deep")
    try:
        loader = _BoundedLoader(text, what)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node, what)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ConfigError(f"{what} holds an unreadable value ({str(exc)[:80]})") from None


def _parse_cli_text(text: str):
    """Turn a command-line string into a YAML scalar/list (``1,2`` -> [1, 2])."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return _safe_yaml(stripped, f"value {stripped[:40]!r}")
        except yaml.YAMLError:
            return text
    if "," in stripped:
        return [_parse_cli_text(part) for part in stripped.split(",")]
    return text  # left as text: the schema type decides how to read it


def _coerce(key: Key, value, dotted: str, source: str, device: Optional[str] = None):
    """Check and convert ``value`` for ``key``; resolves per-device mappings."""
    if key.per_device and isinstance(value, dict):
        unknown = sorted(set(value) - set(DEVICES))
        if unknown:
            raise ConfigError(f"config key {dotted!r}: per-device mapping has unknown device(s) "
                              f"{unknown}, expected keys among {list(DEVICES)} (from {source})")
        if device is None:
            return {dev: _coerce(key, v, dotted, source) for dev, v in value.items()}
        if device not in value:
            raise ConfigError(f"config key {dotted!r} has no value for device {device!r} "
                              f"(from {source}); add '{device}: ...' to the mapping")
        value = value[device]
    want = key.value_type()
    if want is list:
        if isinstance(value, str):
            value = _parse_cli_text(value)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and key.item_type:
            # --image_size=224 means [224, 224] below; --lr.milestones= means []
            value = [] if isinstance(value, str) and not value.strip() else [value]
        if not isinstance(value, list):
            raise ConfigError(f"config key {dotted!r} expects a list, got {show(value)} (from {source})")
        if key.item_type:
            value = [_coerce_scalar(v, key.item_type, dotted, source) for v in value]
        if dotted == "image_size":
            if len(value) == 1:
                value = value * 2
            if len(value) != 2 or min(value) <= 0:
                raise ConfigError(f"config key 'image_size' expects [height, width] > 0, "
                                  f"got {show(value)} (from {source})")
        for item in value if key.item_type in (int, float) else ():
            _check_range(key, item, dotted, source)
        return value
    if want is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {dotted!r} expects a mapping, got {show(value)} "
                              f"(from {source})")
        return value
    if isinstance(value, str) and key.value_aliases and value in key.value_aliases:
        value = key.value_aliases[value]
    value = _coerce_scalar(value, want, dotted, source)
    if key.value_aliases and value in key.value_aliases:
        value = key.value_aliases[value]
    if key.choices and value not in key.choices:
        raise ConfigError(f"config key {dotted!r} has invalid value {show(value)} (from {source}); "
                          f"choose one of {list(key.choices)}")
    if want in (int, float):
        _check_range(key, value, dotted, source)
    return value


def _set_checked(values: Dict[str, Any], dotted: str, value, source: str):
    """Validate one dotted key and store it in the nested ``values`` dict."""
    if dotted.startswith("net."):
        values.setdefault("net", {})[dotted[4:]] = _parse_net_value(value, dotted, source)
        return
    if "#" in dotted:  # one item of a list key (--image_height sets image_size#0)
        dotted, index = dotted.split("#")
        item = _coerce(_schema_at(dotted), value, dotted, source)[0]
        values[dotted] = list(values[dotted])
        values[dotted][int(index)] = item
        return
    if dotted in PATH_KEYS and means_none(value):
        value = ""  # upstream configs wrote pre_trained: False for "no checkpoint"
    key = _schema_at(dotted)
    if key is None:
        raise _unknown_key(dotted, value, source)
    if isinstance(key, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {dotted!r} is a section, got {show(value)} (from {source}); "
                              f"set its keys instead (e.g. {dotted}.{next(iter(key))})")
        for sub, sub_value in value.items():
            _set_checked(values, f"{dotted}.{sub}", sub_value, source)
        return
    node = values
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = _coerce(key, value, dotted, source)


def _yaml_problem(exc: Exception) -> str:
    """The first line of a YAML error, short."""
    lines = str(getattr(exc, "problem", None) or exc).splitlines() or ["unreadable"]
    return lines[0][:120]


def means_none(value) -> bool:
    """Whether a value given to a path key means "no file" (False, None, 0, '')."""
    return isinstance(value, bool) or value is None or (
        isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def _parse_net_value(value, dotted: str = "net", source: str = "command line"):
    if not isinstance(value, str):
        return value
    try:
        return _safe_yaml(value, f"config key {dotted!r} (from {source})")
    except yaml.YAMLError as exc:
        raise ConfigError(f"config key {dotted!r} has a value that is not valid YAML: {show(value)} "
                          f"(from {source}): {_yaml_problem(exc)}") from None


def _flatten(mapping: Dict[str, Any], prefix="") -> List[Tuple[str, Any]]:
    items = []
    for name, value in mapping.items():
        dotted = prefix + str(name)
        node = _schema_at(dotted)
        if isinstance(value, dict) and isinstance(node, dict):
            items.extend(_flatten(value, dotted + "."))
        else:
            items.append((dotted, value))
    return items


# Config file names of the upstream READMEs -> [(model title, shipped config with the same
# recipe)], from each model's spec (``upstream_config_files``, see add_model_upstream).
UPSTREAM_CONFIG_FILES: Dict[str, List[Tuple[str, str]]] = {}


def _upstream_config_hint(path: str) -> Optional[str]:
    """How to run upstream's config file ``path`` here (None: not an upstream name)."""
    name = os.path.basename(path)
    ours = UPSTREAM_CONFIG_FILES.get(name)
    if not ours:
        return None
    listed = " or ".join(f"{config} ({title})" for title, config in ours)
    target = ours[0][1] if len(ours) == 1 else "<one of them>"
    return f"upstream's {name} is {listed} here: pass --config_path={target}"


def read_yaml(path: str) -> Dict[str, Any]:
    """Load a config file with the safe YAML loader (no object construction)."""
    if not os.path.isfile(path):
        hint = _upstream_config_hint(path)
        if hint:
            raise ConfigError(f"config file {path!r} not found; {hint}")
        raise ConfigError(f"config file {path!r} not found; pass an existing file with "
                          f"--config_path (see config/ for the shipped ones)")
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path!r} is {os.path.getsize(path)} bytes; a config "
                              f"file may have at most {MAX_CONFIG_BYTES}")
        with open(path, encoding="utf-8") as f:
            data = _safe_yaml(f.read(), f"config file {path!r}")
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"config file {path!r} is not valid YAML{at}: "
                          f"{_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc}") from None
    if data is None or data == {}:
        raise ConfigError(f"config file {path!r} sets no keys; pass a config with at least "
                          f"'model:' (see config/ for the shipped ones)")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of keys, "
                          f"got {type(data).__name__}")
    return data


def split_flags(argv: Sequence[str], notes: List[str] = None) -> List[Tuple[str, str]]:
    """``--key=value`` / ``--key value`` / bare ``--flag`` -> (flag name, value text) pairs."""
    flags = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if (arg.startswith("-") and not arg.startswith("--") and len(arg) > 2
                and arg[1].isalpha() and "=" in arg):
            # upstream's Chinese README writes -device_target=GPU
            if notes is not None:
                notes.append(f"{show(arg)} read as -{arg}")
            arg = "-" + arg
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {show(arg)}; options are written --key=value")
        body = arg[2:]
        if "=" in body:
            name, value = body.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            name, value = body, argv[i + 1]
            i += 1
        else:
            name, value = body, "true"  # a bare flag switches a boolean on
        known = name in FLAG_ALIASES or name in CONTEXT_ALIASES or name in SEED_TRANSLATIONS
        flags.append((name if known else name.replace("-", "_"), value))
        i += 1
    return flags


def parse_overrides(argv: Sequence[str], entry: str = None, model: str = None,
                    notes: List[str] = None) -> List[Tuple[str, Any, str]]:
    """Flags -> (canonical key, value, source) triples, read as upstream meant them.

    ``entry`` (train/eval/export/detect) and ``model`` decide the flags whose
    meaning the upstream READMEs give per script or per model
    (:data:`CONTEXT_ALIASES`); flags that need a translation
    (:data:`SEED_TRANSLATIONS`) add a line to ``notes``; two spellings of one key
    with different values are an error naming both.
    """
    flags = split_flags(argv, notes)
    names = {name for name, _ in flags}
    ctx = {"entry": entry, "model": model, "names": names}
    overrides, given = [], {}
    for name, value in flags:
        source = f"command line --{name}"
        if name in NO_EQUIVALENT:
            raise ConfigError(f"--{name} has no equivalent in this project: {NO_EQUIVALENT[name]}")
        if name in SEED_TRANSLATIONS:
            pairs = SEED_TRANSLATIONS[name](value.strip(), ctx)
            if notes is not None:
                shown = " ".join(f"--{k.split('#')[0]}{'[' + k.split('#')[1] + ']' if '#' in k else ''}"
                                 f"={_flag_text(v)}" for k, v in pairs) or "nothing to change"
                notes.append(f"--{name}={show(value)[1:-1]} means {shown} here")
        elif name in CONTEXT_ALIASES:
            pairs = [(context_key(name, entry, model), value)]
        else:
            if entry == "train" and name == "checkpoint_path":
                raise ConfigError("train.py saves checkpoints under --output_dir/<run>/checkpoints; "
                                  "--checkpoint_path is what eval.py/export.py read. To start "
                                  "from weights pass --pretrained=<file.ckpt>, to continue a run "
                                  "--resume=<file.ckpt or run folder>")
            pairs = [(FLAG_ALIASES.get(name, name), value)]
        for dotted, item in pairs:
            earlier = given.get(dotted)
            if earlier and earlier[0] != name and _text_value(earlier[2]) != _text_value(item):
                raise ConfigError(f"--{earlier[0]}={show(earlier[1])[1:-1]} and --{name}="
                                  f"{show(value)[1:-1]} both set {dotted.split('#')[0]}; keep one "
                                  f"of them")
            given[dotted] = (name, value, item)
            overrides.append((dotted, item, source))
    return overrides


def context_key(name: str, entry: str = None, model: str = None) -> str:
    """The key an entry-point/model dependent upstream flag sets here."""
    table = CONTEXT_ALIASES[name]
    for context in (entry, model):
        if context in table:
            return table[context]
    if "*" in table:
        return table["*"]
    if model is None:
        return next(iter(table.values()))  # not decidable yet: the config is still unknown
    where = sorted(table)
    models = [c for c in where if c not in ENTRY_POINTS]
    what = (f"an option of upstream {'/'.join(models)}" if models
            else f"a flag of upstream {'/'.join(c + '.py' for c in where)}")
    keys = sorted(set(table.values()))
    context = f" (the config's model is {model!r})" if models else ""
    raise ConfigError(f"--{name} is {what} only{context}; here it is "
                      f"{' / '.join('--' + k for k in keys)} "
                      + (f"with --config_path=<a {models[0]} config>" if models else
                         f"of {'/'.join(c + '.py' for c in where)}"))


def _text_value(value):
    """A flag value in a form where 0, 0.0 and ' 0' compare equal."""
    text = value.strip() if isinstance(value, str) else value
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text).lower()


def _flag_text(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def as_bool_flag(value, name: str) -> bool:
    try:
        return _coerce_scalar(value, bool, name, f"command line --{name}")
    except ConfigError:
        raise ConfigError(f"--{name} expects 0/1 or true/false, got {show(value)}") from None


def model_only(name: str, owner: str, ctx) -> None:
    """ConfigError unless the config's model (if known) is ``owner``, whose upstream has --name."""
    if ctx["model"] not in (None, owner):
        raise ConfigError(f"--{name} is an option of upstream {MODEL_TITLES.get(owner, owner)} "
                          f"only (the config's model is {ctx['model']!r}); use a {owner} config")


def _training_shape(value, ctx):
    """`--image_size=<v> --detection.multi_scale=` (one fixed training size)"""
    return [("image_size", value), ("detection.multi_scale", [])]


def _is_save_on_master(value, ctx):
    """`--checkpoint.save_on_all_ranks=<not v>`"""
    return [("checkpoint.save_on_all_ranks", not as_bool_flag(value, "is_save_on_master"))]


def _image_side(index):
    def translate(value, ctx):
        return [(f"image_size#{index}", value)]
    translate.__doc__ = f"`--image_size` {('height', 'width')[index]}"
    return translate


def _label_smooth(name):
    def translate(value, ctx):
        """0: label smoothing off (the model's smoothing key = 0); 1: with `--label_smooth_factor`"""
        key = context_key("label_smooth_factor", ctx["entry"], ctx["model"])
        if not as_bool_flag(value, name):
            return [(key, 0.0)]
        if "label_smooth_factor" not in ctx["names"]:
            raise ConfigError(f"--{name}={value} switches label smoothing on; give its strength "
                              f"too, e.g. --label_smooth_factor=0.1")
        return []
    return translate


def _ckpt_interval(value, ctx):
    """`--checkpoint.save_every_epochs` (-1: every epoch; refused where upstream counted steps)"""
    try:
        interval = int(str(value))
    except ValueError:
        raise ConfigError(f"--ckpt_interval expects a whole number, got {show(value)}") from None
    if interval <= 0:
        return [("checkpoint.save_every_epochs", 1)]
    unit = CKPT_INTERVAL_UNITS.get(ctx["model"], "epochs")
    if unit == "epochs":
        return [("checkpoint.save_every_epochs", interval)]
    raise ConfigError(f"--ckpt_interval={interval}: upstream "
                      f"{MODEL_TITLES.get(ctx['model'], ctx['model'])} counted {unit}; this "
                      f"project saves every N epochs: pass --checkpoint.save_every_epochs=N")


def _export_file(fmt):
    def translate(value, ctx):
        """`--export.file_name=<stem> --export.file_format=<its format>`"""
        stem = os.path.splitext(str(value))[0]
        return [("export.file_name", stem), ("export.file_format", fmt)]
    return translate


# Upstream keys with an equivalent that is not a plain rename:
# flag -> f(value text, context) -> [(dotted key, value)]; the translation is printed.
SEED_TRANSLATIONS = {
    "training_shape": _training_shape,
    "is_save_on_master": _is_save_on_master,
    "image_height": _image_side(0), "image_width": _image_side(1),
    "label_smooth": _label_smooth("label_smooth"),
    "use_label_smooth": _label_smooth("use_label_smooth"),
    "onnx_filename": _export_file("ONNX"), "air_filename": _export_file("AIR"),
    "ckpt_interval": _ckpt_interval,
}  # plus each model's own (``upstream_translations`` of its spec, see add_model_upstream)
# Filled from the specs by add_model_upstream: translations only one model's upstream had
# (flag -> model), each model's title in messages, and what its upstream --ckpt_interval counted.
MODEL_ONLY_FLAGS: Dict[str, str] = {}
MODEL_TITLES: Dict[str, str] = {}
CKPT_INTERVAL_UNITS: Dict[str, str] = {}

# Upstream keys with no equivalent: what to do instead.
NO_EQUIVALENT = {
    "need_profiler": "to see where time goes, run python benchmark.py --model=<model> (train "
                     "step, inference and data pipeline timed separately), or wrap a short run "
                     "in mindspore.Profiler",
    "rank": "the rank comes from the launcher (scripts/run_distribute_*.sh, msrun, mpirun); "
            "start several processes with one of them and pass --distributed=True",
    "group_size": "the number of processes comes from the launcher (scripts/run_distribute_*.sh, "
                  "msrun -n, mpirun -n); start the run with one of them and --distributed=True",
    "buffer_size": "every epoch is shuffled over the whole dataset (no shuffle buffer); remove it",
    "modelarts_dataset_unzip_name": "upload the dataset unzipped: --data_url is copied as it is",
    "device_num": "the number of devices comes from the launcher (scripts/run_distribute_*.sh); "
                  "remove it",
}


def load_config(config_path: Optional[str] = None, overrides: Sequence = (),
                cli_args: Sequence[str] = (), entry: str = None, notes: List[str] = None,
                base: Dict[str, Any] = None, base_source: str = "stored config") -> Config:
    """Resolve defaults <- base <- YAML file <- overrides <- command-line flags.

    ``overrides`` is a sequence of (dotted key, value) pairs applied before the
    command line (entry points use it for their own defaults); ``cli_args`` are
    raw ``--key=value`` strings, read as the upstream ``entry`` script read
    them (see :func:`parse_overrides`); translations go to ``notes``. ``base``
    is a resolved config stored elsewhere (a checkpoint's), named by ``base_source``.
    """
    _add_model_sections()  # the plugins' sections too (their import errors are one line here)
    values = _defaults()
    if base:
        for dotted, value in _flatten(base):
            _set_checked(values, dotted, value, base_source)
    if config_path:
        for dotted, value in _flatten(read_yaml(config_path)):
            _set_checked(values, dotted, value, f"config file {config_path}")
    for dotted, value in overrides:
        _set_checked(values, dotted, value, "program defaults")
    model = values["model"]
    for name, value in split_flags(cli_args):
        if name == "model":
            model = value
    for dotted, value, source in parse_overrides(cli_args, entry, model, notes):
        _set_checked(values, dotted, value, source)
    _check_dependent_values(values, entry)
    return Config(_resolve_per_device(values))


def check_flags(cli_args: Sequence[str], entry: str = None) -> None:
    """ConfigError for a flag that is wrong whatever the config (unknown key, bad value)."""
    values = _defaults()
    for dotted, value, source in parse_overrides(cli_args, entry):
        _set_checked(values, dotted, value, source)


def _check_dependent_values(values: Dict[str, Any], entry: str = None) -> None:
    """Keys whose valid range depends on another key's value."""
    side = min(values["image_size"])
    cutout = values["data"]["cutout"]
    if cutout > side and entry == "train":  # cutout is a training augmentation
        raise ConfigError(f"data.cutout={cutout} is larger than the image (image_size="
                          f"{values['image_size']}); pass --data.cutout={max(1, side // 2)} "
                          f"(half the image side, as the shipped recipes) or --data.cutout=0")


def _resolve_per_device(values: Dict[str, Any]) -> Dict[str, Any]:
    device = values["device_target"]

    def walk(schema, node, prefix):
        for name, key in schema.items():
            dotted = prefix + name
            if isinstance(key, dict):
                walk(key, node[name], dotted + ".")
            elif key.per_device:
                node[name] = _coerce(key, node[name], dotted, "device resolution", device)

    walk(SCHEMA, values, "")
    return values


def alias_table() -> str:
    """Markdown table of every upstream flag this project reads (README "Upstream flags")."""
    rows = [(name, f"`--{key}`") for name, key in FLAG_ALIASES.items()]
    for name, table in CONTEXT_ALIASES.items():
        by_key = {}
        for context, key in table.items():
            by_key.setdefault(key, []).append(
                "elsewhere" if context == "*" else
                context + ".py" if context in ENTRY_POINTS else f"model {context}")
        rows.append((name, "; ".join(f"{'/'.join(where)}: `--{key}`"
                                     for key, where in by_key.items())))
    for name, translate in SEED_TRANSLATIONS.items():
        rows.append((name, "translated (printed): " + (translate.__doc__ or "").strip()))
    for name, advice in NO_EQUIVALENT.items():
        rows.append((name, "no equivalent: " + advice))
    lines = ["| upstream flag | here |", "|---|---|"]
    lines += [f"| `--{name}` | {text} |" for name, text in sorted(rows)]
    return "\n".join(lines)


def split_config_path(argv: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """Take ``--config_path``/``--config`` out of argv; return (path, remaining args)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--config_path", "--config", dest="config_path", default=None)
    known, rest = parser.parse_known_args(list(argv))
    return known.config_path, rest


def help_text() -> str:
    """Every key with its default and meaning, for ``--help``."""
    _add_model_sections()
    lines = []

    def walk(schema, prefix):
        for name, key in schema.items():
            if isinstance(key, dict):
                walk(key, prefix + name + ".")
            else:
                choice = f" {{{', '.join(map(str, key.choices))}}}" if key.choices else ""
                lines.append(f"  --{prefix}{name}{choice}  (default {key.default!r})  {key.help}")

    walk(SCHEMA, "")
    lines.append("  aliases: " + ", ".join(f"--{a} -> {c}" for a, c in sorted(FLAG_ALIASES.items())))
    lines.append("  upstream flags read per script or model: " + ", ".join(
        f"--{a} -> " + "/".join(sorted(set(t.values()))) for a, t in sorted(CONTEXT_ALIASES.items())))
    lines.append("  upstream flags translated (printed): " + ", ".join(
        f"--{a}" for a in sorted(SEED_TRANSLATIONS)) + "; --print_config prints the resolved "
                 "config and exits")
    return "\n".join(lines)


def save_config(cfg: Config, run_dir: str) -> str:
    """Write the resolved config as ``run_dir/config.yaml`` (atomically); return the path."""
    from src.utils.io import atomic_write_text  # local import: keeps config import-light
    path = os.path.join(run_dir, "config.yaml")
    atomic_write_text(path, cfg.dump())
    return path


def add_config_section(section: str, keys: Dict[str, Any], owner: str) -> None:
    """Add a model's ``{key: Key}`` section to the schema (called by src.registry).

    Several models may share a section name; a key defined twice, or a section
    name that is a shared key, is a programming error.
    """
    node = SCHEMA.setdefault(section, {})
    if isinstance(node, Key):
        raise RuntimeError(f"model {owner!r}: config section {section!r} is a shared key")
    clash = sorted(set(node) & set(keys))
    if clash:
        raise RuntimeError(f"model {owner!r}: config keys {[f'{section}.{k}' for k in clash]} "
                           f"are already defined")
    node.update(keys)


def add_config_aliases(aliases: Dict[str, str], owner: str) -> None:
    """Add a model's ``{flag: dotted key}`` spellings to FLAG_ALIASES (called by src.registry)."""
    clash = sorted(set(FLAG_ALIASES) & set(aliases))
    if clash:
        raise RuntimeError(f"model {owner!r}: flag aliases {clash} are already defined")
    FLAG_ALIASES.update(aliases)


def add_model_upstream(spec, owner: str) -> None:
    """Register what a model's spec says about its upstream's flags and config files.

    ``upstream_flags`` ({flag: dotted key}) are read for this model before the
    generic meaning (:data:`CONTEXT_ALIASES`); ``upstream_translations``
    ({flag: f(value, ctx)}) are refused for other models; ``upstream_config_files``
    ({upstream file name: shipped config}) answer a missing ``--config_path``.
    """
    MODEL_TITLES[owner] = spec.title
    CKPT_INTERVAL_UNITS[owner] = spec.upstream_ckpt_interval_unit
    for flag, dotted in spec.upstream_flags.items():
        if flag in FLAG_ALIASES or owner in CONTEXT_ALIASES.get(flag, {}):
            raise RuntimeError(f"model {owner!r}: upstream flag {flag!r} is already defined")
        table = CONTEXT_ALIASES.get(flag, {})
        # the models' meanings first, the generic one ("*") last (alias_table keeps the order)
        CONTEXT_ALIASES[flag] = {**{c: k for c, k in table.items() if c != "*"}, owner: dotted,
                                 **({"*": table["*"]} if "*" in table else {})}
    for flag, translate in spec.upstream_translations.items():
        if flag in SEED_TRANSLATIONS or flag in FLAG_ALIASES or flag in CONTEXT_ALIASES:
            raise RuntimeError(f"model {owner!r}: upstream flag {flag!r} is already defined")
        SEED_TRANSLATIONS[flag] = _model_only_translation(flag, owner, translate)
        MODEL_ONLY_FLAGS[flag] = owner
    for name, config in spec.upstream_config_files.items():
        UPSTREAM_CONFIG_FILES.setdefault(name, []).append((spec.title, config))


def _model_only_translation(flag: str, owner: str, translate):
    def checked(value, ctx):
        model_only(flag, owner, ctx)
        return translate(value, ctx)
    checked.__doc__ = translate.__doc__
    return checked


def config_from_dict(values: Dict[str, Any]) -> Config:
    """A checked Config from a nested dict (a run's or an export's stored config)."""
    return load_config(None, overrides=_flatten(values))


def _add_model_sections(plugins: bool = True) -> None:
    from src.registry import discover_models  # pylint: disable=import-outside-toplevel
    discover_models(plugins)


# Last, so that the model modules can import Key from this (partly initialised) module.
# ZOO_PLUGINS are imported at the first load_config/help_text: a bad entry is then a
# ConfigError an entry point reports, not an import-time traceback.
_add_model_sections(plugins=False)

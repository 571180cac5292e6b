"""Model registry: each model's :class:`ModelSpec`, found without a hand-kept list.

A model package is a sub-package of ``src`` holding a ``model.py``; importing
that module registers the package's spec with :func:`register_model`.
``ZOO_PLUGINS`` (``os.pathsep``-separated importable module names, or paths of
a Python file or package folder) adds models from outside ``src`` the same way,
for example ``ZOO_PLUGINS=~/my_models/foonet python train.py ...``.

A spec names everything model-specific that shared code needs: the network
builder (its keyword-only arguments are the ``net`` options), the loss and
target builder, the deploy network and its output layout, the decoding of
those outputs, the input preprocessing and the model's own config section.
Parts may be given as ``"module:attribute"`` strings, imported on first use,
so that discovering the models (and building the config schema from their
sections) does not load MindSpore.
"""
import dataclasses
import importlib
import inspect
import os
import pkgutil
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from src.errors import ConfigError
from src.tasks import task_names

PLUGINS_ENV = "ZOO_PLUGINS"
SPEC_MODULE = "model"  # src/<package>/model.py registers the package's model


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input images made (evaluation, export, deploy).

    ``mean``/``std`` are RGB on the 0-255 scale; None means the dataset's
    statistics. ``resize_mode`` None means the dataset's evaluation resize;
    ``"stretch"`` resizes to the input size without keeping the aspect ratio;
    ``"letterbox"`` keeps it and pads with ``letterbox_fill`` (a fraction of the
    0-255 range, before normalisation: Darknet's grey is 0.5). A config's
    ``preprocess`` section overrides these (:func:`src.preprocessing.eval_preprocessing`).
    """

    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    resize_mode: Optional[str] = None
    letterbox_fill: float = 0.5


def _resolve(ref):
    """The object a ``"module:attribute.path"`` string names (anything else passes through)."""
    if not isinstance(ref, str):
        return ref
    module, _, attribute = ref.partition(":")
    value = importlib.import_module(module)
    for name in attribute.split("."):
        value = getattr(value, name)
    return value


class ModelSpec:
    """What the zoo knows about one registered model.

    Args:
        name: the ``model`` config value.
        task: ``"classification"`` or ``"detection"`` (:mod:`src.tasks`).
        builder: ``builder(num_classes, image_size, *, **options) -> nn.Cell``.
        loss: ``loss(cfg, net) -> cell`` taking the training columns; None: the task's.
        targets: detection: ``targets(cfg) -> (f(boxes, input_hw) -> arrays, column names)``,
            f picklable (it runs in data workers).
        augmentation: detection: ``augmentation(cfg) -> f(image, boxes, out_hw, rng) ->
            (image, boxes)`` for training; None: the dataset's default.
        deploy: ``deploy(cfg, net) -> cell`` that export.py writes; None: the network itself.
        output_layout: ``output_layout(cfg) -> [shape per output]`` of the deploy
            network for one image (no batch axis); None: ``[(num_classes,)]``.
        decode: detection: ``decode(cfg) -> f(outputs of one image, image_w, image_h) ->
            Detections`` (:mod:`src.detections`), boxes in image pixels after NMS.
        training_sizes: detection: ``training_sizes(cfg) -> ([(height, width)], batches per
            size)``, the multi-scale training schedule; None: ``image_size`` only.
        preprocessing: a :class:`Preprocessing`, or ``f(cfg) -> Preprocessing``.
        progress_line: optional training progress formatter (the model's upstream log habit),
            same arguments as :func:`src.train_epoch.default_progress_line`.
        config_section: ``{section: {key: src.config.Key}}`` added to the config schema.
        config_aliases: ``{flag: dotted key}`` spellings of its keys (upstream's flags).
        title: the model's name in messages (upstream's spelling); None: ``name``.
        upstream_flags: ``{flag: dotted key}``: this model's meaning of an upstream flag that
            other models read otherwise, or that only this model's upstream has.
        upstream_translations: ``{flag: f(value text, ctx) -> [(dotted key, value)]}``:
            flags only this model's upstream has, with no plain equivalent (docstring: the
            README's description); refused for other models.
        upstream_ckpt_interval_unit: what upstream's ``--ckpt_interval`` counted
            (``"epochs"``, or e.g. ``"steps"``: then refused, the project saves per epoch).
        upstream_config_files: ``{upstream config file name: shipped config}`` (a missing
            ``--config_path`` of upstream's name says which to pass).
        default_config: the YAML (relative to the repository) of the model's main recipe.
        detect_defaults: ``(dotted key, value)`` defaults of detect.py for this model.
        input_multiple: image height and width must be multiples of this (an int, or a
            ``"module:attribute"`` naming one).
    """

    PARTS = ("builder", "loss", "targets", "augmentation", "deploy", "output_layout", "decode",
             "training_sizes", "preprocessing", "progress_line")

    def __init__(self, name: str, task: str, builder, *, loss=None, targets=None,
                 augmentation=None, deploy=None, output_layout=None, decode=None,
                 training_sizes=None, preprocessing=None, progress_line=None, config_section: Dict = None,
                 config_aliases: Dict = None, title: str = None, upstream_flags: Dict = None,
                 upstream_translations: Dict = None, upstream_ckpt_interval_unit: str = "epochs",
                 upstream_config_files: Dict = None,
                 default_config: str = None, detect_defaults: Sequence = (),
                 input_multiple=1):
        if task not in task_names():
            raise ValueError(f"model {name!r}: task must be one of {task_names()}, got {task!r}")
        if task == "detection" and None in (targets, loss, decode, output_layout):
            raise ValueError(f"detection model {name!r} needs targets, loss, decode and "
                             f"output_layout")
        self.name = name
        self.task = task
        self.config_section = dict(config_section or {})
        self.config_aliases = dict(config_aliases or {})
        self.title = title or name
        self.upstream_flags = dict(upstream_flags or {})
        self.upstream_translations = dict(upstream_translations or {})
        self.upstream_ckpt_interval_unit = upstream_ckpt_interval_unit
        self.upstream_config_files = dict(upstream_config_files or {})
        self.default_config = default_config
        self.detect_defaults = tuple(detect_defaults)
        self._refs = {"builder": builder, "loss": loss, "targets": targets,
                      "augmentation": augmentation, "deploy": deploy,
                      "output_layout": output_layout, "decode": decode,
                      "training_sizes": training_sizes,
                      "preprocessing": preprocessing or Preprocessing(),
                      "progress_line": progress_line, "input_multiple": input_multiple}

    def __getattr__(self, part):
        refs = self.__dict__.get("_refs", {})
        if part not in refs:
            raise AttributeError(f"ModelSpec has no attribute {part!r}")
        value = _resolve(refs[part])
        self.__dict__[part] = value  # resolved once
        return value

    def __repr__(self):
        return f"ModelSpec({self.name!r}, task={self.task!r})"

    def check_image_size(self, image_size) -> None:
        """ConfigError unless this model accepts ``image_size`` ([height, width])."""
        from src.layers import check_image_size  # pylint: disable=import-outside-toplevel
        check_image_size(image_size, self.input_multiple, self.name)

    def net_options(self) -> Dict[str, object]:
        """Builder keyword arguments (besides num_classes/image_size) with defaults."""
        opts = {}
        for pname, p in inspect.signature(self.builder).parameters.items():
            if pname in ("num_classes", "image_size") or p.kind != p.KEYWORD_ONLY:
                continue
            opts[pname] = p.default
        return opts

    def preprocessing_for(self, cfg) -> Preprocessing:
        """The model's :class:`Preprocessing` under ``cfg``."""
        pre = self.preprocessing
        return pre if isinstance(pre, Preprocessing) else pre(cfg)

    def output_shapes(self, cfg) -> List[Tuple[int, ...]]:
        """Shape of each deploy output for one image (no batch axis)."""
        if self.output_layout is None:
            return [(int(cfg.num_classes),)]
        return [tuple(int(v) for v in shape) for shape in self.output_layout(cfg)]

    def deploy_network(self, cfg, net):
        """The cell export.py writes (the network itself unless the spec says otherwise)."""
        return net if self.deploy is None else self.deploy(cfg, net)


_REGISTRY: Dict[str, ModelSpec] = {}
_STATE = {"discovered": False, "plugins": False}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the zoo (and its config section to the schema); returns it."""
    if spec.name in _REGISTRY:
        raise RuntimeError(f"model {spec.name!r} registered twice")
    from src.config import (  # pylint: disable=import-outside-toplevel
        add_config_aliases, add_config_section, add_model_upstream)
    for section, keys in spec.config_section.items():
        add_config_section(section, keys, owner=spec.name)
    add_config_aliases(spec.config_aliases, owner=spec.name)
    add_model_upstream(spec, owner=spec.name)
    _REGISTRY[spec.name] = spec
    return spec


def model_modules() -> List[str]:
    """``src.<package>.model`` for every sub-package of ``src`` that has a ``model.py``."""
    import src  # pylint: disable=import-outside-toplevel
    found = []
    for info in pkgutil.iter_modules(src.__path__):
        folder = os.path.join(info.module_finder.path, info.name)
        if info.ispkg and os.path.isfile(os.path.join(folder, SPEC_MODULE + ".py")):
            found.append(f"src.{info.name}.{SPEC_MODULE}")
    return sorted(found)


def _import_plugin(entry: str) -> None:
    """Import one ``ZOO_PLUGINS`` entry: a module name, or a ``.py`` file / package folder."""
    if os.sep in entry or entry.endswith(".py") or os.path.isdir(entry):
        path = os.path.abspath(entry.rstrip(os.sep))
        if not os.path.exists(path):
            raise ConfigError(f"{PLUGINS_ENV} entry {entry!r} not found; give a module name or "
                              f"the path of a .py file or package folder")
        folder, name = os.path.split(path)
        if name.endswith(".py"):
            name = name[:-3]
        if folder not in sys.path:
            # Appended, so that a plugin cannot shadow a module; data workers inherit sys.path.
            sys.path.append(folder)
        entry = name
    try:
        importlib.import_module(entry)
    except Exception as exc:  # pylint: disable=broad-except  (the plugin's own code failed)
        raise ConfigError(f"cannot import {PLUGINS_ENV} entry {entry!r}: "
                          f"{type(exc).__name__}: {exc}") from None


def discover_models(plugins: bool = True) -> None:
    """Import every model package (and, with ``plugins``, every plugin) once; each registers."""
    if not _STATE["discovered"]:
        # The config module first: the model modules take Key from it, and its schema
        # gets their sections when they register.
        import src.config  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        for module in model_modules():
            importlib.import_module(module)
        _STATE["discovered"] = True
    if plugins and not _STATE["plugins"]:
        _STATE["plugins"] = True
        for entry in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
            _import_plugin(entry)


def list_models(task: str = None) -> List[str]:
    """Names of the registered models, optionally only those of one task."""
    discover_models()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; a ConfigError naming the choices otherwise."""
    discover_models()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, image_size=(224, 224), **options):
    """Build the network ``name`` with the given class count, input size and options."""
    spec = get_model_spec(name)
    allowed = spec.net_options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown network option(s) {unknown} for model {name!r}; "
            f"it accepts {sorted(allowed)}")
    builder: Callable = spec.builder
    return builder(num_classes=num_classes, image_size=tuple(image_size), **options)

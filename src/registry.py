"""Model registry: maps a model name to the function that builds its network.

Each per-model package registers its builder with :func:`register_model`. The
builder's keyword arguments (other than ``num_classes`` and ``image_size``) are
the model's network options: the config's ``net`` section is checked against
them, so a misspelled option is an error rather than silently ignored.
"""
import dataclasses
import importlib
import inspect
from typing import Callable, Dict, List

from src.errors import ConfigError

MODEL_PACKAGES = ("tinydarknet", "mobilenetv1", "vgg16", "yolov3_tiny")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about one registered model."""

    name: str
    builder: Callable
    task: str  # "classification" or "detection"
    input_multiple: int = 1  # image height and width must be multiples of this

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


_REGISTRY: Dict[str, ModelSpec] = {}


def register_model(name: str, task: str = "classification", input_multiple: int = 1):
    """Decorator registering ``builder(num_classes, image_size, *, **options)``."""

    def wrap(builder):
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name=name, builder=builder, task=task,
                                    input_multiple=input_multiple)
        return builder

    return wrap


def _import_all():
    for pkg in MODEL_PACKAGES:
        importlib.import_module(f"src.{pkg}")


def list_models(task: str = None) -> List[str]:
    """Names of the registered models, optionally only those of one task."""
    _import_all()
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registered model; a ConfigError naming the choices otherwise."""
    _import_all()
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
    return spec.builder(num_classes=num_classes, image_size=tuple(image_size), **options)

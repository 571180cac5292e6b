"""MindSpore Hub entry point: ``create_network(name, *args, **kwargs)`` for every zoo model."""
import inspect

import src  # noqa: F401  (CPU setup must run before MindSpore is imported)
from src.errors import ConfigError
from src.registry import create_model, get_model_spec, list_models

POSITIONAL_ARGS = ("num_classes", "image_size")


def create_network(name, *args, **kwargs):
    """Build network ``name`` (one of ``list_models()``).

    Positional arguments are ``num_classes`` then ``image_size``; keyword
    arguments may also be the model's network options. Anything left out takes
    the model's default. Unknown names or options raise ConfigError.
    """
    if name not in list_models():
        raise ConfigError(f"mindspore_hub_conf: unknown network {name!r}; "
                          f"available networks are {list_models()}")
    if len(args) > len(POSITIONAL_ARGS):
        raise ConfigError(f"create_network takes at most {len(POSITIONAL_ARGS)} positional "
                          f"arguments {POSITIONAL_ARGS} after the name, got {len(args)}")
    for arg_name, value in zip(POSITIONAL_ARGS, args):
        if arg_name in kwargs:
            raise ConfigError(f"create_network got {arg_name!r} both positionally and by keyword")
        kwargs[arg_name] = value
    builder_params = inspect.signature(get_model_spec(name).builder).parameters
    for arg_name in POSITIONAL_ARGS:
        kwargs.setdefault(arg_name, builder_params[arg_name].default)
    return create_model(name, **kwargs)

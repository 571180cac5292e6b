"""The deploy spec: what a runner must know about an exported model.

``export.py`` writes it next to the export as ``<file>.json`` (for example
``tinydarknet_imagenet.mindir.json``): model, dataset, task, num_classes,
image_size, the per-image shape of each output (the model spec's output layout),
the evaluation preprocessing (resize, crop or letterbox, mean/std) and the whole resolved config. preprocess.py, infer.py, postprocess.py and
``scripts/run_infer_310.sh`` read it, so they need no ``--config_path``; an
explicit ``--config_path`` (plus ``--key=value`` overrides) wins over it.

Command line (used by the shell script)::

    python -m src.deploy.spec --model_file=X.mindir [--config_path=C --key=value ...]

prints ``KEY=value`` lines: MODEL, DATASET, TASK, NUM_CLASSES, INPUT (image|bin),
APP_FLAGS (the preprocessing flags of the C++ app) and SOURCE.
"""
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from src.deploy.common import DeployError

SPEC_VERSION = 1


def sidecar_path(model_path: str) -> str:
    """``model.mindir`` -> ``model.mindir.json``."""
    return model_path + ".json"


def _preprocess_section(cfg) -> Dict:
    """The evaluation preprocessing of ``cfg``: the dataset's, as the model's spec adjusts it."""
    from src.datasets.common import (CIFAR10_MEAN_RGB, CIFAR10_STD_RGB,  # pylint: disable=C0415
                                     IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)
    from src.preprocessing import eval_preprocessing  # pylint: disable=import-outside-toplevel
    model = eval_preprocessing(cfg)
    height, width = (int(v) for v in cfg.image_size)

    def stats(mean, std, scale=1.0):
        out = {"mean": [v * scale for v in model.mean] if model.mean else list(mean),
               "std": [v * scale for v in model.std] if model.std else list(std)}
        if model.resize_mode == "letterbox":
            out["letterbox_fill"] = model.letterbox_fill
        return out

    if cfg.dataset == "cifar10":
        # CIFAR-10 records are not image files: preprocess.py writes the network
        # input of each record as a float32 CHW .bin, which runners feed as-is.
        square = "none" if [height, width] == [32, 32] else "stretch"
        return {"input": "bin", "height": height, "width": width,
                "resize_mode": "letterbox" if model.resize_mode == "letterbox" else square,
                "scale": 1.0 / 255.0,
                **stats(CIFAR10_MEAN_RGB, CIFAR10_STD_RGB, scale=1.0 / 255.0)}
    if cfg.dataset == "imagenet":
        return {"input": "image", "height": height, "width": width,
                "resize": int(cfg.data.resize_eval),
                "resize_mode": model.resize_mode or ("square" if cfg.data.square_resize_eval
                                                     else "shorter"),
                "scale": 1.0, **stats(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)}
    # COCO evaluation: the model's resize to the network input (plain by default).
    return {"input": "image", "height": height, "width": width,
            "resize_mode": model.resize_mode or "stretch", "scale": 1.0,
            **stats(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)}


def spec_from_config(cfg, source: str = "") -> Dict:
    """The deploy spec (a JSON-able dict) of a resolved config."""
    from src.registry import get_model_spec  # pylint: disable=import-outside-toplevel
    model = get_model_spec(cfg.model)
    return {"spec_version": SPEC_VERSION, "model": cfg.model, "dataset": cfg.dataset,
            "task": model.task, "num_classes": int(cfg.num_classes),
            "image_size": [int(v) for v in cfg.image_size],
            "input_shape": [int(cfg.export.batch_size), 3, *(int(v) for v in cfg.image_size)],
            "outputs": [list(shape) for shape in model.output_shapes(cfg)],
            "preprocess": _preprocess_section(cfg), "config": cfg.to_dict(), "source": source}


def write_sidecar(cfg, model_path: str) -> str:
    """Write the deploy spec of ``cfg`` next to the exported ``model_path``; return its path."""
    from src.utils.io import atomic_write_text  # pylint: disable=import-outside-toplevel
    path = sidecar_path(model_path)
    spec = spec_from_config(cfg, source=os.path.basename(model_path))
    spec["file_format"] = cfg.export.file_format
    atomic_write_text(path, json.dumps(spec, indent=2) + "\n")
    return path


def find_sidecar(model_path: str) -> Optional[str]:
    """The spec of ``model_path``, else of another export with the same stem, else None."""
    candidates = [sidecar_path(model_path)]
    stem = os.path.splitext(model_path)[0]
    candidates += [f"{stem}{ext}.json" for ext in (".mindir", ".onnx", ".air")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def load_spec(model_path: str = "", config_path: str = "", cli_args: Sequence[str] = ()) -> Dict:
    """The deploy spec from ``config_path`` (+ ``--key=value`` args), else from the sidecar."""
    if config_path:
        from src.config import load_config  # pylint: disable=import-outside-toplevel
        return spec_from_config(load_config(config_path, cli_args=list(cli_args)),
                                source=config_path)
    if cli_args:
        raise DeployError(f"config overrides {' '.join(cli_args)} need --config_path=<config>")
    if not model_path:
        raise DeployError("give the exported model (--model_file=...) or --config_path=<config>")
    if not os.path.isfile(model_path):
        raise DeployError(f"model file {model_path!r} not found; export one with python export.py "
                          f"--config_path=<config> --checkpoint_path=<ckpt> --file_format=MINDIR|ONNX")
    path = find_sidecar(model_path)
    if path is None:
        raise DeployError(
            f"no deploy spec for {model_path!r}: expected {sidecar_path(model_path)!r}, which "
            f"export.py writes next to the export; re-export, or pass "
            f"--config_path=<the config the model was trained with>")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read deploy spec {path!r}: {exc}") from None
    missing = [k for k in ("model", "dataset", "task", "num_classes", "image_size", "preprocess",
                           "config") if k not in spec]
    if missing:
        raise DeployError(f"deploy spec {path!r} lacks {missing}; re-export the model")
    spec["source"] = path
    return spec


def spec_config(spec: Dict):
    """The resolved :class:`~src.config.Config` stored in a spec."""
    from src.config import config_from_dict  # pylint: disable=import-outside-toplevel
    stored = dict(spec["config"])
    stored.pop("device_target", None)  # per-device values are already resolved in the file
    return config_from_dict(stored)


def image_extensions() -> List[str]:
    """File endings counted as images: every letter case of the readers' one list."""
    from src.datasets.common import image_suffix_spellings  # pylint: disable=C0415
    return image_suffix_spellings()


def app_flags(spec: Dict) -> List[str]:
    """Preprocessing flags of the C++ app (ascend310_infer/out/main) for this spec."""
    pre = spec["preprocess"]
    flags = [f"--image_height={pre['height']}", f"--image_width={pre['width']}"]
    if pre["input"] == "bin":
        return ["--input_format=bin"] + flags
    fmt = ",".join(repr(float(v)) for v in pre["mean"])
    flags += [f"--resize_mode={pre['resize_mode']}", f"--mean={fmt}",
              "--std=" + ",".join(repr(float(v)) for v in pre["std"]),
              "--extensions=" + ",".join(image_extensions())]
    if "resize" in pre:
        flags.append(f"--resize={pre['resize']}")
    if pre["resize_mode"] == "letterbox":
        flags.append(f"--letterbox_fill={float(pre.get('letterbox_fill', 0.5))!r}")
    return ["--input_format=image"] + flags


def main(argv: Sequence[str]) -> int:
    """Print the spec as KEY=value lines for shell scripts."""
    from src.config import split_config_path  # pylint: disable=import-outside-toplevel
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    config_path, rest = split_config_path(argv)
    model_file = ""
    overrides = []
    for arg in rest:
        if arg.startswith("--model_file="):
            model_file = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    spec = load_spec(model_file, config_path or "", overrides)
    lines = {"MODEL": spec["model"], "DATASET": spec["dataset"], "TASK": spec["task"],
             "NUM_CLASSES": spec["num_classes"], "INPUT": spec["preprocess"]["input"],
             "APP_FLAGS": " ".join(app_flags(spec)), "SOURCE": spec["source"]}
    for key, value in lines.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    from src.cli import run_main  # pylint: disable=import-outside-toplevel
    run_main(main, sys.argv[1:])

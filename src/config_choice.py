"""Which configuration an entry point runs with when no ``--config_path`` is given.

* ``train.py`` with no argument (or only arguments that name neither data, a
  model, a dataset, a device nor a checkpoint) runs the demo config.
* ``eval.py`` / ``export.py`` / ``detect.py`` take the config stored in the
  checkpoint (``config`` metadata) or in the export's deploy spec.
* Otherwise the arguments choose among the shipped configs in ``config/``:
  when only one fits (``--model=yolov3_tiny``, ``--dataset=coco``, a flag only
  one model has) it is used and the choice is printed; else the error lists
  the ones that fit, each as a ready command line.

A checkpoint's settings that change results (:data:`RESULT_KEYS`) cannot be
contradicted by a config or a flag: that is an error naming the key.
"""
import glob
import json
import os
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from src.config import (CONTEXT_ALIASES, ENTRY_POINTS, MODEL_ONLY_FLAGS, PATH_KEYS, SCHEMA,
                        SEED_TRANSLATIONS, Key, Config, means_none, parse_overrides, read_yaml, show, split_flags)
from src.errors import CheckpointError, ConfigError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config")
DEMO_NAME = "demo.yaml"
# Keys that change what a trained network computes: a checkpoint fixes them.
RESULT_KEYS = ("model", "num_classes", "image_size", "net", "data.resize_eval",
               "data.square_resize_eval", "preprocess")
# Keys that say which data, model, dataset, device or checkpoint a command is about.
NAMING_KEYS = ("model", "dataset", "device_target", "device_id", "checkpoint_path", "pretrained",
               "resume", "data.dir", "data.train_dir", "data.eval_dir", "data.train_ann_file",
               "data.eval_ann_file")
# Keys of a stored config that describe the machine it ran on, not the network.
_MACHINE_KEYS = ("device_target", "device_id", "distributed", "run_name", "resume", "pretrained",
                 "checkpoint_path", "modelarts", "output_dir")


def shipped_configs() -> List[Tuple[str, str, str]]:
    """(file name, model, dataset) of every shipped recipe (the demo excluded)."""
    found = []
    for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))):
        if os.path.basename(path) == DEMO_NAME:
            continue
        data = read_yaml(path)
        found.append((os.path.basename(path), data.get("model"),
                      SCHEMA["dataset"].value_aliases.get(data.get("dataset"), data.get("dataset"))))
    return found


def _implied_models(flag_names: Sequence[str], dotted: Sequence[str]) -> List[str]:
    """Models that the flags imply: flags (or keys) only one model has."""
    models = set()
    for name in flag_names:
        table = CONTEXT_ALIASES.get(name, {})
        if table and "*" not in table:
            models.update(c for c in table if c not in ENTRY_POINTS)
    models.update(MODEL_ONLY_FLAGS[name] for name in flag_names if name in MODEL_ONLY_FLAGS)
    if "training_shape" in flag_names or any(k.startswith("detection.") for k in dotted):
        models.add("yolov3_tiny")
    return sorted(models)


def command_line(entry: str, config_name: Optional[str], argv: Sequence[str],
                 extra: Sequence[str] = ()) -> str:
    """``python <entry>.py --config_path=config/<name> <the user's arguments>``."""
    parts = [f"python {entry}.py"]
    if config_name:
        parts.append(f"--config_path=config/{config_name}")
    parts += [shlex.quote(a) for a in argv] + list(extra)
    return " ".join(parts)


def choose_shipped_config(entry: str, argv: Sequence[str], reason: str = "",
                          extra: Sequence[str] = (), filters: Dict[str, str] = None,
                          notes: List[str] = None) -> str:
    """The shipped config the arguments decide; ConfigError listing the candidates otherwise."""
    flags = split_flags(argv)
    names = [n for n, _ in flags]
    triples = parse_overrides(argv)
    given = {dotted: value for dotted, value, _ in triples}
    wanted = dict(filters or {})
    if "model" in given:
        wanted["model"] = str(given["model"])
    implied = _implied_models(names, list(given))
    if len(implied) == 1 and "model" not in wanted:
        wanted["model"] = implied[0]
    if "dataset" in given:
        value = str(given["dataset"])
        wanted["dataset"] = SCHEMA["dataset"].value_aliases.get(value, value)
    candidates = [c for c in shipped_configs()
                  if all(c[1 if k == "model" else 2] == v for k, v in wanted.items())]
    decided = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    if len(candidates) == 1 and wanted:
        chosen = candidates[0][0]
        if notes is not None:
            notes.append(f"no --config_path given: using config/{chosen} (the shipped config "
                         f"for {decided})")
        return os.path.join(CONFIG_DIR, chosen)
    why = reason or ("no --config_path given, and these arguments name data, a model, a dataset, "
                     "a device or a checkpoint, so the demo config would be the wrong one")
    if not candidates:
        every = ", ".join(f"{m}/{d}" for _, m, d in shipped_configs())
        raise ConfigError(f"{why}; no shipped config has {decided} (they cover {every}): pass "
                          f"--config_path=<your config>")
    commands = " | ".join(command_line(entry, c[0], argv, extra) for c in candidates)
    raise ConfigError(f"{why}; {len(candidates)} shipped configs fit"
                      f"{' (' + decided + ')' if decided else ''}, run one of: {commands}")


def names_something(argv: Sequence[str], entry: str) -> bool:
    """Whether the arguments name data, a model, a dataset, a device or a checkpoint."""
    flags = split_flags(argv)
    names = [n for n, _ in flags]
    given = [(d, v) for d, v, _ in parse_overrides(argv, entry=entry)]
    dotted = [d for d, v in given if not (d in PATH_KEYS and means_none(v))]
    return (any(d in NAMING_KEYS or d.startswith(("net.", "detection.")) for d in dotted)
            or bool(_implied_models(names, dotted))
            or any(n in SEED_TRANSLATIONS for n in names))


# ------------------------------------------------------------------ stored configs

def checkpoint_files(path: str) -> List[str]:
    """The checkpoint file, or the .ckpt files of a folder (oldest first)."""
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "*.ckpt")), key=os.path.getmtime)
    return [path]


def read_checkpoint_meta(path: str) -> Optional[Dict]:
    """The metadata of a checkpoint file without its tensors; None if it cannot be read."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    from src.checkpoint import META_KEYS, _scalar  # pylint: disable=import-outside-toplevel
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    try:
        raw = ms.load_checkpoint(path, choice_func=lambda name: name in META_KEYS)
    except Exception:  # pylint: disable=broad-except  (the full read reports it clearly)
        return None
    return {k: v if isinstance(v, str) else _scalar(v) for k, v in raw.items()}


def stored_config(meta: Optional[Dict]) -> Optional[Dict]:
    """The resolved config a checkpoint carries (``config`` metadata), as a dict."""
    if not meta or not isinstance(meta.get("config"), str):
        return None
    try:
        stored = json.loads(meta["config"])
    except ValueError:
        return None
    return stored if isinstance(stored, dict) else None


def network_config(stored: Dict) -> Dict:
    """A stored config without the keys that describe the machine it ran on."""
    kept = {k: v for k, v in stored.items() if k not in _MACHINE_KEYS}

    def drop_per_device(schema, node):
        for name, key in schema.items():
            if name not in node:
                continue
            if isinstance(key, dict) and isinstance(node[name], dict):
                node[name] = dict(node[name])
                drop_per_device(key, node[name])
            elif isinstance(key, Key) and key.per_device:
                del node[name]  # resolved for the training device: the defaults fit this one

    drop_per_device(SCHEMA, kept)
    return kept


def _stored_value(meta: Dict, stored: Optional[Dict], dotted: str):
    if stored is not None:
        return Config(stored).get(dotted)
    legacy = meta.get(dotted) if dotted in ("model", "num_classes", "image_size") else None
    if dotted == "image_size" and isinstance(legacy, str):
        try:
            legacy = json.loads(legacy)
        except ValueError:
            return None
    return legacy


def check_against_checkpoint(cfg: Config, meta: Optional[Dict], source: str) -> None:
    """ConfigError when ``cfg`` contradicts the checkpoint on a key that changes results."""
    if not meta:
        return
    stored = stored_config(meta)
    for dotted in RESULT_KEYS:
        theirs = _stored_value(meta, stored, dotted)
        if theirs is None:
            continue
        ours = cfg.get(dotted)
        if dotted == "num_classes":
            theirs = int(theirs)
        if ours != theirs:
            flag = f"--{dotted}=" + (",".join(map(str, theirs)) if isinstance(theirs, list)
                                     else show(theirs))
            raise ConfigError(
                f"{source} was made with {dotted}={show(theirs)}, but this run has {dotted}="
                f"{show(ours)} (from the config file or a flag); that would change its results: "
                f"drop the setting (without --config_path the checkpoint's own settings are "
                f"used) or pass {flag}")


def sidecar_config(model_file: str) -> Optional[Dict]:
    """The config stored in an export's deploy spec, or None when there is none."""
    from src.deploy.spec import find_sidecar  # pylint: disable=import-outside-toplevel
    path = find_sidecar(model_file) if model_file and os.path.isfile(model_file) else None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return stored if isinstance(stored, dict) else None


def config_for_checkpoint(entry: str, argv: Sequence[str], checkpoint: str, notes: List[str]
                          ) -> Tuple[Optional[str], Optional[Dict], str, List[Tuple[str, object]]]:
    """(config file, stored config, its source, overrides) for a checkpoint and no --config_path."""
    if not os.path.exists(checkpoint):
        raise CheckpointError(f"checkpoint {checkpoint!r} not found; pass an existing .ckpt "
                              f"file (its config is read from it) or folder")
    files = checkpoint_files(checkpoint)
    if not files:
        raise CheckpointError(f"no .ckpt files in folder {checkpoint!r}")
    meta = read_checkpoint_meta(files[-1])
    stored = stored_config(meta)
    if stored is not None:
        notes.append(f"no --config_path given: using the config stored in {files[-1]} "
                     f"(model={stored.get('model')}, image_size={stored.get('image_size')})")
        return None, network_config(stored), f"config stored in {files[-1]}", []
    # A checkpoint of an older version: its model, dataset, class count and size still decide.
    meta = meta or {}
    filters = {k: meta[k] for k in ("model", "dataset") if isinstance(meta.get(k), str)}
    known = []
    if "num_classes" in meta:
        known.append(("num_classes", int(meta["num_classes"])))
    size = _stored_value(meta, None, "image_size")
    if isinstance(size, list):
        known.append(("image_size", size))
    extra = [f"--{k}=" + (",".join(map(str, v)) if isinstance(v, list) else str(v))
             for k, v in known]
    reason = (f"no --config_path given and checkpoint {files[-1]} stores no config (written "
              f"before checkpoints carried one)")
    chosen = choose_shipped_config(entry, argv, reason=reason, extra=extra, filters=filters,
                                   notes=notes)
    if known:
        notes.append(f"with the checkpoint's {' '.join(extra)}")
    return chosen, None, "", known

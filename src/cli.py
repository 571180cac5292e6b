"""What every entry point (train/eval/export/...) does the same way.

* ``--config_path FILE`` then ``--key=value`` overrides, ``-h`` lists every key;
* a :class:`~src.errors.ZooError` becomes one ``error: ...`` line and a non-zero exit;
* each run gets a folder with the resolved config, the environment and the log.
"""
import os
import platform
import sys
from typing import Callable, List, Sequence

from src.config import (Config, check_flags, help_text, load_config, means_none, parse_overrides,
                        save_config, split_config_path)
from src.errors import ConfigError, ZooError
from src.run_folder import default_run_name
from src.utils.io import atomic_write_text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PRINT_CONFIG_FLAG = "--print_config"


def parse(argv: Sequence[str], usage: str, default_config: str = None,
          program_defaults: Sequence = (), entry: str = None, model_file: str = "",
          announce: bool = True) -> Config:
    """Resolve the config from argv (``-h`` prints usage and every key, then exits 0).

    ``entry`` (train/eval/export/detect) reads upstream flags as that script
    did, and without ``--config_path`` picks the config as
    :mod:`src.config_choice` describes. ``--print_config`` prints the resolved
    config and exits 0 before any work (the same resolution as a real run).
    ``announce=False`` keeps the notes (and ``--print_config``) for a second call.
    """
    argv = list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage.strip() + "\n\nconfig keys (set in the YAML file or as --key=value):\n"
              + help_text())
        raise SystemExit(0)
    config_path, rest = split_config_path(argv)
    print_config = PRINT_CONFIG_FLAG in rest
    rest = [a for a in rest if a != PRINT_CONFIG_FLAG]
    notes: List[str] = []
    base, base_source, known = None, "", []
    if entry is None:
        config_path = config_path or default_config
    else:
        from src import config_choice as choice  # pylint: disable=import-outside-toplevel
        check_flags(rest, entry)  # a wrong flag is named before any config is chosen
        wanted = {d: v for d, v, _ in parse_overrides(rest, entry=entry)}
        if str(wanted.get("modelarts.enabled", "")).strip().lower() in ("true", "1", "yes"):
            from src.modelarts import check_available  # pylint: disable=C0415
            check_available()  # before anything is read from paths that live on OBS
        checkpoint = wanted.get("checkpoint_path", "")
        checkpoint = "" if means_none(checkpoint) else str(checkpoint).strip()
        if config_path:
            pass
        elif entry == "train":
            config_path = (choice.choose_shipped_config(entry, rest, notes=notes)
                           if choice.names_something(rest, entry) else default_config)
        elif entry == "detect" and model_file:
            stored = choice.sidecar_config(model_file)
            if stored is None:
                raise ConfigError(f"no --config_path given and {model_file!r} has no deploy "
                                  f"spec (<file>.json, written by export.py) to read it from; "
                                  f"pass --config_path=<the config it was trained with>")
            base, base_source = choice.network_config(stored), f"deploy spec of {model_file}"
            notes.append(f"no --config_path given: using the config in the deploy spec of "
                         f"{model_file} (model={stored.get('model')})")
        elif checkpoint:
            config_path, base, base_source, known = choice.config_for_checkpoint(
                entry, rest, checkpoint, notes)
        elif choice.names_something(rest, entry):
            config_path = choice.choose_shipped_config(
                entry, rest, extra=["--checkpoint_path=<file.ckpt>"], notes=notes)
        else:
            given = "--model_file=<export> or " if entry == "detect" else ""
            raise ConfigError(f"no checkpoint given; pass {given}--checkpoint_path=<file.ckpt> "
                              f"(the config it was trained with is read from it), or "
                              f"--config_path=<config> with it")
    cfg = load_config(config_path, overrides=list(program_defaults) + known, cli_args=rest,
                      entry=entry, notes=notes, base=base, base_source=base_source)
    if entry in ("eval", "export", "detect"):
        _check_against_stored(cfg, entry, model_file)
    if not announce:
        return cfg
    for note in notes:
        print(f"note: {note}", flush=True)
    if print_config:
        print(cfg.dump(), end="", flush=True)
        raise SystemExit(0)
    return cfg


def _check_against_stored(cfg: Config, entry: str, model_file: str) -> None:
    """Refuse settings that contradict the checkpoint (or export) being used."""
    import json  # pylint: disable=import-outside-toplevel

    from src import config_choice as choice  # pylint: disable=import-outside-toplevel
    if entry == "detect" and model_file:
        stored = choice.sidecar_config(model_file)
        if stored is not None:
            choice.check_against_checkpoint(cfg, {"config": json.dumps(stored)},
                                            f"export {model_file}")
        return
    path = cfg.checkpoint_path
    if path and os.path.exists(path):
        for file in choice.checkpoint_files(path):
            meta = choice.read_checkpoint_meta(file)
            if entry == "detect" and not _is_detector((meta or {}).get("model")):
                continue  # detect.py refuses a classifier's checkpoint in its own words
            choice.check_against_checkpoint(cfg, meta, f"checkpoint {file}")


def _is_detector(model) -> bool:
    from src.registry import get_model_spec, list_models  # pylint: disable=C0415
    return model not in list_models() or get_model_spec(model).task == "detection"


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str] = None) -> None:
    """Call ``main(argv)``; turn ZooErrors and Ctrl-C into one clear line and an exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = main(argv)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        code = 130
    except OSError as exc:
        # Logs and results are written all along: a full disk or a vanished
        # folder must still end with one clear line (checkpoints are atomic).
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot write{where}: {exc.strerror or exc}; free space or choose another "
              f"--output_dir (saved checkpoints are intact)", file=sys.stderr, flush=True)
        code = 1
    raise SystemExit(code or 0)


def run_directory(cfg: Config, kind: str, rank: int = 0, group_size: int = 1) -> str:
    """``output_dir/run_name`` (created); ``run_name`` defaults to model_dataset_kind_time."""
    name = cfg.run_name
    if not name:
        # Workers of one launch share a parent process: use it so they share the folder.
        suffix = f"-p{os.getppid()}" if group_size > 1 else ""
        name = default_run_name(f"{cfg.model}_{cfg.dataset}", kind, cfg.output_dir, suffix)
    path = os.path.join(cfg.output_dir, name)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot create the run folder {path!r} ({exc.strerror}); choose a "
                       f"writable --output_dir") from None
    return path


def record_run(cfg: Config, run_dir: str, rank: int = 0) -> None:
    """Write the resolved config and an environment summary into the run folder."""
    if rank == 0:
        save_config(cfg, run_dir)
    import mindspore  # already loaded by the caller; imported here for its version only
    interesting = sorted(k for k in os.environ
                         if k.startswith(("DEVICE_", "RANK_", "MS_", "ONEDNN", "OMP_", "OMPI_COMM",
                                          "CUDA_VISIBLE", "ASCEND_", "GLOG")))
    lines = [f"python {platform.python_version()}", f"mindspore {mindspore.__version__}",
             f"platform {platform.platform()}", f"cpu_count {os.cpu_count()}",
             f"argv {' '.join(sys.argv)}"]
    lines += [f"{k}={os.environ[k]}" for k in interesting]
    name = "env.txt" if rank == 0 else f"env_rank_{rank}.txt"
    atomic_write_text(os.path.join(run_dir, name), "\n".join(lines) + "\n")


def ensure_demo_data_if_asked(cfg: Config) -> None:
    """With ``data.demo=True``, make the demo dataset at ``data.dir`` if it is missing."""
    if not cfg.data.demo:
        return
    from src.datasets.demo import ensure_demo_data  # pylint: disable=import-outside-toplevel
    folder = os.path.normpath(cfg.data.dir)
    if os.path.basename(folder) != cfg.dataset:
        raise ZooError(f"data.demo=True needs data.dir to end in /{cfg.dataset} "
                       f"(got {cfg.data.dir!r}), e.g. --data_dir=demo_data/{cfg.dataset}")
    if not os.path.isdir(folder):
        print(f"making the demo {cfg.dataset} dataset in {folder} ...", flush=True)
        ensure_demo_data(os.path.dirname(folder) or ".", cfg.dataset)

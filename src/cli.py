"""What every entry point (train/eval/export/...) does the same way.

* ``--config_path FILE`` then ``--key=value`` overrides, ``-h`` lists every key;
* a :class:`~src.errors.ZooError` becomes one ``error: ...`` line and a non-zero exit;
* each run gets a folder with the resolved config, the environment and the log.
"""
import datetime
import os
import platform
import sys
from typing import Callable, Sequence

from src.config import Config, help_text, load_config, save_config, split_config_path
from src.errors import ZooError
from src.utils.io import atomic_write_text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv: Sequence[str], usage: str, default_config: str = None,
          program_defaults: Sequence = ()) -> Config:
    """Resolve the config from argv (``-h`` prints usage and every key, then exits 0)."""
    argv = list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage.strip() + "\n\nconfig keys (set in the YAML file or as --key=value):\n"
              + help_text())
        raise SystemExit(0)
    config_path, rest = split_config_path(argv)
    return load_config(config_path or default_config, overrides=program_defaults, cli_args=rest)


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
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        # Workers of one launch share a parent process: use it so they share the folder.
        suffix = f"-p{os.getppid()}" if group_size > 1 else ""
        name = f"{cfg.model}_{cfg.dataset}_{kind}_{stamp}{suffix}"
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

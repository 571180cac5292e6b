"""A run folder belongs to one training run: its lock, and the record of its own files.

* ``run.lock`` (pid, host, start time) is held by rank 0 while a run trains:
  a second run in the same folder is refused; the lock of a process that no
  longer runs on this host is taken over with a note.
* A folder holding an earlier run (checkpoints, ``metrics.csv``, ``run.json``)
  is only continued with ``--resume``; otherwise the run is refused, naming the
  two commands that resolve it.
* ``run.json`` lists the checkpoint files the run wrote and its best score, so
  pruning and ``best.ckpt`` never touch another run's files.

This module does not import MindSpore.
"""
import datetime
import json
import os
import shlex
import socket

from src.errors import ConfigError, ZooError
from src.utils.io import atomic_write_text, is_temporary_name, remove_stale_temporaries

LOCK_NAME = "run.lock"
RECORD_NAME = "run.json"
HISTORY_NAME = "metrics.csv"


class RunFolderError(ZooError):
    """The run folder is in use by another run, or holds an earlier run."""


def default_run_name(label: str, kind: str, output_dir: str, shared_suffix: str = "") -> str:
    """``<label>_<kind>_<date>-<time>``: the one format of a default run folder name.

    The launchers ask for it too (``python -m src.run_folder default-name``). A name already
    taken in ``output_dir`` gets ``-2``, ``-3``, ... unless ``shared_suffix`` is given: the
    workers of one launch must all land in the same folder.
    """
    base = f"{label}_{kind}_{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if shared_suffix:
        return base + shared_suffix
    name, number = base, 1
    while os.path.exists(os.path.join(output_dir, name)):
        number += 1
        name = f"{base}-{number}"
    return name


def check_resume_request(cfg) -> None:
    """``--resume=auto`` continues ``output_dir/run_name``, so it needs ``--run_name``."""
    if cfg.resume == "auto" and not cfg.run_name:
        raise ConfigError(
            "--resume=auto continues the run in output_dir/run_name, so it needs the run's folder "
            "name: add --run_name=<folder under output_dir> (e.g. the name printed as 'run "
            "folder:' by the first run), or pass --resume=<run folder or .ckpt file>")


def claim(cfg, run_dir: str, rank: int, argv) -> "RunLock":
    """Make ``run_dir`` this run's before anything is written there; return the held lock.

    Refuses (RunFolderError, nothing written) when another run holds the
    folder or it holds an earlier run and ``cfg.resume`` does not continue it.
    Rank 0 takes the lock and removes partial files of interrupted saves;
    other ranks of the same launch share the folder and only check.
    """
    lock = RunLock(run_dir)
    holder = lock.holder()
    here = holder is not None and holder.get("host") == socket.gethostname()
    if holder is not None and rank == 0 and not here:
        raise RunFolderError(
            f"run folder {run_dir} is locked by process {holder.get('pid')} on host "
            f"{holder.get('host')} (started {holder.get('started')}); wait for that run, "
            f"choose another --run_name, or delete {lock.path} if no run uses it any more")
    # Other ranks find their own rank 0's lock (same parent process on this host, or
    # another node); only a live lock of another launch on this host stops them.
    if here and (rank == 0 or holder.get("ppid") != os.getppid()) and _alive(holder):
        raise RunFolderError(
            f"run folder {run_dir} is in use by another training run (pid {holder.get('pid')}, "
            f"started {holder.get('started')}); wait for it to finish or choose another "
            f"--run_name")
    earlier = earlier_run_files(run_dir)
    if earlier and not _continues(cfg, run_dir):
        raise RunFolderError(_reuse_message(cfg, run_dir, earlier, argv))
    if rank == 0:
        lock.acquire(stale=holder)
        for folder in _checkpoint_folders(run_dir):
            remove_stale_temporaries(folder)
    return lock


class RunLock:
    """``run.lock`` in a run folder: who trains there (pid, host, start time)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.held = False
        self.note = None  # set when a stale lock was taken over

    def holder(self):
        """The lock's contents, or None when unlocked (an unreadable lock counts as stale)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"host": socket.gethostname()}

    def acquire(self, stale=None) -> None:
        if stale is not None:
            self.note = (f"note: taking over the lock of run folder {os.path.dirname(self.path)} "
                         f"left by process {stale.get('pid', '?')} (started "
                         f"{stale.get('started', '?')}), which no longer runs")
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        text = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "host": socket.gethostname(),
                           "started": _now(), "process_start": _process_start(os.getpid())})
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another run started between the check and now
            raise RunFolderError(f"run folder {os.path.dirname(self.path)} is in use by another "
                                 f"training run that started just now; choose another "
                                 f"--run_name") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass


def _alive(holder) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = holder.get("process_start")
    now = _process_start(pid)
    # A zombie, or another process that got the same pid since, is not the holder.
    return now != "zombie" and (started is None or now is None or started == now)


def _process_start(pid: int):
    """The kernel's start time of ``pid`` (clock ticks since boot), 'zombie', or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "zombie" if fields[0] == "Z" else int(fields[19])


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _checkpoint_folders(run_dir: str):
    folders = [run_dir, os.path.join(run_dir, "checkpoints")]
    try:
        folders += [entry.path for entry in os.scandir(folders[1])
                    if entry.is_dir() and entry.name.startswith("rank_")]
    except OSError:
        pass
    return folders


def earlier_run_files(run_dir: str):
    """Names (relative to ``run_dir``) of what an earlier training run left there."""
    found = [name for name in (RECORD_NAME, HISTORY_NAME)
             if os.path.isfile(os.path.join(run_dir, name))]
    for folder in _checkpoint_folders(run_dir)[1:]:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found += [os.path.relpath(os.path.join(folder, name), run_dir) for name in names
                  if name.endswith(".ckpt") and not is_temporary_name(name)]
    return found


def _continues(cfg, run_dir: str) -> bool:
    """True when ``cfg.resume`` continues the run in ``run_dir`` itself."""
    if not cfg.resume:
        return False
    if cfg.resume == "auto":
        return True
    folder = os.path.realpath(run_dir)
    return os.path.commonpath([folder, os.path.realpath(cfg.resume)]) == folder


def _reuse_message(cfg, run_dir: str, earlier, argv) -> str:
    name = os.path.basename(os.path.normpath(run_dir))
    what = ", ".join(earlier[:3]) + (f" and {len(earlier) - 3} more" if len(earlier) > 3 else "")
    fresh, number = f"{name}_2", 2
    while os.path.exists(os.path.join(os.path.dirname(os.path.normpath(run_dir)), fresh)):
        number += 1
        fresh = f"{name}_{number}"
    rest = _without(argv, ("--run_name", "--resume"))
    resume = shlex.join(["python", "train.py", *rest, f"--run_name={name}", "--resume=auto"])
    new = shlex.join(["python", "train.py", *rest, f"--run_name={fresh}"])
    return (f"run folder {run_dir} already holds an earlier run ({what}), which this run would "
            f"overwrite; continue that run: {resume}  or start a new one: {new}")


def _without(argv, keys):
    """``argv`` without the given ``--key=value`` / ``--key value`` options."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        key = arg.split("=", 1)[0]
        if key in keys:
            skip = "=" not in arg
            continue
        rest.append(arg)
    return rest


class RunRecord:
    """``run.json``: the checkpoint files a run wrote and its best score (paths relative to the run folder)."""

    def __init__(self, path: str, run_dir: str, data=None):
        self.path, self.run_dir = path, run_dir
        self.data = {"checkpoints": [], "best": None}
        self.data.update(data or {})

    @classmethod
    def open(cls, run_dir: str, rank: int, continuing: bool, ckpt_dir: str) -> "RunRecord":
        """This rank's record; a continued run keeps (or, if none, adopts) the earlier files."""
        path = os.path.join(run_dir, *([f"rank_{rank}"] if rank else []), RECORD_NAME)
        if not continuing:
            return cls(path, run_dir)
        try:
            with open(path, encoding="utf-8") as f:
                return cls(path, run_dir, json.load(f))
        except (OSError, ValueError):
            pass
        record = cls(path, run_dir)
        if os.path.isdir(ckpt_dir):  # a folder written before run.json existed
            record.data["checkpoints"] = [
                record._relative(os.path.join(ckpt_dir, name)) for name in sorted(os.listdir(ckpt_dir))
                if name.endswith(".ckpt") and name != "best.ckpt" and not is_temporary_name(name)]
        return record

    def _relative(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(self.run_dir))

    @property
    def checkpoints(self):
        """Paths of this run's training checkpoints."""
        return [os.path.join(self.run_dir, name) for name in self.data["checkpoints"]]

    @property
    def best_score(self):
        best = self.data.get("best")
        return best.get("value") if isinstance(best, dict) else None

    def add(self, path: str) -> None:
        name = self._relative(path)
        if name not in self.data["checkpoints"]:
            self.data["checkpoints"].append(name)
        self.save()

    def forget(self, paths) -> None:
        gone = {self._relative(path) for path in paths}
        self.data["checkpoints"] = [n for n in self.data["checkpoints"] if n not in gone]
        self.save()

    def set_best(self, path: str, metric: str, value: float, epoch: int) -> None:
        self.data["best"] = {"file": self._relative(path), "metric": metric, "value": value,
                             "epoch": epoch}
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 5 or sys.argv[1] != "default-name":
        sys.exit("usage: python -m src.run_folder default-name LABEL KIND OUTPUT_DIR")
    print(default_run_name(*sys.argv[2:]))

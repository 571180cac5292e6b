"""A run folder belongs to one run (issue 15), and every run leaves a history (issue 12).

In-process: the lock (live, stale, another host, other ranks), refusing to
reuse a folder that holds an earlier run, removing partial files of
interrupted saves, pruning and best.ckpt touching only the run's own files,
metrics.csv rows (resume without duplicates) and curves.png, the "config"
metadata of checkpoints. Then train.py as a user runs it: a second run with
the same --run_name, and a run while another holds the folder, are refused
with one line and leave every earlier file byte-identical.
"""
import csv
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401  (must precede mindspore)
from src import run_folder
from src.run_folder import RunFolderError, claim
from test_reliability import Log, make_cfg, patch_task  # the engine tests' helpers

REPO = Path(__file__).resolve().parents[1]
_LAUNCHER_ENV = ("MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE", "RANK_TABLE_FILE", "RANK_SIZE",
                 "RANK_ID", "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "DEVICE_ID")


def snapshot(folder):
    """{relative path: sha256} of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run_dir, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {"pid": os.getpid(), "ppid": os.getppid(), "host": socket.gethostname(),
            "started": "2026-01-01T00:00:00+00:00",
            "process_start": run_folder._process_start(os.getpid())}  # pylint: disable=protected-access
    data.update(fields)
    (run_dir / "run.lock").write_text(json.dumps(data))
    return run_dir / "run.lock"


# ---------------------------------------------------------------- the lock

def test_a_live_lock_refuses_the_run_and_is_left_alone(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    lock = write_lock(tmp_path / "run")
    before = lock.read_bytes()
    with pytest.raises(RunFolderError, match=rf"run folder {re.escape(str(tmp_path / 'run'))} is "
                                             rf"in use by another training run \(pid {os.getpid()},"
                                             r" started 2026-01-01T00:00:00\+00:00\); wait for it "
                                             r"to finish or choose another --run_name$"):
        claim(cfg, str(tmp_path / "run"), 0, [])
    assert lock.read_bytes() == before


def test_a_stale_lock_on_this_host_is_taken_over_with_a_note(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    pid = dead_pid()
    lock_path = write_lock(tmp_path / "run", pid=pid, process_start=None)
    lock = claim(cfg, str(tmp_path / "run"), 0, [])
    assert lock.note == (f"note: taking over the lock of run folder {tmp_path / 'run'} left by "
                         f"process {pid} (started 2026-01-01T00:00:00+00:00), which no longer runs")
    held = json.loads(lock_path.read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    lock.release()
    assert not lock_path.exists()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    write_lock(tmp_path / "run", process_start=1)  # this pid, but another process's start time
    lock = claim(cfg, str(tmp_path / "run"), 0, [])
    assert lock.note and lock.held
    lock.release()


def test_a_lock_from_another_host_is_refused_naming_the_file(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    lock = write_lock(tmp_path / "run", host="elsewhere", pid=dead_pid())
    with pytest.raises(RunFolderError, match=r"locked by process \d+ on host elsewhere .*delete "
                                             + re.escape(str(lock))):
        claim(cfg, str(tmp_path / "run"), 0, [])


def test_other_ranks_share_the_folder_of_their_launch_only(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    write_lock(tmp_path / "run")  # rank 0 of this launch (same parent process)
    assert not claim(cfg, str(tmp_path / "run"), 1, []).held
    write_lock(tmp_path / "run", host="node0")  # rank 0 on another node (shared storage)
    assert not claim(cfg, str(tmp_path / "run"), 1, []).held
    write_lock(tmp_path / "run", ppid=os.getppid() + 100000)  # another launch's rank 0
    with pytest.raises(RunFolderError, match="in use by another training run"):
        claim(cfg, str(tmp_path / "run"), 1, [])


# ---------------------------------------------------------------- a folder holds one run

def earlier_run(run_dir):
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "tinydarknet_cifar10-6_4.ckpt").write_bytes(b"six")
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"best")
    (run_dir / "metrics.csv").write_text("epoch\n1\n")


def test_an_earlier_run_is_only_continued_with_resume(tmp_path):
    run_dir = tmp_path / "r2"
    earlier_run(run_dir)
    before = snapshot(run_dir)
    argv = ["--config_path=config/demo.yaml", "--epochs=3", "--run_name=r2"]
    cfg = make_cfg(tmp_path, tmp_path, run_name="r2")
    (tmp_path / "r2_2").mkdir()  # taken: the suggestion must name a free folder
    with pytest.raises(RunFolderError) as info:
        claim(cfg, str(run_dir), 0, argv)
    assert str(info.value) == (
        f"run folder {run_dir} already holds an earlier run (metrics.csv, "
        f"checkpoints/best.ckpt, checkpoints/tinydarknet_cifar10-6_4.ckpt), which this run would "
        f"overwrite; continue that run: python train.py --config_path=config/demo.yaml --epochs=3 "
        f"--run_name=r2 --resume=auto  or start a new one: python train.py "
        f"--config_path=config/demo.yaml --epochs=3 --run_name=r2_3")
    assert snapshot(run_dir) == before
    elsewhere = make_cfg(tmp_path, tmp_path, run_name="r2", resume=str(tmp_path / "other.ckpt"))
    with pytest.raises(RunFolderError, match="already holds an earlier run"):
        claim(elsewhere, str(run_dir), 0, argv)
    for resume in ("auto", str(run_dir), str(run_dir / "checkpoints" / "x-6_4.ckpt")):
        claim(make_cfg(tmp_path, tmp_path, run_name="r2", resume=resume), str(run_dir), 0,
              argv).release()


def test_partial_files_of_interrupted_saves_are_removed_when_the_next_run_starts(tmp_path):
    cfg = make_cfg(tmp_path, tmp_path)
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    old = time.time() - 3600
    partial = [folder / ".tinydarknet_cifar10-2_4.k3j_x9a1.tmp.ckpt",
               tmp_path / "run" / ".metrics.abcdefgh.tmp.csv"]
    for path in partial:
        path.write_bytes(b"partial")
        os.utime(path, (old, old))
    keep = folder / "notes.txt"
    keep.write_text("mine")
    claim(cfg, str(tmp_path / "run"), 0, []).release()
    assert not any(p.exists() for p in partial) and keep.read_text() == "mine"


# ---------------------------------------------------------------- fit: own files, history

@pytest.fixture
def scripted_scores(monkeypatch):
    """Evaluation returns the given top-1 values in turn (no evaluation data needed)."""
    scores = []

    def evaluate(cfg, net, ctx=None, dataset=None, log=print):
        value = scores.pop(0)
        return {"top_1_accuracy": value, "top_5_accuracy": min(1.0, 2 * value),
                "num_samples": 40, "images_per_second": 100.0}

    patch_task(monkeypatch, evaluate=evaluate)
    return scores


def test_history_rows_best_and_resume_without_duplicates(small_cifar, tmp_path, scripted_scores):
    from src import checkpoint as ckpt
    from src.device import RunContext, setup_device
    from src.engine import fit, learning_rates

    setup_device("CPU", 0, "graph")
    ctx = RunContext("CPU", 0)
    run_dir = tmp_path / "run"
    scripted_scores += [0.5, 0.9, 0.7]
    cfg = make_cfg(small_cifar, tmp_path, epochs=3, **{"checkpoint.eval_every_epochs": 2,
                                                       "checkpoint.keep_max": 2})
    state, _, metrics = fit(cfg, ctx, str(run_dir), Log())
    assert metrics["top_1_accuracy"] == 0.9 and state.best_metric == 0.9
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "global_step", "loss", "lr", "images_per_second",
                             "top_1_accuracy", "top_5_accuracy", "epoch_seconds", "wall_seconds"]
    assert [(r["epoch"], r["global_step"], r["top_1_accuracy"]) for r in rows] == \
        [("1", "4", ""), ("2", "8", "0.5"), ("3", "12", "0.9")]
    assert all(float(r["loss"]) > 0 and float(r["images_per_second"]) > 0 for r in rows)
    lrs = learning_rates(cfg, 4)
    assert [float(r["lr"]) for r in rows] == pytest.approx([lrs[3], lrs[7], lrs[11]], rel=1e-5)
    walls = [float(r["wall_seconds"]) for r in rows]
    assert walls == sorted(walls) and walls[0] > 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["checkpoints"] == ["checkpoints/tinydarknet_cifar10-2_4.ckpt",
                                     "checkpoints/tinydarknet_cifar10-3_4.ckpt"]
    assert record["best"] == {"file": "checkpoints/best.ckpt", "metric": "top_1_accuracy",
                              "value": 0.9, "epoch": 3}
    _, meta = ckpt.read_checkpoint(str(run_dir / "checkpoints" / "best.ckpt"))
    assert meta["config"] == json.dumps(cfg.to_dict(), sort_keys=True)
    assert json.loads(meta["config"])["epochs"] == 3

    # Resume after epoch 2 and train epoch 3 again (worse this time): rows 1-2 are kept as they
    # were, epoch 3 is replaced, and best.ckpt (0.9) is not overwritten by 0.7.
    csv_lines = (run_dir / "metrics.csv").read_text().splitlines()
    best_before = (run_dir / "checkpoints" / "best.ckpt").read_bytes()
    resumed = make_cfg(small_cifar, tmp_path, epochs=3,
                       resume=str(run_dir / "checkpoints" / "tinydarknet_cifar10-2_4.ckpt"),
                       **{"checkpoint.eval_every_epochs": 2, "checkpoint.keep_max": 2})
    state, _, metrics = fit(resumed, ctx, str(run_dir), Log())
    assert metrics["top_1_accuracy"] == 0.7 and state.best_metric == 0.9
    new_lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert new_lines[:3] == csv_lines[:3] and len(new_lines) == 4
    assert new_lines[3].startswith("3,12,") and ",0.7," in new_lines[3]
    assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == best_before
    assert float(new_lines[3].split(",")[-1]) > walls[1]  # the clock continues

    png = (run_dir / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    import matplotlib.image
    pixels = matplotlib.image.imread(str(run_dir / "curves.png"))
    assert pixels.shape[:2] == (360, 900)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # not blank


def test_pruning_and_the_final_checkpoint_ignore_files_of_another_run(small_cifar, tmp_path):
    from src.device import RunContext, setup_device
    from src.engine import fit

    setup_device("CPU", 0, "graph")
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    foreign = [folder / "tinydarknet_cifar10-5_4.ckpt", folder / "tinydarknet_cifar10-6_4.ckpt"]
    for path in foreign:
        path.write_bytes(b"another run's checkpoint")
    cfg = make_cfg(small_cifar, tmp_path, epochs=2, **{"checkpoint.keep_max": 1})
    state, _, _ = fit(cfg, RunContext("CPU", 0), str(tmp_path / "run"), Log())
    assert state.last_checkpoint == str(folder / "tinydarknet_cifar10-2_4.ckpt")
    assert os.path.isfile(state.last_checkpoint)
    assert sorted(p.name for p in folder.iterdir()) == [
        "tinydarknet_cifar10-2_4.ckpt", "tinydarknet_cifar10-5_4.ckpt",
        "tinydarknet_cifar10-6_4.ckpt"]
    assert all(p.read_bytes() == b"another run's checkpoint" for p in foreign)


def test_curves_without_evaluation_say_so(tmp_path):
    from src.run_history import RunHistory

    history = RunHistory(str(tmp_path), ("top_1_accuracy",), "top_1_accuracy")
    history.add(1, 4, 2.3, 0.02, 120.0, None, 1.5, 1.5)
    history.add(2, 8, float("nan"), 0.01, 118.0, None, 1.4, 2.9)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,global_step,loss,lr,images_per_second,top_1_accuracy,epoch_seconds,wall_seconds",
        "1,4,2.3,0.02,120.0,,1.5,1.5", "2,8,nan,0.01,118.0,,1.4,2.9"]
    assert (tmp_path / "curves.png").stat().st_size > 10000
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


# ---------------------------------------------------------------- train.py as a user runs it

def train(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ENV}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def one_error_line(proc, code=2):
    both = proc.stdout + proc.stderr
    assert proc.returncode == code, both[-3000:]
    assert "Traceback" not in both, both[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, both[-3000:]
    return errors[0]


@pytest.mark.slow
def test_train_py_refuses_a_reused_or_busy_run_folder_and_changes_nothing(small_cifar, tmp_path):
    out = tmp_path / "out"
    args = ["--config_path=config/tinydarknet_cifar10.yaml", f"--data_dir={small_cifar}",
            "--image_size=32", "--data.cutout=0", "--batch_size=16", "--data.num_workers=1",
            "--epochs=1",
            "--lr.warmup_epochs=0", f"--output_dir={out}", "--run_name=r2",
            "--checkpoint.eval_every_epochs=1"]
    first = train(*args)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    run_dir = out / "r2"
    assert {"config.yaml", "env.txt", "train.log", "metrics.csv", "curves.png", "run.json",
            "checkpoints/best.ckpt", "checkpoints/tinydarknet_cifar10-1_4.ckpt"} == set(snapshot(run_dir))
    before = snapshot(run_dir)

    again = train(*args[:-1], "--checkpoint.eval_every_epochs=0", "--lr.base_lr=0.0001")
    line = one_error_line(again)
    assert line.startswith(f"error: run folder {run_dir} already holds an earlier run (")
    assert "--run_name=r2 --resume=auto  or start a new one: python train.py " in line
    assert line.endswith("--lr.base_lr=0.0001 --run_name=r2_2")
    assert snapshot(run_dir) == before

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        write_lock(run_dir, pid=holder.pid, ppid=os.getpid(),
                   process_start=run_folder._process_start(holder.pid))  # pylint: disable=protected-access
        busy_before = snapshot(run_dir)
        busy = train(*args, "--resume=auto", "--epochs=2")
        assert f"in use by another training run (pid {holder.pid}" in one_error_line(busy)
        assert snapshot(run_dir) == busy_before
    finally:
        holder.kill()
        holder.wait()

    # The holder is gone: its lock is stale, so resuming takes over and continues the run.
    debris = run_dir / "checkpoints" / ".tinydarknet_cifar10-2_4.qwertyui.tmp.ckpt"
    debris.write_bytes(b"\x08partial")
    os.utime(debris, (time.time() - 600, time.time() - 600))
    resumed = train(*args, "--resume=auto", "--epochs=2")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert f"note: taking over the lock of run folder {run_dir} left by process {holder.pid}" \
        in resumed.stdout
    assert not debris.exists() and not (run_dir / "run.lock").exists()
    epochs = [row["epoch"] for row in csv.DictReader(open(run_dir / "metrics.csv", newline=""))]
    assert epochs == ["1", "2"]
    final = re.search(r"training finished: 2 epochs, checkpoint (\S+)", resumed.stdout).group(1)
    assert Path(final) == run_dir / "checkpoints" / "tinydarknet_cifar10-2_4.ckpt"
    assert Path(final).is_file()
    assert snapshot(run_dir)["checkpoints/tinydarknet_cifar10-1_4.ckpt"] == \
        before["checkpoints/tinydarknet_cifar10-1_4.ckpt"]


def test_default_run_name_is_one_format_for_python_and_the_launchers(tmp_path):
    from src.run_folder import default_run_name
    first = default_run_name("tinydarknet_cifar10", "train", str(tmp_path))
    assert re.fullmatch(r"tinydarknet_cifar10_train_\d{8}-\d{6}", first)
    (tmp_path / first).mkdir()
    taken = default_run_name("tinydarknet_cifar10", "train", str(tmp_path))
    assert not (tmp_path / taken).exists()
    assert taken == first + "-2" or taken > first  # the same second: -2; else a later stamp
    # Workers of one launch share the folder: no -2 for them.
    assert default_run_name("m_d", "train", str(tmp_path), "-p42").endswith("-p42")
    # The launchers ask the same function (scripts/common.sh zoo_make_run_dir).
    proc = subprocess.run([sys.executable, "-m", "src.run_folder", "default-name", "demo", "infer",
                           str(tmp_path)], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"demo_infer_\d{8}-\d{6}(-\d+)?\n", proc.stdout)

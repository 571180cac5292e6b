"""train.py as a user runs it, interrupted the hard ways (issue 7).

* SIGKILL mid-epoch 2, then ``--resume=auto``: loses only the unfinished epoch
  and ends with exactly the weights of an uninterrupted run;
* SIGINT mid-epoch 2: saves ``-interrupted-e2-s<k>.ckpt``, exits 130 naming it;
  resuming replays the seeded data order and again ends with the same weights;
* a diverging fixed-loss-scale run stops with exit 3 naming the step and the
  last good checkpoint, and writes no NaN checkpoint;
* a pretrained checkpoint of another class count: one error line naming the
  parameters, nothing trained.

Tiny-DarkNet on the demo CIFAR-10 at 32x32 (15 steps per epoch), one data
worker so the data order is deterministic. The uninterrupted reference run
starts in the background when the module starts.
"""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401  (must precede mindspore)
from src import checkpoint as ckpt

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
_LAUNCHER_ENV = ("MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE", "RANK_TABLE_FILE", "RANK_SIZE",
                 "RANK_ID", "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "DEVICE_ID")
FINAL = "tinydarknet_cifar10-2_15.ckpt"
TIMEOUT = 240


def base_args(data_dir, output_dir, run_name):
    return ["--config_path=config/demo.yaml", f"--data_dir={data_dir}", "--data.demo=False",
            "--epochs=2", "--checkpoint.eval_every_epochs=0", "--data.num_workers=1",
            "--log_interval=1", "--checkpoint.keep_max=5", f"--output_dir={output_dir}",
            f"--run_name={run_name}"]


class Train:
    """``python train.py ...`` in the background; stdout/stderr lines are collected live."""

    def __init__(self, *args):
        env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ENV}
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *map(str, args)],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.stdout, self.stderr, self.lines = [], [], queue.Queue()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True),
                                         daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False),
                                         daemon=True)]
        for thread in self.threads:
            thread.start()

    def _pump(self, stream, sink, announce):
        for line in stream:
            sink.append(line.rstrip("\n"))
            if announce:
                self.lines.put(line)
        if announce:
            self.lines.put(None)

    def wait_for_line(self, pattern, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            if re.match(pattern, line):
                return line
        self.proc.kill()
        raise AssertionError(f"no line matching {pattern!r}\n{self.output()}")

    def wait(self, timeout=TIMEOUT):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for thread in self.threads:
            thread.join(timeout=10)
        return code

    def output(self):
        return "\n".join(self.stdout[-40:]) + "\n--- stderr ---\n" + "\n".join(self.stderr[-40:])


def completed(*args):
    run = Train(*args)
    code = run.wait()
    return code, run


def assert_same_weights(expected_path, actual_path):
    expected, _ = ckpt.read_checkpoint(str(expected_path))
    actual, meta = ckpt.read_checkpoint(str(actual_path))
    assert set(expected) == set(actual)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert meta["epoch"] == 2 and meta["global_step"] == 30


@pytest.fixture(scope="module")
def reference(demo_data, tmp_path_factory):
    """Final checkpoint of the uninterrupted 2-epoch run (started in the background)."""
    out = tmp_path_factory.mktemp("rel_reference")
    run = Train(*base_args(demo_data["cifar10"], out, "straight"))
    result = {}

    def final():
        if "path" not in result:
            assert run.wait() == 0, run.output()
            result["path"] = out / "straight" / "checkpoints" / FINAL
        return result["path"]

    yield final
    if run.proc.poll() is None:
        run.proc.kill()
        run.wait()


def test_sigkill_mid_epoch_then_resume_auto_matches_the_uninterrupted_run(reference, demo_data,
                                                                           tmp_path):
    args = base_args(demo_data["cifar10"], tmp_path, "killed")
    run = Train(*args)
    run.wait_for_line(r"epoch: 2 step: 3,")
    run.proc.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    folder = tmp_path / "killed" / "checkpoints"
    # Every checkpoint the killed run left is whole; nothing of epoch 2 was saved.
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == \
        ["tinydarknet_cifar10-1_15.ckpt"]
    ckpt.resumable(str(folder / "tinydarknet_cifar10-1_15.ckpt"))
    # What a kill during a write would leave: ignored, then removed by the next save.
    debris = folder / ".tinydarknet_cifar10-2_15.qwertyui.tmp.ckpt"
    debris.write_bytes(b"\x08partial")
    os.utime(debris, (time.time() - 600, time.time() - 600))

    code, resumed = completed(*args, "--resume=auto")
    assert code == 0, resumed.output()
    assert any(line.startswith(f"resumed from {folder / 'tinydarknet_cifar10-1_15.ckpt'}: epoch 1,"
                               f" global step 15") for line in resumed.stdout), resumed.output()
    assert not any(line.startswith("epoch: 1 ") for line in resumed.stdout)
    assert not debris.exists()
    assert_same_weights(reference(), folder / FINAL)


def test_sigint_mid_epoch_saves_a_checkpoint_that_resumes_exactly(reference, demo_data, tmp_path):
    args = base_args(demo_data["cifar10"], tmp_path, "stopped")
    run = Train(*args)
    run.wait_for_line(r"epoch: 2 step: 3,")
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 130, run.output()
    errors = [line for line in run.stderr if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.output(), run.output()
    match = re.fullmatch(r"error: interrupted by SIGINT at epoch 2 step (\d+) \(global step (\d+)\); "
                         r"saved checkpoint (\S+); continue with --resume=\3 "
                         r"\(or --resume=auto --run_name=stopped\)", errors[0])
    assert match, errors[0]
    step, global_step, path = int(match.group(1)), int(match.group(2)), match.group(3)
    assert 3 <= step < 15 and global_step == 15 + step
    assert Path(path) == tmp_path / "stopped" / "checkpoints" / \
        f"tinydarknet_cifar10-interrupted-e2-s{step}.ckpt"
    _, meta = ckpt.resumable(path)
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (1, step, global_step)

    code, resumed = completed(*args, "--resume=auto")
    assert code == 0, resumed.output()
    assert f"resumed from {path}: epoch 1, {step} batch(es) into epoch 2, global step " \
           f"{global_step}" in resumed.stdout, resumed.output()
    trained = [int(m.group(1)) for m in map(re.compile(r"epoch: 2 step: (\d+),").match,
                                            resumed.stdout) if m]
    assert trained == list(range(step + 1, 16))
    assert_same_weights(reference(), tmp_path / "stopped" / "checkpoints" / FINAL)


def test_diverging_run_with_a_fixed_loss_scale_stops_without_a_nan_checkpoint(demo_data, tmp_path):
    # lr 1 -> 1000 after epoch 1 with weight decay 1 (within the config's bounds): each step
    # of epoch 2 multiplies the decayed weights by about -999, so they overflow in a few steps.
    code, run = completed(*base_args(demo_data["cifar10"], tmp_path, "diverged"),
                          "--lr.schedule=multistep", "--lr.milestones=1", "--lr.gamma=1000",
                          "--lr.base_lr=1", "--optimizer.weight_decay=1", "--lr.warmup_epochs=0")
    folder = tmp_path / "diverged" / "checkpoints"
    first = folder / "tinydarknet_cifar10-1_15.ckpt"
    assert code == 3, run.output()
    errors = [line for line in run.stderr if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.output(), run.output()
    assert re.match(r"error: non-finite loss \((nan|inf|-inf)\) at epoch 2 step \d+ \(global step "
                    r"\d+\)[^;]*; .*Last good checkpoint: " + re.escape(str(first)), errors[0]), errors[0]
    assert sorted(p.name for p in folder.iterdir()) == [first.name]
    tensors, _ = ckpt.read_checkpoint(str(first))
    assert all(np.isfinite(v.asnumpy()).all() for v in tensors.values())


def test_pretrained_checkpoint_that_fits_nothing_is_refused_before_training(demo_data, tmp_path):
    # A checkpoint of another class count now fine-tunes (heads re-initialised, see
    # test_finetune.py); one sharing no parameter name and shape is still refused.
    from mindspore import nn

    other = ckpt.save_checkpoint(str(tmp_path / "unrelated.ckpt"), nn.Dense(3, 2),
                                 meta={"model": "dense", "num_classes": 2})
    code, run = completed(*base_args(demo_data["cifar10"], tmp_path / "out", "pre"),
                          f"--pretrained={other}")
    assert code == 2, run.output()
    errors = [line for line in run.stderr if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.output(), run.output()
    assert errors[0] == (f"error: pretrained checkpoint {other!r} fits nothing of the network "
                         f"(no parameter name and shape in common); check --model"), errors[0]
    run_dir = tmp_path / "out" / "pre"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "env.txt", "train.log"]
    assert not any(line.startswith("epoch:") for line in run.stdout)

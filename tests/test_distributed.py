"""Real data-parallel training: two msrun workers on this CPU, launched through
scripts/run_distribute_msrun.sh, on the demo CIFAR-10 set with Tiny-DarkNet at
32x32 (1 epoch, batch 32 per worker: 7 steps of a global batch of 64).

What is checked:

* both ranks finish, each logging its own epoch;
* their data shards are disjoint and together cover the training set;
* after training the weights on the two ranks are identical;
* the weights equal those of a single process trained on the same global
  batches with the same seed;
* only rank 0 writes checkpoints unless ``checkpoint.save_on_all_ranks``;
* a checkpoint from the distributed run evaluates with eval.py in one process.

How the single-process comparison deals with BatchNorm: Tiny-DarkNet has a
BatchNorm after every convolution and data parallelism here is plain (no
SyncBN), so each rank normalises with the statistics of its own 32 images. A
single process fed the 64-image global batch would normalise over all 64 and
legitimately compute different gradients, and its data order would differ
too; "equal within tolerance" would then be false or need a tolerance so loose
that it proves nothing. Instead the reference process (``reference`` below,
run as ``python tests/test_distributed.py reference ...``) rebuilds each rank's
batches with the engine's own dataset code (rank r of 2, the epoch seed) and
trains one network on the global batch split the way the ranks split it: the
loss is the mean of the per-half losses, so BatchNorm sees the same 32-image
groups, and its gradient is exactly the mean that DistributedGradReducer
computes. It uses the engine's own network, optimizer, learning-rate schedule
and TrainStep (group_size=1). Its trainable weights must match the distributed
ones to float tolerance; they came out bit-identical on the development
machine. BatchNorm's running mean/variance are not compared: they are
per-rank state (rank 0 and rank 1 legitimately differ), and the reference
updates them once per half.

The data shards are recovered by running the same dataset builder over images
whose pixels encode their sample index (the centre pixel survives the random
crop and flip), with the rank/group size the engine passes.
"""
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

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "run_distribute_msrun.sh"
CONFIG = REPO / "config" / "demo.yaml"
WORKERS = 2
BATCH = 32
NUM_TRAIN = 500  # demo CIFAR-10 training records
pytestmark = pytest.mark.slow  # about a minute and a half on 2 cores

FLAGS = ["--epochs=1", f"--batch_size={BATCH}", "--checkpoint.eval_every_epochs=0",
         "--data.demo=False", "--seed=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("FOREGROUND", "MS_WORKER_NUM", "RANK_TABLE_FILE", "RANK_SIZE",
                        "RANK_ID", "DEVICE_ID")}
    env["PYTHON"] = sys.executable
    return env


def launch(data_dir, out, run_name, *flags, foreground=True):
    args = ["bash", str(SCRIPT), str(CONFIG), str(data_dir), str(WORKERS), *FLAGS, *flags,
            f"--master_port={free_port()}", f"--output_dir={out}", f"--run_name={run_name}"]
    if foreground:
        args.append("--foreground")
    return subprocess.run(args, cwd=out.parent, env=launcher_env(), capture_output=True,
                          text=True, timeout=600)


def read_weights(path):
    """Trainable weights (no BatchNorm running statistics) of a checkpoint."""
    from src.checkpoint import read_checkpoint
    tensors, _ = read_checkpoint(str(path))
    return {k: v.asnumpy() for k, v in tensors.items()
            if not k.endswith(("moving_mean", "moving_variance")) and "." in k
            and not k.startswith(("moments", "learning_rate", "global_step", "momentum"))}


def max_difference(a, b, keys):
    return max(float(np.abs(a[k] - b[k]).max()) for k in keys)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory, demo_data):
    """The 2-worker run with checkpoints from both ranks."""
    out = tmp_path_factory.mktemp("dist") / "out"
    out.mkdir()
    proc = launch(demo_data["cifar10"], out, "both", "--checkpoint.save_on_all_ranks=True")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "both", proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_data, distributed_run):
    """Shards and single-process weights, computed in a fresh interpreter."""
    out = tmp_path_factory.mktemp("reference")
    cmd = [sys.executable, str(Path(__file__).resolve()), "reference", str(out), str(CONFIG),
           f"--data_dir={demo_data['cifar10']}", *FLAGS]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads((out / "reference.json").read_text())
    return info, dict(np.load(out / "weights.npz"))


def rank_checkpoint(run_dir, rank):
    (path,) = (run_dir / "checkpoints" / f"rank_{rank}").glob("*.ckpt")
    return path


def test_both_ranks_finish(distributed_run):
    run_dir, proc = distributed_run
    rank0 = (run_dir / "train.log").read_text()
    assert f"batch {BATCH} x {WORKERS} process(es)" in rank0 and "training finished" in rank0
    steps = NUM_TRAIN // WORKERS // BATCH
    for log in (rank0, (run_dir / "rank_1" / "train.log").read_text()):
        assert f"epoch: 1 step: {steps}," in log and "epoch time:" in log
    for rank in range(WORKERS):
        assert (run_dir / "msrun_logs" / f"worker_{rank}.log").is_file()
    assert "all workers finished" in proc.stdout


def test_shards_are_disjoint_and_cover_the_dataset(reference):
    info, _ = reference
    shards = [info["shards"][str(r)]["shard"] for r in range(WORKERS)]
    used = [info["shards"][str(r)]["used"] for r in range(WORKERS)]
    assert [len(s) for s in shards] == [NUM_TRAIN // WORKERS] * WORKERS
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(NUM_TRAIN))
    # the batches actually trained on: disjoint, drop_remainder leaves 250 - 7*32 = 26 per rank
    steps = NUM_TRAIN // WORKERS // BATCH
    assert [len(u) for u in used] == [steps * BATCH] * WORKERS
    assert set(used[0]).isdisjoint(used[1])
    assert all(set(u) <= set(s) for u, s in zip(used, shards))
    assert len(set(used[0])) == steps * BATCH  # no sample twice within a rank


def test_weights_are_identical_on_both_ranks(distributed_run):
    run_dir, _ = distributed_run
    w0, w1 = (read_weights(rank_checkpoint(run_dir, r)) for r in range(WORKERS))
    assert w0.keys() == w1.keys() and len(w0) > 10
    assert max_difference(w0, w1, w0) <= 1e-6


def test_weights_match_a_single_process_on_the_same_global_batch(distributed_run, reference):
    run_dir, _ = distributed_run
    info, single = reference
    distributed = read_weights(rank_checkpoint(run_dir, 0))
    assert set(single) <= set(distributed) and len(single) > 10
    # the comparison is not vacuous: 7 steps moved the weights well away from the init
    assert info["max_change_from_init"] > 1e-2
    assert max_difference(single, distributed, single) <= 1e-5


def test_distributed_checkpoint_evaluates_in_one_process(distributed_run, demo_data, tmp_path):
    run_dir, _ = distributed_run
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "run_eval_cpu.sh"), str(CONFIG), str(demo_data["cifar10"]),
         str(rank_checkpoint(run_dir, 0)), f"--output_dir={tmp_path}", "--data.demo=False"],
        cwd=tmp_path, env=launcher_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"accuracy: \{'top_1_accuracy': [0-9.]+", proc.stdout)


def test_only_rank_0_writes_checkpoints_by_default(tmp_path, demo_data):
    """Also the default launch mode: in the background, supervised by the printed pid."""
    out = tmp_path / "out"
    out.mkdir()
    proc = launch(demo_data["cifar10"], out, "default", "--batch_size=125", foreground=False)
    assert proc.returncode == 0, proc.stderr
    pid = int(re.search(r"background, pid (\d+)", proc.stdout).group(1))
    deadline = time.time() + 400
    while os.path.exists(f"/proc/{pid}"):
        assert time.time() < deadline, "the background run did not finish"
        time.sleep(1)
    run_dir = out / "default"
    assert "all workers finished" in (run_dir / "launcher.log").read_text()
    checkpoints = sorted(run_dir.rglob("*.ckpt"))
    assert checkpoints and all(p.parent == run_dir / "checkpoints" for p in checkpoints)
    assert (run_dir / "rank_1" / "train.log").is_file()  # rank 1 did train


# --------------------------------------------------------------------------- reference process

def compute_reference(out_dir, config, flags):
    """Write the ranks' shards and the single-process weights (see the module docstring)."""
    sys.path.insert(0, str(REPO))
    import src  # noqa: F401  (CPU setup before MindSpore)
    import mindspore as ms
    from mindspore import nn

    import src.datasets.classification as classification
    from src.config import load_config
    from src.datasets.common import CIFAR10_MEAN_RGB, CIFAR10_STD_RGB
    from src.device import RunContext
    from src.engine import apply_amp, build_network, build_optimizer, learning_rates
    from src.registry import get_model_spec
    from src.tasks import get_task
    from src.train_step import build_train_step

    cfg = load_config(config, cli_args=flags)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    task = get_task(get_model_spec(cfg.model).task)
    ranks = [RunContext("CPU", 0, r, WORKERS) for r in range(WORKERS)]

    def batches_of(ctx, **kwargs):
        # engine.fit builds epoch e's data with seed cfg.seed + e; this run has epoch 0 only
        data = (task.train_dataset(cfg, ctx, seed=cfg.seed) if not kwargs else
                classification.build_classification_dataset(cfg, "train", ctx.rank,
                                                            ctx.group_size, seed=cfg.seed,
                                                            **kwargs))
        return [(i.asnumpy(), l.asnumpy()) for i, l in data.create_tuple_iterator(num_epochs=1)]

    per_rank = [batches_of(ctx) for ctx in ranks]

    from src.datasets import cifar10
    real_read = cifar10.Cifar10Split.read  # what the training pipeline reads records with

    def index_coded(split):
        images, labels = real_read(split)
        index = np.arange(len(labels))
        coded = np.zeros_like(images)
        coded[..., 0] = (index % 256)[:, None, None]
        coded[..., 1] = (index // 256)[:, None, None]
        return coded, labels

    def decode(batch):
        centre = batch[:, :2, 16, 16]  # normalised R, G of each image
        raw = np.rint((centre * np.array(CIFAR10_STD_RGB[:2]) + CIFAR10_MEAN_RGB[:2]) * 255)
        return [int(r + 256 * g) for r, g in raw]

    cifar10.Cifar10Split.read = index_coded
    shards = {}
    for ctx in ranks:
        used = [i for images, _ in batches_of(ctx) for i in decode(images)]
        whole = [i for images, _ in batches_of(ctx, batch_size=1) for i in decode(images)]
        shards[ctx.rank] = {"shard": whole, "used": used}
    cifar10.Cifar10Split.read = real_read

    class GlobalBatchLoss(nn.Cell):
        """Mean of the losses of the per-rank slices of a global batch."""

        def __init__(self, loss_net, parts):
            super().__init__(auto_prefix=False)
            self.loss_net = loss_net
            self.parts = parts

        def construct(self, image, label):
            n = image.shape[0] // self.parts
            total = self.loss_net(image[:n], label[:n])
            for k in range(1, self.parts):
                total = total + self.loss_net(image[k * n:(k + 1) * n], label[k * n:(k + 1) * n])
            return total / self.parts

    net = build_network(cfg)
    init = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    steps = len(per_rank[0])
    optimizer = build_optimizer(cfg, net, learning_rates(cfg, steps))
    train_step = build_train_step(
        cfg, GlobalBatchLoss(task.loss_network(cfg, apply_amp(cfg, net)), WORKERS), optimizer, 1)
    for k in range(steps):
        images = np.concatenate([per_rank[r][k][0] for r in range(WORKERS)])
        labels = np.concatenate([per_rank[r][k][1] for r in range(WORKERS)])
        train_step(ms.Tensor(images), ms.Tensor(labels))
    weights = {p.name: p.asnumpy() for p in net.trainable_params()}
    np.savez(os.path.join(out_dir, "weights.npz"), **weights)
    change = max(float(np.abs(weights[k] - init[k]).max()) for k in weights)
    with open(os.path.join(out_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"shards": shards, "steps": steps, "max_change_from_init": change}, f)


if __name__ == "__main__" and len(sys.argv) > 3 and sys.argv[1] == "reference":
    compute_reference(sys.argv[2], sys.argv[3], sys.argv[4:])

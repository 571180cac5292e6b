"""Reliability of training and checkpoints, in-process (issue 7).

Atomic checkpoints and leftovers of killed writes, resume=auto, numeric guards
(fixed and dynamic loss scale, no NaN checkpoint), full disk and unwritable
outputs, stop requests (what SIGINT/SIGTERM trigger in train.py) and
checkpoint/model mismatches. Real kill/resume/signal runs of train.py are in
test_reliability_e2e.py.
"""
import dataclasses
import errno
import os
import re
import time

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest

import src  # noqa: F401  (must precede mindspore)
from src import checkpoint as ckpt
from src import engine, train_epoch
from src.config import load_config
from src.device import RunContext, setup_device
from src.engine import (NonFiniteLossError, TrainingInterrupted, build_network, build_optimizer,
                        fit, learning_rates)
from src.errors import CheckpointError, ConfigError, ZooError
from src.stop import StopControl
from src.tasks import classification
from src.utils.io import OutputError, atomic_write_text, is_temporary_name

CTX = RunContext("CPU", 0)
STEPS = 4  # per epoch in these tests: 64 records / batch 16, or 32 / 8 for the NaN data


class Log:
    """A RunLogger stand-in that keeps the lines; ``hook(line)`` runs on each."""

    def __init__(self, hook=None):
        self.lines, self.hook = [], hook

    def __call__(self, line):
        self.lines.append(line)
        if self.hook:
            self.hook(line)

    def live(self, _line):
        pass

    def end_live(self):
        pass

    def text(self):
        return "\n".join(self.lines)


@pytest.fixture(autouse=True)
def cpu_graph_mode():
    setup_device("CPU", 0, "graph")


def make_cfg(data_dir, output_dir, model="tinydarknet", **overrides):
    values = {"data.dir": str(data_dir), "image_size": [32, 32], "batch_size": 16,
              "data.num_workers": 1, "data.cutout": 0, "output_dir": str(output_dir),
              "run_name": "run", "epochs": 2, "lr.warmup_epochs": 0, "lr.base_lr": 0.02,
              "lr.init_lr": 0.02, "checkpoint.keep_max": 10, "checkpoint.save_every_epochs": 1,
              "checkpoint.eval_every_epochs": 0, "seed": 7, "log_interval": 1}
    values.update(overrides)
    return load_config(f"config/{model}_cifar10.yaml", overrides=list(values.items()))


def patch_task(monkeypatch, **functions):
    """Replace some functions of the classification task for one test."""
    monkeypatch.setattr(classification, "TASK",
                        dataclasses.replace(classification.TASK, **functions))


def run_dir_of(cfg):
    return os.path.join(cfg.output_dir, cfg.run_name)


def all_finite(path):
    tensors, _ = ckpt.read_checkpoint(path)
    return all(np.isfinite(v.asnumpy()).all() for v in tensors.values()
               if np.issubdtype(v.asnumpy().dtype, np.floating))


def resumable_checkpoint(cfg, path, epoch=1, global_step=4):
    net = build_network(cfg)
    optimizer = build_optimizer(cfg, net, learning_rates(cfg, STEPS))
    return ckpt.save_checkpoint(str(path), net, optimizer,
                                {"epoch": epoch, "global_step": global_step, "model": cfg.model,
                                 "dataset": cfg.dataset, "num_classes": cfg.num_classes,
                                 "image_size": list(cfg.image_size), "steps_per_epoch": STEPS})


# ---------------------------------------------------------------- atomic checkpoints

def test_failed_write_keeps_the_earlier_checkpoint_and_leaves_no_temporary(
        small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path)
    net = build_network(cfg)
    path = str(tmp_path / "ck" / "tinydarknet_cifar10-1_4.ckpt")
    ckpt.save_checkpoint(path, net, meta={"epoch": 1})
    before = open(path, "rb").read()

    real_save = ms.save_checkpoint

    def disk_fills_up(items, file_name, **kwargs):  # half a file, then ENOSPC
        real_save(items, file_name, **kwargs)
        with open(file_name, "r+b") as f:
            f.truncate(os.path.getsize(file_name) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ms, "save_checkpoint", disk_fills_up)
    with pytest.raises(OutputError, match=r"no space left on the device holding .*1_4\.ckpt"):
        ckpt.save_checkpoint(path, net, meta={"epoch": 2})
    assert open(path, "rb").read() == before
    assert ckpt.read_checkpoint(path)[1]["epoch"] == 1
    assert os.listdir(tmp_path / "ck") == ["tinydarknet_cifar10-1_4.ckpt"]


def test_rename_failure_is_an_output_error_naming_the_path(small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path)
    net = build_network(cfg)
    path = str(tmp_path / "a.ckpt")
    ckpt.save_checkpoint(path, net, meta={"epoch": 1})

    def no_space(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("src.utils.io.os.replace", no_space)
    with pytest.raises(OutputError, match=re.escape(repr(path))):
        ckpt.save_checkpoint(path, net, meta={"epoch": 2})
    monkeypatch.undo()
    assert ckpt.read_checkpoint(path)[1]["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["a.ckpt"]


def test_killed_write_leftovers_are_ignored_then_cleaned_up(small_cifar, tmp_path):
    cfg = make_cfg(small_cifar, tmp_path)
    folder = tmp_path / "checkpoints"
    good = resumable_checkpoint(cfg, folder / "tinydarknet_cifar10-1_4.ckpt")
    # What SIGKILL during a write leaves: our temporary, or MindSpore's own ".tmp" step.
    stale = [folder / ".tinydarknet_cifar10-2_4.k3j_x9a1.tmp.ckpt",
             folder / ".tinydarknet_cifar10-2_4.k3j_x9a1.tmp.tmp"]
    for path in stale:
        path.write_bytes(open(good, "rb").read()[:1000])
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    fresh = folder / ".best.abcdefgh.tmp.ckpt"  # another process writing right now
    fresh.write_bytes(b"partial")
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    assert all(is_temporary_name(str(p)) for p in stale + [fresh])

    assert ckpt.list_checkpoints(str(folder)) == [good]
    assert ckpt.find_resume_checkpoint(str(tmp_path)) == good
    ckpt.save_checkpoint(str(folder / "tinydarknet_cifar10-2_4.ckpt"), build_network(cfg),
                         meta={"epoch": 2})
    assert not any(p.exists() for p in stale) and fresh.exists()


def test_resume_picks_the_newest_valid_checkpoint_and_warns_about_corrupt_ones(small_cifar, tmp_path):
    cfg = make_cfg(small_cifar, tmp_path)
    folder = tmp_path / "run" / "checkpoints"
    good = resumable_checkpoint(cfg, folder / "tinydarknet_cifar10-2_4.ckpt", epoch=2, global_step=8)
    resumable_checkpoint(cfg, folder / "tinydarknet_cifar10-1_4.ckpt")
    data = open(good, "rb").read()
    (folder / "tinydarknet_cifar10-3_4.ckpt").write_bytes(data[:len(data) // 3])  # truncated
    (folder / "tinydarknet_cifar10-interrupted-e4-s2.ckpt").write_bytes(b"\x00junk" * 50)
    (folder / "tinydarknet_cifar10-5_4.ckpt").write_bytes(b"")
    ckpt.save_checkpoint(str(folder / "best.ckpt"), build_network(cfg), meta={"epoch": 9})
    order = [os.path.basename(p) for p in ckpt.list_checkpoints(str(folder))]
    assert order == ["tinydarknet_cifar10-1_4.ckpt", "tinydarknet_cifar10-2_4.ckpt",
                     "tinydarknet_cifar10-3_4.ckpt", "tinydarknet_cifar10-interrupted-e4-s2.ckpt",
                     "tinydarknet_cifar10-5_4.ckpt"]
    warnings = []
    assert ckpt.find_resume_checkpoint(str(tmp_path / "run"), warn=warnings.append) == good
    assert len(warnings) == 3 and all(w.startswith("warning: skipping") for w in warnings)
    assert "5_4.ckpt" in warnings[0] and "interrupted-e4-s2" in warnings[1] and "3_4" in warnings[2]


def test_resume_auto_needs_a_run_name_and_starts_fresh_in_an_empty_run(small_cifar, tmp_path):
    log = Log()
    cfg = make_cfg(small_cifar, tmp_path, run_name="", resume="auto")
    with pytest.raises(ConfigError, match=r"--resume=auto .* needs .*--run_name="):
        ckpt.resume_checkpoint_path(cfg, str(tmp_path / "x" / "checkpoints"), log)
    cfg = make_cfg(small_cifar, tmp_path, resume="auto")
    assert ckpt.resume_checkpoint_path(cfg, str(tmp_path / "run" / "checkpoints"), log) is None
    assert "starting from scratch" in log.text()
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "tinydarknet_cifar10-1_4.ckpt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="none of the 1 checkpoint"):
        ckpt.resume_checkpoint_path(cfg, str(folder), log)


# ---------------------------------------------------------------- numeric guards

def test_a_network_holding_nan_is_never_saved(small_cifar, tmp_path):
    cfg = make_cfg(small_cifar, tmp_path)
    net = build_network(cfg)
    name, param = ckpt.network_parameters(net)[3]
    value = param.asnumpy()
    value.flat[0] = np.inf
    param.set_data(ms.Tensor(value))
    path = tmp_path / "nan.ckpt"
    with pytest.raises(ckpt.NonFiniteWeightsError, match=re.escape(name)):
        ckpt.save_checkpoint(str(path), net)
    assert not path.exists() and os.listdir(tmp_path) == []


def nan_dataset(bad_batches, batch=8, records=32):
    """``train_dataset`` stand-in: seeded random images; NaN in the given (seed, batch) pairs."""
    def train_dataset(cfg, ctx, seed):
        rng = np.random.default_rng(seed)
        images = rng.normal(size=(records, 3, 32, 32)).astype(np.float32)
        labels = rng.integers(0, 10, size=records).astype(np.int32)
        for bad_seed, index in bad_batches:
            if bad_seed in (seed, "any"):
                images[index * batch + 1, 0, 0, 0] = np.nan
        return ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False).batch(batch)
    return train_dataset


def test_fixed_loss_scale_stops_on_nan_naming_step_and_last_good_checkpoint(
        small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path, batch_size=8)
    patch_task(monkeypatch, train_dataset=nan_dataset([(cfg.seed + 1, 1)]))
    log = Log()
    with pytest.raises(NonFiniteLossError) as info:
        fit(cfg, CTX, run_dir_of(cfg), log)
    folder = os.path.join(run_dir_of(cfg), "checkpoints")
    first = os.path.join(folder, "tinydarknet_cifar10-1_4.ckpt")
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "non-finite loss (nan) at epoch 2 step 2 (global step 6)" in message
    assert f"Last good checkpoint: {first}" in message and "no checkpoint was written" in message
    assert os.listdir(folder) == ["tinydarknet_cifar10-1_4.ckpt"] and all_finite(first)


def test_dynamic_loss_scale_skips_the_nan_step_lowers_the_scale_and_continues(
        small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path, batch_size=8, epochs=1,
                   **{"loss.dynamic_loss_scale": True})
    patch_task(monkeypatch, train_dataset=nan_dataset([(cfg.seed, 1)]))
    log = Log()
    state, _, _ = fit(cfg, CTX, run_dir_of(cfg), log)
    assert ("warning: epoch 1 step 2: non-finite loss (nan), update skipped, loss scale lowered "
            "to 32768") in log.text()
    assert "epoch: 1 step: 4," in log.text()
    assert state.epoch == 1 and state.global_step == 3  # 4 batches, one skipped
    final = os.path.join(run_dir_of(cfg), "checkpoints", "tinydarknet_cifar10-1_4.ckpt")
    tensors, meta = ckpt.read_checkpoint(final)
    assert meta["loss_scale"] == 32768 and int(tensors["global_step"].asnumpy()[0]) == 3
    assert all_finite(final)


def test_dynamic_loss_scale_gives_up_on_persistent_nan(small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path, batch_size=8, epochs=1,
                   **{"loss.dynamic_loss_scale": True})
    patch_task(monkeypatch,
               train_dataset=nan_dataset([("any", 0), ("any", 1), ("any", 2), ("any", 3)]))
    monkeypatch.setattr(train_epoch, "MAX_NON_FINITE_IN_A_ROW", 3)
    with pytest.raises(NonFiniteLossError, match=r"on 3 steps in a row up to epoch 1 step 3.*"
                                                 r"scale now 8192.*none saved yet"):
        fit(cfg, CTX, run_dir_of(cfg), Log())
    assert not os.path.exists(os.path.join(run_dir_of(cfg), "checkpoints"))


@pytest.mark.parametrize("group_size, effect", [(1, "the weights are no longer finite"),
                                                 (2, "the update was skipped")])
def test_fixed_scale_nan_message_says_what_happened_to_the_weights(small_cifar, tmp_path,
                                                                   group_size, effect):
    # One process updates unconditionally; data-parallel steps update only when finite.
    cfg = make_cfg(small_cifar, tmp_path)
    state = engine.TrainState(epoch=1, global_step=4)
    with pytest.raises(NonFiniteLossError) as info:
        train_epoch.check_step(float("nan"), True, None, state, 2, 1, cfg,
                               RunContext("CPU", 0, 0, group_size), Log(), "/r/a.ckpt")
    assert str(info.value).startswith(
        f"non-finite loss (nan) at epoch 2 step 1 (global step 5) with a fixed loss scale; "
        f"{effect} and no checkpoint was written. Last good checkpoint: /r/a.ckpt. ")


# ---------------------------------------------------------------- unwritable outputs

def test_full_disk_during_training_names_the_path_and_keeps_earlier_checkpoints(
        small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path)
    real_replace = os.replace

    def replace(src_path, dst_path):
        if dst_path.endswith("-2_4.ckpt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src_path, dst_path)

    monkeypatch.setattr("src.utils.io.os.replace", replace)
    with pytest.raises(OutputError, match=r"no space left .*tinydarknet_cifar10-2_4\.ckpt"):
        fit(cfg, CTX, run_dir_of(cfg), Log())
    folder = os.path.join(run_dir_of(cfg), "checkpoints")
    assert os.listdir(folder) == ["tinydarknet_cifar10-1_4.ckpt"]
    assert ckpt.resumable(os.path.join(folder, "tinydarknet_cifar10-1_4.ckpt"))[1]["epoch"] == 1


def test_output_under_a_file_is_a_clear_error(small_cifar, tmp_path):
    from src.cli import run_directory

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"not_a_folder/ck/a\.ckpt.*is a file, not a folder"):
        ckpt.save_checkpoint(str(blocker / "ck" / "a.ckpt"), build_network(make_cfg(small_cifar, tmp_path)))
    with pytest.raises(OutputError, match="is a file, not a folder"):
        atomic_write_text(str(blocker / "config.yaml"), "a: 1\n")
    cfg = make_cfg(small_cifar, blocker)
    with pytest.raises(ZooError, match=r"cannot create the run folder .*not_a_folder/run"):
        run_directory(cfg, "train")


# ---------------------------------------------------------------- stop requests (signals)

def stop_at(stop, pattern, signum):
    def hook(line):
        if re.match(pattern, line):
            stop.request(signum)
    return hook


def test_stop_request_mid_epoch_saves_a_resumable_position(small_cifar, tmp_path):
    import signal

    cfg = make_cfg(small_cifar, tmp_path)
    stop = StopControl()
    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, CTX, run_dir_of(cfg), Log(stop_at(stop, r"epoch: 2 step: 2,", signal.SIGTERM)),
            stop)
    assert not stop.active  # signals have their usual effect again
    folder = os.path.join(run_dir_of(cfg), "checkpoints")
    path = os.path.join(folder, "tinydarknet_cifar10-interrupted-e2-s2.ckpt")
    assert info.value.exit_code == 143
    assert str(info.value) == (
        f"interrupted by SIGTERM at epoch 2 step 2 (global step 6); saved checkpoint {path}; "
        f"continue with --resume={path} (or --resume=auto --run_name=run)")
    _, meta = ckpt.resumable(path)
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (1, 2, 6)
    assert ckpt.find_resume_checkpoint(run_dir_of(cfg)) == path


def test_stop_request_at_an_epoch_end_reuses_its_checkpoint(small_cifar, tmp_path):
    import signal

    cfg = make_cfg(small_cifar, tmp_path, epochs=3)
    stop = StopControl()
    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, CTX, run_dir_of(cfg), Log(stop_at(stop, r"epoch: 1 step: 4,", signal.SIGINT)),
            stop)
    first = os.path.join(run_dir_of(cfg), "checkpoints", "tinydarknet_cifar10-1_4.ckpt")
    assert info.value.exit_code == 130
    assert f"at the end of epoch 1 (global step 4); nothing new since checkpoint {first}" in str(info.value)
    assert os.listdir(os.path.dirname(first)) == ["tinydarknet_cifar10-1_4.ckpt"]


def test_stop_request_before_the_first_step_writes_nothing(small_cifar, tmp_path):
    import signal

    cfg = make_cfg(small_cifar, tmp_path)
    stop = StopControl()
    stop.request(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="no step was finished, so no checkpoint"):
        fit(cfg, CTX, run_dir_of(cfg), Log(), stop)
    assert not os.path.exists(os.path.join(run_dir_of(cfg), "checkpoints"))


# ---------------------------------------------------------------- checkpoint / model mismatch

def test_vgg_checkpoint_for_another_input_size_is_refused_naming_the_classifier(small_cifar, tmp_path):
    small = build_network(make_cfg(small_cifar, tmp_path, model="vgg16"))
    tensors = {name: param for name, param in ckpt.network_parameters(small)}
    large = build_network(make_cfg(small_cifar, tmp_path, model="vgg16", image_size=[64, 64]))
    with pytest.raises(CheckpointError, match=r"does not fit the network \(1 shape mismatch\(es\): "
                                              r"classifier\.\S*weight \(4096, 512\) vs network "
                                              r"\(4096, 2048\)"):
        ckpt.load_network_weights(large, tensors, source="pretrained checkpoint x.ckpt")


def test_resume_from_another_model_or_input_size_is_refused_before_training(
        small_cifar, tmp_path, monkeypatch):
    other = make_cfg(small_cifar, tmp_path, model="mobilenetv1")
    foreign = resumable_checkpoint(other, tmp_path / "mobilenetv1_cifar10-1_4.ckpt")
    own = resumable_checkpoint(make_cfg(small_cifar, tmp_path), tmp_path / "tinydarknet_cifar10-1_4.ckpt")

    def no_training(*_args, **_kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(engine, "build_train_step", no_training)
    cfg = make_cfg(small_cifar, tmp_path, resume=foreign)
    with pytest.raises(CheckpointError, match=r"was trained with model='mobilenetv1' but the "
                                              r"config says model='tinydarknet'"):
        fit(cfg, CTX, run_dir_of(cfg), Log())
    cfg = make_cfg(small_cifar, tmp_path, resume=own, image_size=[64, 64])
    with pytest.raises(CheckpointError, match=r"image_size \[32, 32\] but the config says \[64, 64\]"):
        fit(cfg, CTX, run_dir_of(cfg), Log())
    cfg = make_cfg(small_cifar, tmp_path, resume=own, num_classes=5)
    with pytest.raises(CheckpointError, match="num_classes=10 but the config says 5"):
        fit(cfg, CTX, run_dir_of(cfg), Log())
    assert not os.path.exists(os.path.join(run_dir_of(cfg), "checkpoints"))


# ---------------------------------------------------------------- user errors found while training

def test_bad_schedule_or_loss_settings_are_config_errors(small_cifar, tmp_path, monkeypatch):
    cfg = make_cfg(small_cifar, tmp_path, **{"lr.warmup_epochs": 5})
    with pytest.raises(ConfigError, match=r"invalid learning-rate settings .*warmup_epochs \(5\) "
                                          r"must not exceed epochs \(2\)"):
        engine.learning_rates(cfg, STEPS)
    # The config bounds label_smoothing now; a loss that still refuses its settings is
    # reported the same way by fit.
    with pytest.raises(ConfigError, match=r"'loss.label_smoothing' must be between 0 and 0.999, "
                                          r"got 1\.5"):
        make_cfg(small_cifar, tmp_path, **{"loss.label_smoothing": 1.5})

    def refusing_loss(cfg, net):
        raise ValueError("smoothing must be a number in [0, 1), got 1.5")

    patch_task(monkeypatch, loss_network=refusing_loss)
    cfg = make_cfg(small_cifar, tmp_path)
    with pytest.raises(ConfigError, match=r"invalid loss settings for tinydarknet: smoothing must "
                                          r"be a number in \[0, 1\), got 1\.5"):
        fit(cfg, CTX, run_dir_of(cfg), Log())


def test_a_data_pipeline_failure_is_a_data_error_with_the_reason(small_cifar, tmp_path, monkeypatch):
    from src.errors import DataError

    class Source:
        def __len__(self):
            return 32

        def __getitem__(self, index):
            if index >= 16:
                raise DataError("cannot decode image '/data/x.jpg' (truncated); re-download it")
            return np.zeros((3, 32, 32), np.float32), np.int32(index % 10)

    def train_dataset(cfg, ctx, seed):
        return ds.GeneratorDataset(Source(), ["image", "label"], shuffle=False,
                                   python_multiprocessing=False).batch(8)

    cfg = make_cfg(small_cifar, tmp_path, batch_size=8, epochs=1)
    patch_task(monkeypatch, train_dataset=train_dataset)
    with pytest.raises(DataError, match=r"reading the training data of epoch 1 failed after \d "
                                        r"batch\(es\) .*: cannot decode image '/data/x\.jpg' "
                                        r"\(truncated\); re-download it; look for corrupt .* "
                                        r"python -m src\.datasets\.check"):
        fit(cfg, CTX, run_dir_of(cfg), Log())

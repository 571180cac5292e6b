"""ModelArts adapter with a stand-in ``moxing`` module (the real one exists only on ModelArts).

checkpoint_url becomes the run's starting point (or what it resumes), and a
preempted job still uploads the checkpoint that saved its position.
"""
import os
import shutil
import signal
import sys
import types

import pytest

import src  # noqa: F401  (must precede mindspore)
from src import modelarts
from src.config import load_config


@pytest.fixture
def fake_moxing(monkeypatch, tmp_path):
    """A ``moxing`` whose ``file.copy``/``copy_parallel`` copy from/to folders under tmp_path/obs."""
    obs = tmp_path / "obs"
    calls = []

    def local(url):
        return str(obs / url.replace("obs://", ""))

    def copy(src_url, dst):
        calls.append(("copy", src_url, dst))
        shutil.copyfile(local(src_url), dst)

    def copy_parallel(src_path, dst):
        calls.append(("copy_parallel", src_path, dst))
        if dst.startswith("obs://"):
            shutil.copytree(src_path, local(dst), dirs_exist_ok=True)
        else:
            shutil.copytree(local(src_path), dst, dirs_exist_ok=True)

    module = types.ModuleType("moxing")
    module.file = types.SimpleNamespace(copy=copy, copy_parallel=copy_parallel)
    monkeypatch.setitem(sys.modules, "moxing", module)
    monkeypatch.setattr(modelarts, "LOCAL_DATA", str(tmp_path / "cache" / "data"))
    monkeypatch.setattr(modelarts, "LOCAL_CHECKPOINT", str(tmp_path / "cache" / "checkpoint"))
    (obs / "bucket").mkdir(parents=True)
    return types.SimpleNamespace(obs=obs, calls=calls)


@pytest.mark.parametrize("resume, key", [("", "pretrained"), ("auto", "resume")])
def test_checkpoint_url_is_downloaded_and_used(fake_moxing, tmp_path, resume, key):
    (fake_moxing.obs / "bucket" / "start.ckpt").write_bytes(b"weights")
    cfg = load_config("config/demo.yaml", overrides=[
        ("modelarts.enabled", True), ("modelarts.checkpoint_url", "obs://bucket/start.ckpt"),
        ("resume", resume), ("run_name", "r")])
    synced = modelarts.sync_inputs(cfg)
    local = os.path.join(modelarts.LOCAL_CHECKPOINT, "start.ckpt")
    assert getattr(synced, key) == local and open(local, "rb").read() == b"weights"
    assert (synced.pretrained, synced.resume) == ((local, "") if key == "pretrained"
                                                  else ("", local))


def test_an_interrupted_run_still_uploads_its_checkpoint(fake_moxing, small_cifar, tmp_path,
                                                         monkeypatch):
    import train
    from src import engine
    from src.stop import StopControl

    def interrupted_fit(cfg, ctx, run_dir, log, stop):
        path = os.path.join(run_dir, "checkpoints", "tinydarknet_cifar10-interrupted-e1-s2.ckpt")
        os.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(b"position")
        raise engine.TrainingInterrupted(f"interrupted by SIGTERM; saved checkpoint {path}",
                                         signal.SIGTERM)

    monkeypatch.setattr(StopControl, "install", lambda self: None)  # keep pytest's handlers
    monkeypatch.setattr(engine, "fit", interrupted_fit)
    out = tmp_path / "out"
    with pytest.raises(engine.TrainingInterrupted) as info:
        train.main(["--config_path=config/tinydarknet_cifar10.yaml", f"--data_dir={small_cifar}",
                    "--image_size=32", "--data.cutout=0", f"--output_dir={out}", "--run_name=job",
                    "--checkpoint.eval_every_epochs=0", "--modelarts.enabled=True",
                    "--modelarts.train_url=obs://bucket/job"])
    assert info.value.exit_code == 143
    assert fake_moxing.calls == [("copy_parallel", str(out / "job"), "obs://bucket/job")]
    uploaded = fake_moxing.obs / "bucket" / "job"
    assert (uploaded / "checkpoints" / "tinydarknet_cifar10-interrupted-e1-s2.ckpt").read_bytes() \
        == b"position"
    assert (uploaded / "train.log").is_file()
    assert not (out / "job" / "run.lock").exists()

"""train.py / eval.py / export.py as a user runs them: bad input gives one clear line.

Every bad input must print exactly one ``error: ...`` line on stderr that names
the problem, no Python traceback, exit non-zero, and leave nothing behind where
outputs would go. Runs the entry points as subprocesses; config errors are
caught before MindSpore loads (fast), the others cost a few seconds each.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "config" / "demo.yaml")
# Variables that would make a process believe it is one of several launched workers.
_LAUNCHER_ENV = ("MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE", "RANK_TABLE_FILE", "RANK_SIZE",
                 "RANK_ID", "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "DEVICE_ID")


def run(script, *args, timeout=240):
    """Run ``python <script> args...`` from the repository root."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ENV}
    env.pop("PYTHONPATH", None)  # the entry points must work without it
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def error_line(proc, *needles, stderr_only_error=False):
    """Check the one-clear-error contract; return the error line."""
    both = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"exit code 0 for a bad input\n{both[-3000:]}"
    assert "Traceback" not in both, both[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one 'error:' line on stderr, got {lines}\n{both[-3000:]}"
    assert not any(line.startswith("error:") for line in proc.stdout.splitlines())
    line = lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    if stderr_only_error:
        assert proc.stderr.strip() == line, proc.stderr
    return line


def files_under(path):
    path = Path(path)
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ---------------------------------------------------------------- session fixtures

@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """The demo CIFAR-10 set (made once per session)."""
    from src.datasets.demo import make_demo_data
    root = tmp_path_factory.mktemp("cli_demo_data")
    make_demo_data(str(root), kinds=("cifar10",))
    return root / "cifar10"


@pytest.fixture(scope="session")
def bad_checkpoints(tmp_path_factory):
    """{"empty", "corrupt", "other_model", "other_model_no_meta"} checkpoint paths."""
    from src.checkpoint import save_checkpoint
    from src.config import load_config
    from src.engine import build_network

    root = tmp_path_factory.mktemp("cli_ckpts")
    paths = {"empty": root / "empty.ckpt", "corrupt": root / "corrupt.ckpt",
             "other_model": root / "mobilenetv1.ckpt",
             "other_model_no_meta": root / "mobilenetv1_bare.ckpt"}
    paths["empty"].write_bytes(b"")
    paths["corrupt"].write_bytes(b"\x08\x01\x12\x07garbage" + bytes(range(256)) * 8)
    cfg = load_config(cli_args=["--model=mobilenetv1", "--dataset=cifar10", "--num_classes=10",
                                "--image_size=32,32"])
    net = build_network(cfg)
    save_checkpoint(str(paths["other_model"]), net,
                    meta={"model": "mobilenetv1", "dataset": "cifar10", "num_classes": 10,
                          "image_size": [32, 32], "epoch": 1})
    save_checkpoint(str(paths["other_model_no_meta"]), net)
    return {k: str(v) for k, v in paths.items()}


# ---------------------------------------------------------------- config errors (fast)

SCRIPTS = ("train.py", "eval.py", "export.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_key(script, tmp_path):
    proc = run(script, "--batch_sise=8", f"--output_dir={tmp_path}/out")
    error_line(proc, "batch_sise", "'8'", "command line --batch_sise", "did you mean 'batch_size'",
               stderr_only_error=True)
    assert proc.returncode == 2
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_wrong_type(script, tmp_path):
    proc = run(script, f"--config_path={DEMO_CONFIG}", "--epochs=ten", f"--output_dir={tmp_path}/o")
    error_line(proc, "'epochs'", "int", "'ten'", "command line --epochs", stderr_only_error=True)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_config_file(script, tmp_path):
    missing = tmp_path / "nope.yaml"
    proc = run(script, "--config_path", missing, f"--output_dir={tmp_path}/o")
    error_line(proc, str(missing), "not found", stderr_only_error=True)
    assert files_under(tmp_path) == []


def test_invalid_yaml_and_bad_values_in_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tinydarknet\nlr:\n  base_lr: [0.1\n", encoding="utf-8")
    error_line(run("train.py", f"--config_path={bad}"), str(bad), "YAML", "line",
               stderr_only_error=True)
    bad.write_text("model: tinydarknet\nlr: {schedul: cosine}\n", encoding="utf-8")
    error_line(run("train.py", f"--config_path={bad}"), "lr.schedul", str(bad),
               "did you mean 'lr.schedule'", stderr_only_error=True)
    bad.write_text('model: !!python/object/apply:os.system ["echo hi"]\n', encoding="utf-8")
    proc = run("train.py", f"--config_path={bad}")
    error_line(proc, str(bad), stderr_only_error=True)
    assert "hi" not in proc.stdout.split()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_invalid_choice_and_positional_argument():
    error_line(run("eval.py", "--device_target=TPU"), "device_target", "'TPU'",
               "command line --device_target", stderr_only_error=True)
    error_line(run("train.py", "mobilenetv1"), "'mobilenetv1'", "--key=value",
               stderr_only_error=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_keys(script):
    proc = run(script, "-h")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    name = script.replace(".py", "")
    assert f"python {name}.py" in proc.stdout  # usage
    for key in ("--lr.base_lr", "--data.dir", "--export.file_format", "--device_target",
                "--checkpoint_path", "--per_batch_size -> batch_size"):
        assert key in proc.stdout, key
    assert run(script, "--epochs=3", "--help").stdout == proc.stdout


# ---------------------------------------------------------------- training errors

def test_train_missing_data_dir_with_demo_config(tmp_path):
    out = tmp_path / "out"
    proc = run("train.py", f"--config_path={DEMO_CONFIG}", "--data_dir=/nonexistent",
               f"--output_dir={out}")
    error_line(proc, "/nonexistent")
    assert files_under(out) == []
    assert not Path("/nonexistent").exists()


def test_train_missing_data_dir_message(tmp_path):
    out = tmp_path / "out"
    proc = run("train.py", "--config_path", REPO / "config" / "tinydarknet_cifar10.yaml",
               "--data_dir=/nonexistent/cifar10", f"--output_dir={out}", "--image_size=32",
               "--data.cutout=16")
    line = error_line(proc, "/nonexistent/cifar10", "--data_dir")
    assert "not found" in line or "does not exist" in line or "missing" in line


def test_train_missing_data_dir_writes_no_run_folder(tmp_path):
    """A run refused for missing data leaves no run folder (config.yaml, env.txt, log) behind."""
    out = tmp_path / "out"
    proc = run("train.py", f"--config_path={DEMO_CONFIG}", "--data_dir=/nonexistent/cifar10",
               "--data.demo=False",
               f"--output_dir={out}")
    error_line(proc, "/nonexistent/cifar10")
    assert files_under(out) == [], ("train.py created the run folder before checking the data: "
                                    f"{files_under(out)}")


def test_train_on_ascend_is_not_available_here(tmp_path, cifar_dir):
    out = tmp_path / "out"
    proc = run("train.py", f"--config_path={DEMO_CONFIG}", "--device_target=Ascend",
               f"--data_dir={cifar_dir}",
               f"--output_dir={out}")
    error_line(proc, "Ascend", "not available", "--device_target=CPU")
    assert files_under(out) == []


def test_train_distributed_without_launcher(tmp_path, cifar_dir):
    out = tmp_path / "out"
    proc = run("train.py", f"--config_path={DEMO_CONFIG}", "--is_distributed=True",
               f"--data_dir={cifar_dir}",
               f"--output_dir={out}")
    error_line(proc, "distributed", "launcher")
    assert files_under(out) == []


# ---------------------------------------------------------------- eval errors

@pytest.mark.parametrize("kind, needles", [
    ("empty", ("empty",)),
    ("corrupt", ("cannot be read", "corrupt")),
    ("other_model", ("mobilenetv1", "tinydarknet")),
    ("other_model_no_meta", ("does not fit",)),
])
def test_eval_bad_checkpoint(kind, needles, tmp_path, cifar_dir, bad_checkpoints):
    ckpt = bad_checkpoints[kind]
    size = os.path.getsize(ckpt)
    out = tmp_path / "out"
    proc = run("eval.py", f"--config_path={DEMO_CONFIG}", f"--data_dir={cifar_dir}",
               f"--checkpoint_path={ckpt}", f"--output_dir={out}")
    error_line(proc, ckpt, *needles)
    assert files_under(out) == []
    assert os.path.getsize(ckpt) == size  # input untouched


def test_eval_missing_or_no_checkpoint(tmp_path, cifar_dir):
    out = tmp_path / "out"
    error_line(run("eval.py", f"--config_path={DEMO_CONFIG}", f"--data_dir={cifar_dir}",
                   f"--output_dir={out}"), "--checkpoint_path", stderr_only_error=True)
    missing = tmp_path / "missing.ckpt"
    error_line(run("eval.py", f"--config_path={DEMO_CONFIG}", f"--data_dir={cifar_dir}",
                   f"--ckpt_file={missing}", f"--output_dir={out}"), str(missing), "not found")
    empty_dir = tmp_path / "no_ckpts"
    empty_dir.mkdir()
    error_line(run("eval.py", f"--config_path={DEMO_CONFIG}", f"--data_dir={cifar_dir}",
                   f"--checkpoint_path={empty_dir}", f"--output_dir={out}"), str(empty_dir),
               ".ckpt", stderr_only_error=True)
    assert files_under(out) == []


# ---------------------------------------------------------------- export errors

def test_export_air_fails_before_any_work(tmp_path, bad_checkpoints):
    target = tmp_path / "exp" / "net"
    # the checkpoint is corrupt on purpose: AIR must be refused before it is even read
    proc = run("export.py", f"--config_path={DEMO_CONFIG}", "--file_format=AIR",
               f"--checkpoint_path={bad_checkpoints['corrupt']}", f"--file_name={target}")
    error_line(proc, "AIR", "Ascend", "MINDIR")
    assert "cannot be read" not in proc.stderr
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("kind, needles", [
    ("empty", ("empty",)),
    ("corrupt", ("cannot be read",)),
    ("other_model", ("mobilenetv1", "tinydarknet")),
])
def test_export_bad_checkpoint(kind, needles, tmp_path, bad_checkpoints):
    ckpt = bad_checkpoints[kind]
    target = tmp_path / "exp" / "net"
    proc = run("export.py", f"--config_path={DEMO_CONFIG}", f"--ckpt_file={ckpt}",
               f"--file_name={target}", "--file_format=MINDIR")
    error_line(proc, ckpt, *needles)
    assert files_under(tmp_path) == []


def test_export_without_checkpoint(tmp_path):
    target = tmp_path / "exp" / "net"
    error_line(run("export.py", f"--config_path={DEMO_CONFIG}", f"--file_name={target}"),
               "--checkpoint_path")
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------- a good run records its config

def test_train_writes_the_resolved_config(tmp_path, cifar_dir):
    out = tmp_path / "out"
    args = ["--epochs=1", f"--output_dir={out}", "--run_name=run1", f"--data_dir={cifar_dir}",
            "--data.demo=True", "--batch_size=64", "--checkpoint.eval_every_epochs=0",
            "--lr_max=0.02", "--image_size=32"]
    proc = run("train.py", f"--config_path={DEMO_CONFIG}", *args, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "error:" not in proc.stderr
    run_dir = out / "run1"
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "checkpoints").glob("*.ckpt")), files_under(run_dir)

    from src.config import load_config
    used = load_config(DEMO_CONFIG, cli_args=args).to_dict()
    with open(run_dir / "config.yaml", encoding="utf-8") as f:
        written = yaml.safe_load(f)
    assert written == used
    assert load_config(str(run_dir / "config.yaml")).to_dict() == used
    assert written["lr"]["base_lr"] == 0.02 and written["epochs"] == 1
    assert written["amp_level"] == "O0"  # per-device values are written resolved

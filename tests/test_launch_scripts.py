"""The bash launchers in scripts/: usage and argument errors, early failures with
one clear line, the rank-table / mpirun process handling, background mode, and
one real CPU train + eval through paths with spaces.

Process handling is tested with a stand-in interpreter (``PYTHON=<fake>``) that
records what train.py/eval.py would have been started with and passes every
other Python call (config check, rank-table validation) to the real one, plus
``ZOO_SKIP_DEVICE_CHECK=1`` where an Ascend/GPU launcher must get past its
device check on this CPU machine. Every script runs from a foreign cwd.
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
# The training / evaluation launchers (one argument order: CONFIG DATA_DIR ...).
ALL_SCRIPTS = ["run_standalone_train.sh", "run_standalone_train_gpu.sh", "run_train_cpu.sh",
               "run_distribute_train.sh", "run_distribute_train_gpu.sh",
               "run_distribute_msrun.sh", "run_eval.sh", "run_eval_gpu.sh", "run_eval_cpu.sh"]
HAS_ASCEND = bool(glob.glob("/dev/davinci[0-9]*"))
HAS_GPU = bool(shutil.which("nvidia-smi")) or os.path.exists("/dev/nvidia0")

FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stand-in for train.py / eval.py; every other Python call goes to the real interpreter.
case "${1:-}" in
  */train.py|*/eval.py)
    echo "FAKE rank=${RANK_ID:-} device=${DEVICE_ID:-} size=${RANK_SIZE:-} table=${RANK_TABLE_FILE:-} cpus=$(taskset -cp $$ 2>/dev/null | sed 's/.*: //')"
    echo "ARGS $*"
    if [[ -n "${FAKE_FAIL_RANK:-}" && "${FAKE_FAIL_RANK}" == "${RANK_ID:-}" ]]; then echo "rank failed"; exit 3; fi
    if [[ -n "${FAKE_EXIT:-}" ]]; then exit "$FAKE_EXIT"; fi
    exec sleep "${FAKE_SLEEP:-0}";;
  *) exec "@REAL@" "$@";;
esac
"""

FAKE_MPIRUN = r"""#!/usr/bin/env bash
# Stand-in for OpenMPI's mpirun: records its options, runs the command -n times
# with the OMPI_COMM_WORLD_* variables a real mpirun sets.
echo "MPIRUN $*" >> "$FAKE_MPIRUN_LOG"
n=1
while (($#)) && [[ $1 != bash ]]; do
  [[ $1 == -n ]] && n=$2
  shift
done
for ((i = 0; i < n; i++)); do
  OMPI_COMM_WORLD_LOCAL_RANK=$i OMPI_COMM_WORLD_RANK=$i OMPI_COMM_WORLD_SIZE=$n "$@" &
done
wait
"""


@pytest.fixture
def fake_bin(tmp_path):
    """A folder holding the fake ``python`` (and ``mpirun`` for the tests that add it)."""
    folder = tmp_path / "fake bin"
    folder.mkdir()
    python = folder / "python"
    python.write_text(FAKE_PYTHON.replace("@REAL@", sys.executable))
    python.chmod(0o755)
    return folder


def base_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FOREGROUND", "RANK_TABLE_HOST_IP", "RANK_TABLE_FILE", "RANK_SIZE",
                        "RANK_ID", "DEVICE_ID", "ZOO_SKIP_DEVICE_CHECK", "MPIRUN_ARGS")}
    env["PYTHON"] = sys.executable
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(script, *args, cwd, env=None, timeout=120):
    return subprocess.run(["bash", str(SCRIPTS / script), *map(str, args)], cwd=cwd,
                          env=env or base_env(), capture_output=True, text=True,
                          timeout=timeout)


def table_file(tmp_path, devices_per_server=2):
    """Two servers, 10.0.0.1 and 10.0.0.2, each with devices 0..n-1 (ranks numbered on)."""
    servers = []
    for s, server in enumerate(("10.0.0.1", "10.0.0.2")):
        servers.append({"server_id": server, "host_nic_ip": "reserve", "device": [
            {"device_id": str(d), "device_ip": f"192.168.{s}.{d + 1}",
             "rank_id": str(s * devices_per_server + d)} for d in range(devices_per_server)]})
    path = tmp_path / "rank table.json"
    path.write_text(json.dumps({"version": "1.0", "server_count": "2", "server_list": servers,
                                "status": "completed"}))
    return path


# --------------------------------------------------------------------------- usage

@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_help_prints_usage_with_an_example(script, tmp_path):
    proc = run(script, "-h", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith(f"usage: bash scripts/{script} CONFIG DATA_DIR")
    assert "example" in proc.stdout and f"scripts/{script} config/" in proc.stdout


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_no_arguments_is_a_usage_error(script, tmp_path):
    proc = run(script, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{script}: error: expected" in proc.stderr and "usage:" in proc.stderr


def test_launchers_exist_and_share_one_library():
    for script in ALL_SCRIPTS:
        text = (SCRIPTS / script).read_text()
        assert 'source "$(dirname "${BASH_SOURCE[0]}")/common.sh"' in text
        assert "set -euo pipefail" in text and os.access(SCRIPTS / script, os.X_OK)


BAD_ARGUMENTS = [
    ("run_train_cpu.sh", ["demo", "D", "0"], "too many positional arguments"),
    ("run_standalone_train.sh", ["demo", "D", "x"], "DEVICE_ID must be a device index"),
    ("run_eval_cpu.sh", ["demo", "D"], "expected 3 positional argument(s), got 2"),
    ("run_eval.sh", ["demo", "D", "c.ckpt", "1", "2"], "too many positional arguments"),
    ("run_distribute_train_gpu.sh", ["demo", "D", "two"], "NUM_GPUS must be an integer >= 1"),
    ("run_distribute_msrun.sh", ["demo", "D", "0"], "WORKERS_PER_NODE must be an integer >= 1"),
    ("run_distribute_msrun.sh", ["demo", "D", "2", "--nodes=2"], "give --node_rank and --master_addr"),
    ("run_distribute_msrun.sh", ["demo", "D", "2", "--nodes=2", "--node_rank=2",
                                 "--master_addr=10.0.0.1"], "--node_rank must be below --nodes"),
    ("run_distribute_msrun.sh", ["demo", "D", "2", "--master_port=80"], "--master_port must be"),
    ("run_distribute_msrun.sh", ["demo", "D", "2", "--master_port"], "--master_port needs a value"),
    ("run_distribute_msrun.sh", ["demo", "D", "2", "--device_id=1"], "--device_id cannot be given"),
    ("run_train_cpu.sh", ["demo", "D", "--lr.base_lr", "0.1"], "unexpected argument '0.1'"),
    ("run_train_cpu.sh", ["demo", "D", "--device_target=GPU"], "--device_target cannot be given"),
    ("run_train_cpu.sh", ["demo", "D", "--data_dir=/x"], "DATA_DIR is the second argument"),
    ("run_train_cpu.sh", ["-x", "demo", "D"], "unknown option '-x'"),
    ("run_distribute_train.sh", ["demo", "D", "t.json", "--device_id=1"], "from the rank table"),
    ("run_eval_cpu.sh", ["demo", "D", "c.ckpt", "--checkpoint_path=x"], "CHECKPOINT is the third"),
    ("run_standalone_train_gpu.sh", ["demo", "D", "--distributed=True"], "run_distribute_"),
]


@pytest.mark.parametrize("script,args,message", BAD_ARGUMENTS,
                         ids=[f"{s}:{m[:25]}" for s, _, m in BAD_ARGUMENTS])
def test_wrong_arguments_exit_2_with_usage_on_stderr(script, args, message, tmp_path):
    proc = run(script, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "\nusage: " in proc.stderr and proc.stdout == ""


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
def test_shellcheck_reports_no_errors():
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    proc = subprocess.run(["shellcheck", *scripts], capture_output=True,  # every severity
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout


# --------------------------------------------------------------------------- early failures

def test_missing_data_dir(tmp_path):
    out = tmp_path / "out"
    proc = run("run_train_cpu.sh", "tinydarknet_cifar10", tmp_path / "no data", f"--output_dir={out}",
               cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"run_train_cpu.sh: error: data directory '{tmp_path / 'no data'}' "
                                   "not found (DATA_DIR, argument 2); point it at the dataset root "
                                   "(python -m src.datasets.check explains the layouts; python -m "
                                   "src.datasets.demo --root demo_data makes small demo sets)")
    assert not out.exists()


def test_missing_config_lists_the_shipped_ones(tmp_path):
    proc = run("run_eval_cpu.sh", "nope", tmp_path, "x.ckpt", cwd=tmp_path)
    assert proc.returncode == 1
    assert "config file 'nope' not found (CONFIG, argument 1); shipped configs: " in proc.stderr
    assert "demo.yaml" in proc.stderr


def test_config_typo_fails_before_anything_starts(tmp_path):
    out = tmp_path / "out"
    proc = run("run_distribute_msrun.sh", "demo", tmp_path, "2", "--epochz=1", f"--output_dir={out}",
               cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown config key 'epochz'" in proc.stderr and "did you mean 'epochs'" in proc.stderr
    assert not out.exists()


def test_missing_mpirun_says_how_to_get_it(tmp_path):
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if d and not os.path.exists(os.path.join(d, "mpirun")))
    proc = run("run_distribute_train_gpu.sh", "demo", tmp_path, "2", cwd=tmp_path,
               env=base_env(PATH=path))
    assert proc.returncode == 1
    assert "mpirun not found: install OpenMPI (apt-get install openmpi-bin" in proc.stderr
    assert "run_distribute_msrun.sh" in proc.stderr


NO_DEVICE_CASES = [
    ("run_standalone_train.sh", ["demo", "{data}", "0"], "no Ascend device on this machine"),
    ("run_eval.sh", ["demo", "{data}", "{ckpt}"], "no Ascend device on this machine"),
    ("run_distribute_train.sh", ["demo", "{data}", "{table}"], "no Ascend device on this machine"),
    ("run_distribute_msrun.sh", ["demo", "{data}", "2", "--device_target=Ascend"],
     "no Ascend device on this machine"),
    ("run_standalone_train_gpu.sh", ["demo", "{data}"], "no NVIDIA GPU on this machine"),
    ("run_eval_gpu.sh", ["demo", "{data}", "{ckpt}", "1"], "no NVIDIA GPU on this machine"),
]


@pytest.mark.parametrize("script,args,message", NO_DEVICE_CASES,
                         ids=[s for s, _, _ in NO_DEVICE_CASES])
def test_accelerator_launchers_fail_early_on_this_machine(script, args, message, tmp_path):
    if ("Ascend" in message and HAS_ASCEND) or ("GPU" in message and HAS_GPU):
        pytest.skip("this machine has the device")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    values = {"data": tmp_path, "ckpt": ckpt, "table": table_file(tmp_path)}
    out = tmp_path / "out"
    proc = run(script, *[a.format(**values) for a in args], f"--output_dir={out}",
               cwd=tmp_path, env=base_env(RANK_TABLE_HOST_IP="10.0.0.1"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{script}: error: {message}") and proc.stderr.count("\n") == 1
    assert not out.exists()  # nothing started, no run folder


def test_broken_rank_table_is_reported_before_the_device_check(tmp_path):
    table = json.loads(table_file(tmp_path).read_text())
    table["server_list"][1]["device"][1]["rank_id"] = "0"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(table))
    proc = run("run_distribute_train.sh", "demo", tmp_path, bad, cwd=tmp_path,
               env=base_env(RANK_TABLE_HOST_IP="10.0.0.1"))
    assert proc.returncode == 1
    assert (f"error: rank table {bad}: server_list[1].device[1].rank_id 0 duplicates "
            f"server_list[0].device[0].rank_id") in proc.stderr
    assert "no Ascend device" not in proc.stderr


# --------------------------------------------------------------------------- process handling

def rank_table_env(fake_bin, **extra):
    return base_env(PYTHON=fake_bin / "python", ZOO_SKIP_DEVICE_CHECK=1,
                    RANK_TABLE_HOST_IP="10.0.0.2", **extra)


def test_rank_table_launch_starts_this_hosts_ranks(tmp_path, fake_bin):
    table = table_file(tmp_path)
    out = tmp_path / "out dir"
    proc = run("run_distribute_train.sh", "demo", tmp_path, table.name, f"--output_dir={out}",
               "--run_name=r", "--foreground", "--epochs=3", cwd=tmp_path,
               env=rank_table_env(fake_bin))
    assert proc.returncode == 0, proc.stderr
    assert "4 rank(s); this host is server_list[1] (10.0.0.2) with 2 device(s)" in proc.stdout
    cpus = sorted(os.sched_getaffinity(0))
    per = len(cpus) // 2
    for device, rank in ((0, 2), (1, 3)):  # server 2's devices carry global ranks 2 and 3
        log = (out / "r" / f"rank_{rank}" / "console.log").read_text()
        assert f"FAKE rank={rank} device={device} size=4 table={table}" in log
        if per and shutil.which("taskset"):
            expected = cpus[device * per:(device + 1) * per]
            assert log.split("cpus=")[1].split()[0] in (",".join(map(str, expected)),
                                                         f"{expected[0]}-{expected[-1]}")
        args = log.split("ARGS ")[1].split()
        assert f"--device_id={device}" in args and "--distributed=True" in args
        assert "--device_target=Ascend" in args and args[-1] == "--epochs=3"
        assert "--run_name=r" in args


def test_a_failed_rank_stops_the_others_and_is_reported(tmp_path, fake_bin):
    out = tmp_path / "out"
    start = time.time()
    proc = run("run_distribute_train.sh", "demo", tmp_path, table_file(tmp_path),
               f"--output_dir={out}", "--run_name=r", "--foreground", cwd=tmp_path,
               env=rank_table_env(fake_bin, FAKE_FAIL_RANK=3, FAKE_SLEEP=60))
    assert proc.returncode == 1
    assert time.time() - start < 30
    assert (f"rank 3 (device 1): FAILED with exit status 3; log {out}/r/rank_3/console.log"
            in proc.stderr)
    assert f"rank 2 (device 0): stopped by the launcher; log {out}/r/rank_2/console.log" in proc.stderr


def _pids_in(text):
    """The pids a launcher printed ('pid 123,' per rank, or 'pid 123' when backgrounded)."""
    return [int(m) for m in re.findall(r"\bpid (\d+)", text)]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_every_rank(tmp_path, fake_bin, sig, code):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        ["bash", str(SCRIPTS / "run_distribute_train.sh"), "demo", str(tmp_path),
         str(table_file(tmp_path)), f"--output_dir={out}", "--run_name=r", "--foreground"],
        cwd=tmp_path, env=rank_table_env(fake_bin, FAKE_SLEEP=120), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    logs = [out / "r" / f"rank_{r}" / "console.log" for r in (2, 3)]
    deadline = time.time() + 30
    while not all(p.exists() and "ARGS" in p.read_text() for p in logs):
        assert time.time() < deadline and proc.poll() is None, "ranks did not start"
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code
    pids = _pids_in(stdout)
    assert len(pids) == 2 and not any(_alive(p) for p in pids)
    assert f"received SIG{sig.name[3:]}, stopping 2 process(es)" in stderr
    assert "rank 2 (device 0): stopped by the launcher" in stderr


def test_mpirun_command(tmp_path, fake_bin):
    mpirun = fake_bin / "mpirun"
    mpirun.write_text(FAKE_MPIRUN)
    mpirun.chmod(0o755)
    record = tmp_path / "mpirun.txt"
    out = tmp_path / "out"
    env = base_env(PYTHON=fake_bin / "python", ZOO_SKIP_DEVICE_CHECK=1,
                   PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
                   MPIRUN_ARGS="--bind-to numa", FAKE_MPIRUN_LOG=record)
    proc = run("run_distribute_train_gpu.sh", "demo", tmp_path, "2", f"--output_dir={out}",
               "--run_name=g", "--foreground", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    options = record.read_text().split(" bash ")[0].split()
    assert options[1:3] == ["-n", "2"] and "--bind-to" in options and "numa" in options
    assert ("--allow-run-as-root" in options) == (os.getuid() == 0)
    assert options[options.index("--output-filename") + 1] == str(out / "g" / "mpirun_logs")
    log = (out / "g" / "console.log").read_text()
    for local_rank in (0, 1):  # each rank takes the GPU of its local rank
        assert f"FAKE rank={local_rank} device={local_rank} " in log
    args = log.split("ARGS ")[1].split("\n")[0].split()
    assert {"--device_target=GPU", "--distributed=True", "--device_id=-1"} <= set(args)


def test_training_runs_in_the_background_by_default(tmp_path, fake_bin):
    out = tmp_path / "out"
    start = time.time()
    proc = run("run_train_cpu.sh", "demo", tmp_path, f"--output_dir={out}", cwd=tmp_path,
               env=base_env(PYTHON=fake_bin / "python", FAKE_SLEEP=3))
    assert proc.returncode == 0 and time.time() - start < 3 + 2, proc.stderr
    assert "started in the background, pid" in proc.stdout
    (pid,) = _pids_in(proc.stdout)
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("demo_train_")
    assert f"log:        {run_dir / 'console.log'}" in proc.stdout
    deadline = time.time() + 30
    while _alive(pid):
        assert time.time() < deadline
        time.sleep(0.2)
    assert "train finished" in (run_dir / "launcher.log").read_text()
    assert f"--run_name={run_dir.name}" in (run_dir / "console.log").read_text()


def test_foreground_env_returns_the_real_exit_status(tmp_path, fake_bin):
    proc = run("run_train_cpu.sh", "demo", tmp_path, f"--output_dir={tmp_path / 'o'}",
               cwd=tmp_path, env=base_env(PYTHON=fake_bin / "python", FAKE_EXIT=7, FOREGROUND=1))
    assert proc.returncode == 7
    assert "FAKE" in proc.stdout and "train FAILED (exit status 7)" in proc.stderr


# --------------------------------------------------------------------------- a real run

@pytest.mark.slow
def test_cpu_train_and_eval_through_paths_with_spaces(tmp_path, demo_data):
    """Real train.py / eval.py runs, launched from a foreign cwd with spaces everywhere."""
    data = tmp_path / "demo data" / "cifar10"
    data.parent.mkdir()
    data.symlink_to(demo_data["cifar10"], target_is_directory=True)
    config = tmp_path / "my configs" / "demo cfg.yaml"
    config.parent.mkdir()
    shutil.copy(REPO / "config" / "demo.yaml", config)
    out = tmp_path / "out dir"
    train = run("run_train_cpu.sh", config, data, "--epochs=1", "--batch_size=100",
                "--checkpoint.eval_every_epochs=0", f"--output_dir={out}", "--foreground",
                cwd=tmp_path, timeout=300)
    assert train.returncode == 0, train.stdout + train.stderr
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("demo cfg_train_")
    names = {p.name for p in run_dir.iterdir()}
    assert {"console.log", "train.log", "config.yaml", "env.txt", "checkpoints"} <= names
    assert not list(run_dir.rglob("*.py"))  # no source code copied into runs
    assert f"dir: {data}" in (run_dir / "config.yaml").read_text()
    (ckpt,) = (run_dir / "checkpoints").glob("*.ckpt")
    evaluation = run("run_eval_cpu.sh", config, data, ckpt, f"--output_dir={out}",
                     "--run_name=my eval", cwd=tmp_path, timeout=300)
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    assert "accuracy: {'top_1_accuracy':" in evaluation.stdout
    results = json.loads((out / "my eval" / "eval_results.json").read_text())
    assert results[str(ckpt)]["num_samples"] == 200

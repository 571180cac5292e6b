"""The launcher commands of the five upstream READMEs ("seeds"), run against the
launchers here.

README.md's "Upstream commands" table lists every seed launcher form with what
it does here: it runs, it prints the command in this project's form (exit 2),
or it prints the fix (a command with a placeholder for what the form does not
say). ``test_every_seed_form_does_what_the_readme_table_says`` runs each row
with the ``/path/to/`` paths swapped for demo data, rank tables and checkpoints
made here, and ``ZOO_DRY_RUN=1`` (every check runs, the commands are printed
instead of started; ``ZOO_SKIP_DEVICE_CHECK=1`` where an Ascend/GPU launcher
must get past its device check, ``ZOO_FORCE=1`` for the 8-process forms on a
small machine). A refusal must be one line without a traceback, and the
command it prints must itself pass the same dry run. The test prints the tally
and fails on any silent or bad case. The real runs at the end train and
evaluate through these forms without the dry run.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PLACEHOLDER = "/path/to/"

# Every launcher line of the seeds, as the README table writes it (alternatives
# such as [cifar10|imagenet] as separate rows); the table must list each.
SEED_FORMS = [
    "bash ./scripts/run_standalone_train.sh 0",
    "bash ./scripts/run_distribute_train.sh rank_table.json",
    "bash ./scripts/run_eval.sh",
    "bash scripts/run_eval_cpu.sh",
    "bash scripts/run_standalone_train_gpu.sh 0 /path/to/cifar10 cifar10",
    "bash scripts/run_standalone_train_gpu.sh 0 /path/to/imagenet imagenet",
    "bash scripts/run_distribute_train_gpu.sh 2 /path/to/cifar10 cifar10",
    "bash scripts/run_distribute_train_gpu.sh 8 /path/to/imagenet imagenet",
    "bash scripts/run_train_cpu.sh /path/to/cifar10 cifar10",
    "bash scripts/run_train_cpu.sh /path/to/imagenet imagenet",
    "bash scripts/run_eval_cpu.sh /path/to/cifar10 cifar10 /path/to/tinydarknet_cifar10.ckpt",
    "bash scripts/run_eval_gpu.sh /path/to/imagenet imagenet /path/to/tinydarknet_imagenet.ckpt",
    "bash scripts/run_infer_310.sh /path/to/tinydarknet_imagenet.mindir /path/to/imagenet/val "
    "/path/to/imagenet_label.txt CPU 0",
    "bash scripts/run_infer_310.sh /path/to/tinydarknet_imagenet.mindir /path/to/imagenet/val "
    "/path/to/imagenet_label.txt DVPP 0",
    "sh scripts/run_distribute_train.sh cifar10 rank_table.json /path/to/cifar10",
    "sh scripts/run_distribute_train.sh imagenet2012 rank_table.json /path/to/imagenet "
    "/path/to/mobilenetv1_imagenet.ckpt",
    "sh scripts/run_eval.sh cifar10 /path/to/cifar10 /path/to/mobilenetv1_cifar10.ckpt",
    "sh scripts/run_eval.sh imagenet2012 /path/to/imagenet /path/to/mobilenetv1_imagenet.ckpt",
    "bash scripts/run_standalone_train.sh /path/to/coco",
    "bash scripts/run_distribute_train.sh /path/to/coco rank_table_8p.json",
    "bash scripts/run_eval.sh /path/to/coco /path/to/yolov3_tiny_coco.ckpt",
    "bash scripts/run_standalone_train_gpu.sh /path/to/coco",
    "bash scripts/run_distribute_train_gpu.sh /path/to/coco 8 4",
    "bash scripts/run_eval_gpu.sh /path/to/coco /path/to/yolov3_tiny_coco.ckpt",
    "bash scripts/run_infer_310.sh /path/to/yolov3_tiny_coco.mindir /path/to/coco/val2017 "
    "/path/to/coco/annotations/instances_val2017.json 0",
    "sh scripts/run_distribute_train.sh rank_table.json /path/to/cifar10",
    "sh scripts/run_distribute_train.sh rank_table.json /path/to/imagenet imagenet2012",
    "sh scripts/run_distribute_train_gpu.sh /path/to/imagenet/train",
    "sh scripts/run_distribute_train_gpu.sh /path/to/cifar10",
]
RESULTS = ("runs", "prints the command", "prints the fix")
CHECKPOINTS = [("tinydarknet", "cifar10"), ("tinydarknet", "imagenet"), ("mobilenetv1", "cifar10"),
               ("mobilenetv1", "imagenet"), ("yolov3_tiny", "coco")]


def readme_rows():
    """(upstream command, result, this project's command) of the README table."""
    text = (REPO / "README.md").read_text()
    start = text.index("<!-- upstream-forms-table")
    rows = []
    for line in text[start:].splitlines()[3:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        upstream = re.match(r"`([^`]+)`", cells[1]).group(1)
        rows.append((upstream, cells[2], cells[3].strip("`")))
    return rows


def rank_table(path, server="10.0.0.1", devices=2):
    path.write_text(json.dumps({"version": "1.0", "server_count": "1", "status": "completed",
                                "server_list": [{"server_id": server, "host_nic_ip": "reserve", "device": [
                                    {"device_id": str(d), "device_ip": f"192.168.0.{d + 1}",
                                     "rank_id": str(d)} for d in range(devices)]}]}))


@pytest.fixture(scope="module")
def work(tmp_path_factory, demo_data):
    """A folder standing in for /path/to/: demo data, rank tables, checkpoints, exports."""
    import mindspore as ms  # noqa: F401  (after src, see conftest)
    from mindspore import nn

    from src.checkpoint import save_checkpoint
    from src.config import load_config
    from src.deploy.spec import write_sidecar

    root = tmp_path_factory.mktemp("seed forms")
    for kind, path in demo_data.items():
        (root / kind).symlink_to(path, target_is_directory=True)
    for name in ("rank_table.json", "rank_table_8p.json"):
        rank_table(root / name)
    for model, dataset in CHECKPOINTS:  # only the metadata matters to the launchers
        save_checkpoint(str(root / f"{model}_{dataset}.ckpt"), nn.Dense(2, 2),
                        meta={"model": model, "dataset": dataset, "epoch": 1, "global_step": 1,
                              "steps_per_epoch": 1})
    # what the launchers' placeholder /path/to/checkpoint.ckpt stands for in the fixes
    (root / "checkpoint.ckpt").write_bytes((root / "tinydarknet_imagenet.ckpt").read_bytes())
    for config in ("tinydarknet_imagenet", "yolov3_tiny_coco"):
        model = root / f"{config}.mindir"
        model.write_bytes(b"")
        write_sidecar(load_config(str(REPO / "config" / f"{config}.yaml")), str(model))
    fake_bin = root / "bin"
    fake_bin.mkdir()
    (fake_bin / "mpirun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "mpirun").chmod(0o755)
    return root


def env_for(work, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FOREGROUND", "RANK_TABLE_FILE", "RANK_SIZE", "RANK_ID", "DEVICE_ID",
                        "MPIRUN_ARGS", "ZOO_FORCE")}
    env.update(PYTHON=sys.executable, ZOO_DRY_RUN="1", ZOO_SKIP_DEVICE_CHECK="1", ZOO_FORCE="1",
               RANK_TABLE_HOST_IP="10.0.0.1", PATH=f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.update({k: str(v) for k, v in extra.items()})
    return env


# The demo ImageNet has 10 classes; the data check before launching refuses the
# shipped 1000-class configs on it, so the runs here add this flag (never compared).
DEMO_IMAGENET = "--num_classes=10"


def argv_of(command, work):
    """The argv of a README command: /path/to/ -> the work folder, the script -> scripts/."""
    words = [w.replace(PLACEHOLDER, f"{work}/") for w in shlex.split(command)]
    argv = [words[0], str(SCRIPTS / os.path.basename(words[1])), *words[2:]]
    if "imagenet" in command and "run_infer_310" not in command:
        argv.append(DEMO_IMAGENET)
    return argv


def launch(command, work, timeout=180, **env):
    return subprocess.run(argv_of(command, work), cwd=work, env=env_for(work, **env),
                          capture_output=True, text=True, timeout=timeout)


def readable(command, work):
    """A printed command in the README's spelling (scripts/..., /path/to/...)."""
    words = [w.replace(f"{SCRIPTS}/", "scripts/").replace(f"{work}/", PLACEHOLDER)
             for w in shlex.split(command) if w != DEMO_IMAGENET]
    return " ".join(words)


def printed_commands(line):
    """The ready commands of a refusal line (after 'run:' or 'run one of:')."""
    match = re.search(r"; run(?: one of)?: (.*)$", line)
    return match.group(1).split(" | ") if match else []


def dry_run_lines(stdout):
    return [line[len("dry run: "):] for line in stdout.splitlines() if line.startswith("dry run: ")]


def check_dry_run(proc, project, work):
    """A dry run that passed every check and would start the project command's config."""
    problems = []
    if proc.returncode != 0:
        return [f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"]
    starts = dry_run_lines(proc.stdout)
    if not starts:
        problems.append("no 'dry run:' command printed")
    words = shlex.split(project)
    started = [w for s in starts for w in shlex.split(s)]
    if words[1].endswith("run_infer_310.sh"):
        model = words[2].replace(PLACEHOLDER, f"{work}/")
        if not {f"--model_file={model}", f"--model_path={model}"} & set(started):
            problems.append(f"the dry run does not use the model {model}: {starts}")
    elif f"--config_path={REPO}/config/{words[2]}.yaml" not in started:
        problems.append(f"the dry run does not train/evaluate {words[2]}: {starts}")
    if "Traceback" in proc.stdout + proc.stderr:
        problems.append("traceback")
    return problems


def test_readme_table_lists_every_seed_form():
    rows = readme_rows()
    assert [r[0] for r in rows] == SEED_FORMS
    assert all(result in RESULTS for _, result, _ in rows), [r[1] for r in rows]


@pytest.mark.slow  # a minute or two: each checkpoint's metadata is read through MindSpore
def test_every_seed_form_does_what_the_readme_table_says(work):
    tally = {"runs as written": 0, "runs after the printed translation": 0,
             "refused with the fix": 0}
    bad = []
    for upstream, result, project in readme_rows():
        proc = launch(upstream, work)
        if result == "runs":
            problems = check_dry_run(proc, project, work)
            ran = re.search(r"running: (.*)$", proc.stdout, re.M)
            shown = readable(ran.group(1), work) if ran else re.sub(r"^sh ", "bash ", upstream)
            if shown != project:
                problems.append(f"runs as {shown!r}, the table says {project!r}")
            if not problems:
                tally["runs as written"] += 1
        else:
            # one line; a launcher started with no arguments adds its usage after a blank line
            lines = proc.stderr.split("\n\nusage: ")[0].strip().splitlines()
            problems = []
            if proc.returncode != 2 or len(lines) != 1 or "Traceback" in proc.stderr:
                problems.append(f"exit {proc.returncode}, stderr {proc.stderr.strip()[-600:]!r} "
                                f"(wanted one line and exit 2)")
            else:
                commands = printed_commands(lines[0])
                shown = [readable(c, work) for c in commands]
                if project not in shown:
                    problems.append(f"prints {shown}, the table says {project!r}")
                else:
                    raw = commands[shown.index(project)]
                    placeholder = PLACEHOLDER in raw
                    if placeholder != (result == "prints the fix"):
                        problems.append(f"the table says {result!r}, the command is {raw!r}")
                    problems += check_dry_run(launch(project, work), project, work)
                    if not problems:
                        tally["refused with the fix" if placeholder else
                              "runs after the printed translation"] += 1
        if problems:
            bad.append(f"{upstream}: {'; '.join(problems)}")
    print("\nseed launcher forms: " + ", ".join(f"{k}: {v}" for k, v in tally.items()))
    assert not bad, "\n".join(bad)
    assert sum(tally.values()) == len(SEED_FORMS)


# --------------------------------------------------------------------------- wrong arguments

WRONG_ARGUMENTS = [
    (["run_standalone_train_gpu.sh", "0", "./cifar10", "imagenet"],
     "'./cifar10' (argument 2, DATA_DIR) holds cifar10 data, but argument 3 says imagenet"),
    (["run_standalone_train.sh", "missing"],
     "data directory 'missing' (argument 1, DATA_DIR) not found"),
    (["run_distribute_train.sh", "./coco", "missing.json"],
     "rank table 'missing.json' (argument 2, RANK_TABLE_FILE) not found"),
    (["run_eval.sh", "cifar10", "./cifar10", "missing.ckpt"],
     "checkpoint 'missing.ckpt' (argument 3, CHECKPOINT) not found"),
    (["run_eval_cpu.sh", "./imagenet", "yolov3_tiny_coco.ckpt"],
     "checkpoint 'yolov3_tiny_coco.ckpt' (argument 2) was trained on coco, but the data is imagenet"),
    (["run_infer_310.sh", "tinydarknet_imagenet.mindir", "imagenet/val", "l.txt", "DVPP"],
     "'DVPP' (argument 4): DVPP decoding is not supported"),
]


@pytest.mark.parametrize("args,message", WRONG_ARGUMENTS, ids=[a[0] + ":" + m[:30] for a, m in WRONG_ARGUMENTS])
def test_the_wrong_argument_is_named(work, args, message):
    proc = subprocess.run(["sh", str(SCRIPTS / args[0]), *args[1:]], cwd=work, env=env_for(work),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert "DEVICE_ID must be" not in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- sh, -h

LAUNCHERS = sorted(p.name for p in SCRIPTS.glob("run_*.sh"))


@pytest.mark.parametrize("shell", [["sh"], ["bash", "--posix"]])
def test_every_launcher_runs_under_sh(shell, tmp_path):
    for script in LAUNCHERS:
        proc = subprocess.run([*shell, str(SCRIPTS / script), "-h"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and proc.stderr == "", (script, proc.stderr)
        assert proc.stdout.startswith(f"usage: bash scripts/{script} ")


def test_help_shows_the_upstream_forms():
    for script in LAUNCHERS:
        if script == "run_distribute_msrun.sh":  # msrun had no upstream script
            continue
        text = subprocess.run(["bash", str(SCRIPTS / script), "-h"], capture_output=True, text=True,
                              timeout=60).stdout
        assert "upstream forms" in text, script
    for upstream, _, _ in readme_rows():
        words = upstream.split()
        script = os.path.basename(words[1])
        text = subprocess.run(["bash", str(SCRIPTS / script), "-h"], capture_output=True, text=True,
                              timeout=60).stdout
        assert script in text.split("upstream forms", 1)[1], upstream


# --------------------------------------------------------------------------- processes

def test_worker_counts_are_bounded_by_the_cores(work, tmp_path):
    cores = len(os.sched_getaffinity(0))
    out = tmp_path / "out"
    env = env_for(work, ZOO_FORCE=0)
    proc = subprocess.run(["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "demo", "cifar10",
                           "100000", f"--output_dir={out}"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not out.exists()
    assert (f"WORKERS_PER_NODE 100000 is more than the {cores} CPU cores of this machine"
            in proc.stderr) and "--force" in proc.stderr
    proc = subprocess.run(["bash", str(SCRIPTS / "run_distribute_train_gpu.sh"), "demo", "cifar10",
                           str(cores), "--cpus_per_rank=2"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"needs {2 * cores} cores" in proc.stderr
    proc = subprocess.run(["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "demo", "cifar10",
                           str(cores + 1), "--force", "--master_port=18998"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"--local_worker_num={cores + 1}" in dry_run_lines(proc.stdout)[0]


def test_a_bad_data_dir_fails_before_any_worker_starts(work, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "tinydarknet_cifar10",
                           str(empty), "2", f"--output_dir={out}"], cwd=work,
                          env=env_for(work, ZOO_DRY_RUN=0), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.startswith(f"run_distribute_msrun.sh: error: data directory '{empty}' "
                                  "(DATA_DIR, argument 2) does not hold the config's cifar10 data")
    assert proc.stderr.count("\n") == 1
    # the demo config's folder that train.py could not make: refused before msrun too
    proc = subprocess.run(["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "demo",
                           str(tmp_path / "nowhere"), "2", f"--output_dir={out}"], cwd=work,
                          env=env_for(work, ZOO_DRY_RUN=0), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not out.exists() and proc.stderr.count("\n") == 1
    assert "data.demo=True needs data.dir to end in /cifar10" in proc.stderr


def test_a_demo_set_is_made_once_before_the_workers(work, tmp_path, fake_msrun_bin):
    data = tmp_path / "demo" / "cifar10"
    args = ["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "demo", str(data), "2", "--foreground",
            f"--output_dir={tmp_path / 'out'}", f"--master_port={free_port()}"]
    proc = subprocess.run(args, cwd=work, env=env_for(work), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not data.exists(), proc.stderr  # a dry run makes nothing
    proc = subprocess.run(args, cwd=work, env=env_for(work, ZOO_DRY_RUN=0, PYTHON=fake_msrun_bin / "python"),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    before_msrun = proc.stdout.split("worker(s) on 1 node(s)")[0]
    assert f"making the demo cifar10 dataset in {data}" in before_msrun
    assert (data / "cifar-10-batches-bin").is_dir()


FAKE_WORKER = r"""#!/usr/bin/env bash
# Stand-in python for msrun's workers: train.py sleeps (leaving a grandchild in a
# session of its own, as a stray data worker would) or fails; the rest is real.
case "${1:-}" in
  */train.py)
    [[ ${MS_ROLE:-} == MS_SCHED ]] && exec sleep "${FAKE_SLEEP:-0}"
    setsid sleep 300 < /dev/null > /dev/null 2>&1 &
    if [[ -n ${FAKE_FAIL_RANK:-} && ${RANK_ID:-} == "$FAKE_FAIL_RANK" ]]; then
      echo "error: data batch 3 is unreadable (rank $RANK_ID)"; exit 3
    fi
    exec sleep "${FAKE_SLEEP:-0}";;
  *) exec "@REAL@" "$@";;
esac
"""


@pytest.fixture
def fake_msrun_bin(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    python = folder / "python"
    python.write_text(FAKE_WORKER.replace("@REAL@", sys.executable))
    python.chmod(0o755)
    (folder / "msrun").symlink_to(Path(sys.executable).parent / "msrun")
    return folder


def tagged(marker, command=""):
    """Pids of running processes whose environment holds marker (and whose command line is command)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"ZOO_TEST_MARK={marker}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    argv = (entry / "cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()
                    if state != "Z" and (not command or argv == command):
                        pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (Path(sys.executable).parent / "msrun").exists(), reason="no msrun")
def test_sigterm_leaves_no_msrun_worker_behind(work, tmp_path, fake_msrun_bin):
    marker = f"{os.getpid()}-{time.time()}"
    out = tmp_path / "out"
    env = env_for(work, ZOO_DRY_RUN=0, PYTHON=fake_msrun_bin / "python", FAKE_SLEEP=300,
                  ZOO_TEST_MARK=marker)
    proc = subprocess.Popen(["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "demo", "cifar10", "2",
                             "--foreground", f"--output_dir={out}", "--run_name=r",
                             f"--master_port={free_port()}"],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while len(tagged(marker, "sleep 300")) < 5:  # the scheduler, 2 workers and their 2 strays
            assert time.time() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stderr
        assert "received SIGTERM" in stderr
        deadline = time.time() + 10
        while tagged(marker) and time.time() < deadline:
            time.sleep(0.2)
        assert tagged(marker) == []
    finally:
        for pid in tagged(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not (Path(sys.executable).parent / "msrun").exists(), reason="no msrun")
def test_a_failed_workers_reason_is_printed(work, tmp_path, fake_msrun_bin):
    marker = f"{os.getpid()}-{time.time()}"
    out = tmp_path / "out"
    # the other worker ends soon too (real ones fail at their next collective)
    env = env_for(work, ZOO_DRY_RUN=0, PYTHON=fake_msrun_bin / "python", FAKE_SLEEP=3,
                  FAKE_FAIL_RANK=1, ZOO_TEST_MARK=marker)
    try:
        proc = subprocess.run(["bash", str(SCRIPTS / "run_distribute_msrun.sh"), "demo", "cifar10", "2",
                               "--foreground", f"--output_dir={out}", "--run_name=r",
                               f"--master_port={free_port()}"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode != 0
        assert f"worker_1 failed; last lines of {out}/r/msrun_logs/worker_1.log:" in proc.stderr
        assert "| error: data batch 3 is unreadable (rank 1)" in proc.stderr
        assert tagged(marker) == []  # the strays in sessions of their own were stopped
    finally:
        for pid in tagged(marker):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- run_infer_310.sh

@pytest.mark.parametrize("label,content,message", [
    ("imagenet_label.txt", "img_1 3 extra\n", "bad label line"),
    ("imagenet_label.txt", "img_1 5000\n", "outside 0..999"),
    ("instances.json", "{not json", "cannot be read"),
])
def test_infer_checks_the_label_or_annotation_file_first(work, tmp_path, label, content, message):
    model = "yolov3_tiny_coco.mindir" if label.endswith(".json") else "tinydarknet_imagenet.mindir"
    data = "coco/val2017" if label.endswith(".json") else "imagenet/val"
    path = tmp_path / label
    path.write_text(content)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPTS / "run_infer_310.sh"), model, data, str(path),
                           "--backend=python", f"--output_dir={out}"], cwd=work,
                          env=env_for(work, ZOO_DRY_RUN=0), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and not out.exists(), proc.stdout + proc.stderr
    assert (f"LABEL_OR_ANNOTATION_FILE '{path}' (argument 3) is unusable" in proc.stderr
            and message in proc.stderr and proc.stderr.count("\n") == 1)


# --------------------------------------------------------------------------- real runs

@pytest.mark.slow
def test_seed_forms_train_and_evaluate_for_real(work, tmp_path):
    """The printed translation of run_train_cpu.sh DATA cifar10 trains; then the seed's
    run_eval_cpu.sh DATA cifar10 CKPT runs as written on its checkpoint."""
    quick = ["--epochs=1", "--image_size=32,32", "--data.cutout=0", "--batch_size=100",
             "--checkpoint.eval_every_epochs=0", f"--output_dir={tmp_path / 'out'}"]
    env = env_for(work, ZOO_DRY_RUN=0, ZOO_SKIP_DEVICE_CHECK=0)
    refused = subprocess.run(["sh", str(SCRIPTS / "run_train_cpu.sh"), "./cifar10", "cifar10", *quick],
                             cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    (command,) = [c for c in printed_commands(refused.stderr.strip()) if "tinydarknet_cifar10" in c]
    train = subprocess.run([*shlex.split(command), "--run_name=t", "--foreground"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    (ckpt,) = (tmp_path / "out" / "t" / "checkpoints").glob("tinydarknet_cifar10-1_*.ckpt")
    evaluation = subprocess.run(["sh", str(SCRIPTS / "run_eval_cpu.sh"), "./cifar10", "cifar10", str(ckpt),
                                 "--image_size=32,32", "--data.cutout=0", f"--output_dir={tmp_path / 'out'}",
                                 "--run_name=e"],
                                cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert evaluation.returncode == 0, evaluation.stdout[-2000:] + evaluation.stderr[-2000:]
    assert "a tinydarknet checkpoint fit one config; running: bash" in evaluation.stdout
    assert "accuracy: {'top_1_accuracy':" in evaluation.stdout

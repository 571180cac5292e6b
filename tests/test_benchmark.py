"""benchmark.py produces a well-formed report; the CPU performance setup is in force."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import src  # noqa: F401
from src import cpu_env

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_onednn_isa_cap_is_applied_on_avx512_cpus_before_mindspore_loads():
    if cpu_env._cpu_has_avx512():
        assert os.environ.get(cpu_env.ISA_VARIABLE) == "AVX2"
    # A fresh interpreter that imports src first gets the same setting, and a
    # user's own choice is kept.
    code = ("import os, src, mindspore; print(os.environ.get('ONEDNN_MAX_CPU_ISA', ''))")
    env = {k: v for k, v in os.environ.items() if k != cpu_env.ISA_VARIABLE}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("AVX2" if cpu_env._cpu_has_avx512() else "")
    env[cpu_env.ISA_VARIABLE] = "AVX512_CORE"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "AVX512_CORE"


def test_interleaved_timing_alternates_the_order_and_keeps_each_median(monkeypatch):
    import benchmark
    clock, calls = [0.0], []

    def timed(name, seconds):
        def fn():
            calls.append(name)
            clock[0] += seconds
        return fn

    def sleep(seconds):
        calls.append(f"pause {seconds}")
        clock[0] += seconds

    from src.utils import timing
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(timing.time, "sleep", sleep)
    medians = benchmark.interleaved_median_seconds([timed("a", 2.0), timed("b", 3.0)], repeats=3)
    assert medians == [2.0, 3.0]  # the pauses are not timed
    pause = f"pause {timing.SETTLE_SECONDS}"
    # warm-up, then AB, BA, AB; every timed call starts after a pause (spinning threads of the
    # call before, e.g. onnxruntime's, must not steal a core from it)
    assert calls == ["a", "b"] + [item for name in "abbaab" for item in (pause, name)]
    assert benchmark.median_seconds(timed("c", 0.5), repeats=2, warmup=0) == 0.5


@pytest.mark.slow
def test_quick_benchmark_of_every_model_is_well_formed(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmark.py", "--model", "all", "--quick",
                           "--json", str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["environment"]["mindspore"]
    assert report["environment"]["fp32_matmul_gflops"] > 0
    from src import kernels
    try:
        kernels.load()
        expected_kernels = "zoo"
    except kernels.KernelBuildError:
        expected_kernels = "mindspore"
    names = [r["model"] for r in report["results"]]
    assert names == ["tinydarknet", "mobilenetv1", "vgg16", "yolov3_tiny"]
    for r in report["results"]:
        for key in ("train_img_per_s", "data_img_per_s", "gflops_per_image", "train_compile_s",
                    "infer_ckpt_b1_img_per_s", "infer_mindir_b1_img_per_s", "infer_onnx_b1_img_per_s",
                    "infer_opencv_b1_img_per_s", "infer_opencv_b2_img_per_s",
                    "infer_deploy_b1_img_per_s"):
            assert isinstance(r[key], float) and r[key] > 0, (r["model"], key, r.get(key))
        # The deploy path is the runtime infer.py picks, timed in the same alternated calls.
        runtime = r["infer_deploy_b1_runtime"]
        assert r["infer_deploy_b1_img_per_s"] == r[{"onnxruntime": "infer_onnx_b1_img_per_s",
                                                    "opencv": "infer_opencv_b1_img_per_s"}[runtime]]
        assert r["cpu_kernels"] == expected_kernels, r["model"]  # the default, cpu_kernels=auto
        assert r["infer_b1_repeats"] == r["infer_b2_repeats"] == 2  # --quick: no batch-1 floor
    assert "| tinydarknet |" in proc.stdout and "train img/s" in proc.stdout


@pytest.mark.parametrize("argv, batch1, other", [(["--repeats", "3"], "floor", 3),
                                                 (["--repeats", "40"], 40, 40),
                                                 (["--quick"], 2, 2)])
def test_batch_1_inference_gets_a_floor_of_timed_calls(argv, batch1, other, monkeypatch, tmp_path):
    """Single batch-1 calls vary 2-3x on a shared VM: a median of 3 is not a measurement."""
    import benchmark
    assert benchmark.BATCH1_MIN_REPEATS >= 15
    batch1 = benchmark.BATCH1_MIN_REPEATS if batch1 == "floor" else batch1
    seen = {}

    def fake_benchmark_model(name, size, batch, repeats, workdir, **kwargs):
        seen.update(repeats=repeats, batch1_repeats=kwargs["batch1_repeats"])
        return {"model": name, "image_size": size, "batch": batch}

    monkeypatch.setattr(benchmark, "benchmark_model", fake_benchmark_model)
    monkeypatch.setattr(benchmark, "format_table", lambda results: "")
    assert benchmark.main(["--model", "tinydarknet", *argv, "--json", str(tmp_path / "r.json")]) == 0
    assert seen == {"repeats": other, "batch1_repeats": batch1}


def test_cpu_kernels_option_picks_the_zoo_step():
    import benchmark
    cfg, _, _ = benchmark.benchmark_config("tinydarknet", 32, 2, "mindspore")
    assert cfg.cpu_kernels == "mindspore"
    assert dict(benchmark.benchmark_config_source("vgg16", 32, 2)[1])["cpu_kernels"] == "auto"


def test_child_processes_can_get_the_users_own_cpu_environment(monkeypatch):
    """What cpu_env.apply() sets for MindSpore and the kernels (ISA cap, OpenMP spin count) is
    undone for the PyTorch peer, the user's own OMP_WAIT_POLICY is kept, and the child's own
    apply() leaves it so; ours is restored afterwards."""
    monkeypatch.setitem(cpu_env.USER_VALUES, cpu_env.ISA_VARIABLE, None)
    monkeypatch.setitem(cpu_env.USER_VALUES, cpu_env.OMP_WAIT_VARIABLE, "ACTIVE")
    monkeypatch.setitem(cpu_env.USER_VALUES, cpu_env.SPIN_VARIABLE, None)
    monkeypatch.setenv(cpu_env.ISA_VARIABLE, "AVX2")
    monkeypatch.setenv(cpu_env.OMP_WAIT_VARIABLE, "ACTIVE")
    monkeypatch.setenv(cpu_env.SPIN_VARIABLE, cpu_env.KERNEL_SPIN_COUNT)
    with cpu_env.user_environment():
        env = dict(os.environ)
    assert cpu_env.ISA_VARIABLE not in env and cpu_env.SPIN_VARIABLE not in env
    assert env[cpu_env.OMP_WAIT_VARIABLE] == "ACTIVE"
    code = ("import os, src; print(os.environ.get('ONEDNN_MAX_CPU_ISA'), "
            "os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, text=True,
                         capture_output=True, timeout=120).stdout.split()
    assert out == ["None", "ACTIVE", "None"]
    assert os.environ[cpu_env.ISA_VARIABLE] == "AVX2"
    assert os.environ[cpu_env.SPIN_VARIABLE] == cpu_env.KERNEL_SPIN_COUNT


def test_the_zoo_leaves_the_openmp_spin_to_a_user_who_chose_a_wait_policy():
    """GOMP_SPINCOUNT overrides OMP_WAIT_POLICY in libgomp, so the zoo sets it only when the
    user set neither."""
    base = {k: v for k, v in os.environ.items()
            if k not in (cpu_env.OMP_WAIT_VARIABLE, cpu_env.SPIN_VARIABLE, cpu_env.SET_BY_ZOO_VARIABLE)}
    code = "import os, src; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    seen = [subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=dict(base, **extra),
                           text=True, capture_output=True, timeout=120).stdout.split()
            for extra in ({}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "5"})]
    assert seen == [["None", cpu_env.KERNEL_SPIN_COUNT], ["PASSIVE", "None"], ["None", "5"]]


def test_a_zoo_child_process_knows_the_inherited_settings_are_the_zoos():
    """A zoo process started by a zoo process (profile child, test subprocess) sees the ISA cap
    in its environment but still knows it is not the user's: its kernels lift it."""
    names = (cpu_env.ISA_VARIABLE, cpu_env.OMP_WAIT_VARIABLE, cpu_env.SPIN_VARIABLE)
    env = {k: v for k, v in os.environ.items() if k not in (*names, cpu_env.SET_BY_ZOO_VARIABLE)}
    code = ("import os, subprocess, sys, src; from src import cpu_env; "
            "print(cpu_env.USER_VALUES, os.environ.get('GOMP_SPINCOUNT')); sys.stdout.flush(); "
            "subprocess.run([sys.executable, '-c', 'import src; from src import cpu_env; "
            "print(cpu_env.USER_VALUES)'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, text=True,
                         capture_output=True, timeout=120).stdout.splitlines()
    unset = str(dict.fromkeys(names))
    assert out == [f"{unset} {cpu_env.KERNEL_SPIN_COUNT}", unset]


# --- the PyTorch peers (benchmark.py --peer=pytorch) ---------------------------------------

PEER_SIZES = {"tinydarknet": ("tinydarknet_imagenet.yaml", 64),
              "mobilenetv1": ("mobilenetv1_imagenet.yaml", 64),
              "vgg16": ("vgg16_imagenet.yaml", 32),
              "yolov3_tiny": ("yolov3_tiny_coco.yaml", 64)}


def _peer_batch(cfg, size, batch=2):
    """A random batch of ``cfg``'s training columns (YOLO: real targets from random boxes)."""
    import numpy as np

    rng = np.random.RandomState(0)
    images = rng.randn(batch, 3, size, size).astype(np.float32)
    if cfg.model != "yolov3_tiny":
        return [images, rng.randint(0, cfg.num_classes, batch).astype(np.int32)]
    from src.registry import get_model_spec
    targets, _ = get_model_spec(cfg.model).targets(cfg)
    columns = []
    for _ in range(batch):
        corner = rng.uniform(0, size / 2, (3, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(4, size / 2, (3, 2)),
                                rng.randint(0, cfg.num_classes, (3, 1))], axis=1)
        columns.append(targets(boxes.astype(np.float32), (size, size)))
    return [images] + [np.stack(c).astype(np.float32) for c in zip(*columns)]


@pytest.mark.parametrize("name", list(PEER_SIZES))
def test_pytorch_peer_is_the_zoo_network_with_the_zoo_loss(name, pynative_cpu):
    """Same tensors in the same order; with the zoo's weights, the same train-mode loss."""
    torch = pytest.importorskip("torch")
    import mindspore as ms
    import numpy as np

    from src.bench.pytorch_peers import PeerRunner, build_peer
    from src.config import load_config
    from src.engine import build_network
    from src.registry import get_model_spec
    from src.tasks import get_task

    config, size = PEER_SIZES[name]
    cfg = load_config(str(REPO_ROOT / "config" / config),
                      overrides=[("image_size", [size, size]), ("num_classes", 10),
                                 ("net.dropout", 0.0)] if name == "vgg16" else
                      [("image_size", [size, size]), ("num_classes", 10)])
    zoo = build_network(cfg)
    zoo_params = zoo.trainable_params()
    peer = build_peer(name, cfg.num_classes, cfg.image_size, cfg.net)
    assert [tuple(p.shape) for p in zoo_params] == [tuple(p.shape) for p in peer.parameters()]
    assert sum(int(np.prod(p.shape)) for p in zoo_params) == \
        sum(p.numel() for p in peer.parameters())

    runner = PeerRunner(cfg, threads=1, zoo_net=zoo)
    batch = _peer_batch(cfg, size)
    loss_net = get_task(get_model_spec(name).task).loss_network(cfg, zoo)
    loss_net.set_train(True)
    zoo_loss = float(loss_net(*[ms.Tensor(b) for b in batch]).asnumpy())
    peer_loss = float(runner.loss(*[torch.from_numpy(b) for b in batch]).detach())
    assert np.isfinite(zoo_loss) and zoo_loss > 0
    assert peer_loss == pytest.approx(zoo_loss, rel=1e-4)
    assert runner.train_step(*batch) == pytest.approx(peer_loss, rel=1e-5)
    assert runner.train_step(*batch) != pytest.approx(peer_loss, rel=1e-6)  # it updated


def test_pytorch_peer_pads_like_mindspore_same():
    from src.bench.pytorch_peers import same_padding
    assert same_padding(224, 3, 2) == (0, 1)  # MindSpore puts the odd pixel after
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(13, 2, 1) == (0, 1)
    assert same_padding(8, 1, 1) == (0, 0)


def test_peer_pytorch_without_torch_is_one_clear_error():
    code = ("import sys; sys.modules['torch'] = None; import benchmark; "
            "sys.exit(benchmark.main(['--model', 'tinydarknet', '--quick', '--peer', 'pytorch']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: --peer=pytorch needs PyTorch (a test-only dependency, not in requirements.txt): "
        "pip install torch==2.13.0"]
    assert "Traceback" not in proc.stderr and "| tinydarknet |" not in proc.stdout


def test_table_has_the_peer_ratio_columns():
    import benchmark
    row = {"model": "vgg16", "image_size": 32, "batch": 2, "train_img_per_s": 4.0,
           "pytorch_train_img_per_s": 5.0, "train_over_pytorch": 0.8,
           "infer_ckpt_b1_over_pytorch": 1.25, "infer_onnx_b1_over_pytorch": 2.5,
           "infer_opencv_b1_over_pytorch": 1.5, "infer_opencv_b2_img_per_s": 7.0,
           "infer_deploy_b1_runtime": "opencv", "infer_deploy_b1_over_pytorch": 1.5,
           "peak_over_pytorch_b1": 1.4}
    table = benchmark.format_table([row]).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert dict(zip(header, cells))["ours/PyTorch"] == "0.80x"
    assert dict(zip(header, cells))["PyTorch train img/s"] == "5.0"
    assert dict(zip(header, cells))["ckpt b1/PyTorch"] == "1.25x"
    assert dict(zip(header, cells))["onnx b1/PyTorch"] == "2.50x"
    assert dict(zip(header, cells))["opencv b1/PyTorch"] == "1.50x"
    assert dict(zip(header, cells))["opencv bN"] == "7.0"
    assert dict(zip(header, cells))["ours/MindCV"] == "-"
    assert dict(zip(header, cells))["deploy runtime"] == "opencv"
    assert dict(zip(header, cells))["deploy b1/PyTorch"] == "1.50x"
    assert dict(zip(header, cells))["fp32 peak/PyTorch b1"] == "1.40x"
    assert len(header) == len(cells)


def test_peak_ratio_is_the_fp32_ceiling_over_pytorchs_batch_1_speed():
    import benchmark
    # VGG16 at 224 is 30.94 GFLOPs per image; PyTorch at 3.5 img/s runs 108 GFLOP/s.
    row = benchmark.with_peak_ratio({"gflops_per_image": 30.94, "pytorch_infer_b1_img_per_s": 3.5},
                                    peak_gflops=150.0)
    assert row["pytorch_infer_b1_gflops_per_s"] == pytest.approx(108.29)
    assert row["peak_over_pytorch_b1"] == pytest.approx(150.0 / 108.29, rel=1e-4)
    assert "peak_over_pytorch_b1" not in benchmark.with_peak_ratio({"gflops_per_image": 1.0}, 150.0)


def test_matmul_peak_is_the_fastest_products_flops_per_second(monkeypatch):
    import benchmark
    # Three timed products taking 0.5, 0.25 and 0.4 s: the peak is the 0.25 s one's speed.
    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.4])
    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: next(ticks))
    peak = benchmark.matmul_peak_gflops(size=64, repeats=3)
    assert peak == pytest.approx(2 * 64 ** 3 / 0.25 / 1e9)
    monkeypatch.undo()
    assert 0 < benchmark.matmul_peak_gflops(size=256, repeats=2) < 1e5  # real: no CPU does 100 TFLOP/s


def test_pytorch_peer_process_trains_the_zoo_weights_with_the_users_isa(pynative_cpu, monkeypatch):
    """The child process gets the zoo's weights and batch, and oneDNN's ISA as the user left it."""
    pytest.importorskip("torch")
    import mindspore as ms

    from src.bench import pytorch_peers
    from src.config import load_config
    from src.engine import build_network
    from src.registry import get_model_spec
    from src.tasks import get_task

    source = (str(REPO_ROOT / "config" / "tinydarknet_imagenet.yaml"),
              [("image_size", [32, 32]), ("num_classes", 10)])
    cfg = load_config(*source)
    zoo = build_network(cfg)
    batch = _peer_batch(cfg, 32)
    loss_net = get_task(get_model_spec("tinydarknet").task).loss_network(cfg, zoo)
    loss_net.set_train(True)
    zoo_loss = float(loss_net(*[ms.Tensor(b) for b in batch]).asnumpy())
    isa_before = os.environ.get(cpu_env.ISA_VARIABLE)
    peer = pytorch_peers.PeerProcess(source, 1, zoo, batch)
    try:
        assert os.environ.get(cpu_env.ISA_VARIABLE) == isa_before  # ours is left as it was
        assert peer.train_step() == pytest.approx(zoo_loss, rel=1e-4)
        assert peer.train_step() != pytest.approx(zoo_loss, rel=1e-6)  # it updated
        peer.set_image(batch[0][:1])
        assert peer.infer() is None
    finally:
        peer.close()
    assert not peer._process.is_alive()


def test_profile_sums_onednn_kernels_by_shape_and_names_the_rest():
    import benchmark
    lines = [
        "onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,backward_weights,src:f32,"
        "attr,alg:convolution_direct,g32mb32_ic32oc32_ih112oh112kh3sh1dh0ph1_iw112ow112kw3sw1dw0pw1,2.5",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,forward_training,src:f32,"
        "attr,alg:convolution_direct,mb32_ic3oc16_ih224oh224kh3sh1dh0ph1_iw224ow224kw3sw1dw0pw1,1.5",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,x64:gemm:jit,forward_training,src:f32,"
        "attr,alg:convolution_direct,mb32_ic3oc16_ih224oh224kh3sh1dh0ph1_iw224ow224kw3sw1dw0pw1,0.5",
        "onednn_verbose,v1,primitive,exec,cpu,pooling,simple_nchw:any,forward_training,src,attr,"
        "alg:pooling_max,mb32ic16_ih224oh112kh2sh2ph0_iw224ow112kw2sw2pw0,3.0",
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,pooling,simple_nchw:any,forward_training,"
        "src,attr,alg:pooling_max,mb32ic16,0.7",  # creation, not execution: not counted
        "some other line",
    ]
    kernels = benchmark.parse_onednn_profile(lines, steps=2)
    assert kernels == {
        ("conv depthwise", "convolution", "backward_weights", "x64:gemm:jit"): 1.25,
        ("conv 3x3", "convolution", "forward_training", "x64:gemm:jit"): 1.0,
        ("pooling", "pooling", "forward_training", "simple_nchw:any"): 1.5}
    profile = {"model": "m", "image_size": 8, "batch": 2, "step_ms": 10.0,
               "kernels": [{"category": c, "kind": k, "propagation": p, "kernel": i, "ms": ms}
                           for (c, k, p, i), ms in kernels.items()]}
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip()
            for line in benchmark.format_profile(profile).splitlines() if line.count("|") == 4}
    assert rows["pooling"] == "15.0 %"
    assert rows["conv depthwise backward weights"] == "12.5 %"
    assert rows["conv 3x3 forward"] == "10.0 %"
    assert rows["not oneDNN (MindSpore kernels, optimizer, loss, launch)"] == "62.5 %"

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

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock[0])
    medians = benchmark.interleaved_median_seconds([timed("a", 2.0), timed("b", 3.0)], repeats=3)
    assert medians == [2.0, 3.0]
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then AB, BA, AB
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
    names = [r["model"] for r in report["results"]]
    assert names == ["tinydarknet", "mobilenetv1", "vgg16", "yolov3_tiny"]
    for r in report["results"]:
        for key in ("train_img_per_s", "data_img_per_s", "gflops_per_image", "train_compile_s",
                    "infer_ckpt_b1_img_per_s", "infer_mindir_b1_img_per_s", "infer_onnx_b1_img_per_s"):
            assert isinstance(r[key], float) and r[key] > 0, (r["model"], key, r.get(key))
    assert "| tinydarknet |" in proc.stdout and "train img/s" in proc.stdout

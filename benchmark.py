"""Measure how fast each model trains, serves and loads data on this machine.

    python benchmark.py --model all                 # every model at its benchmark size
    python benchmark.py --model vgg16 --batch_size 8 --image_size 224
    python benchmark.py --model all --quick         # tiny sizes, seconds per model (CI)
    python benchmark.py --model all --json results.json
    python benchmark.py --model all --peer=pytorch  # + the same networks in PyTorch eager

For each model it reports, after warm-up and as the median of timed repeats:
  * train img/s: a full train step (forward, backward, optimizer), compile time apart;
  * infer img/s of the checkpoint network, the exported MINDIR (MindSpore) and the
    exported ONNX (on onnxruntime, and on OpenCV DNN: infer.py --onnx_runtime=opencv)
    at batch 1 and at the benchmark batch;
  * deploy: the ONNX file on the runtime infer.py picks here (--onnx_runtime=auto), batch 1;
  * data img/s of the real training pipeline (decode + augment + batch) on the demo data;
  * GFLOP/s achieved, next to the model's forward GFLOPs per image (a train step
    costs about 3x the forward), and this machine's fp32 matrix-product peak.

``--peer=pytorch`` times the same network, loss and optimizer in PyTorch eager
(src/bench/pytorch_peers.py) in a child process with oneDNN's ISA as the user
left it (the zoo's AVX2 cap is MindSpore's workaround, not PyTorch's), torch's
threads = MindSpore's runtime threads
interleaved with ours on the same batch, and batch-1 inference interleaved with
the checkpoint network and the ONNX export; ``--mindcv`` does the same for
MindCV's train step. Ratios > 1 mean the zoo is faster; "fp32 peak/PyTorch b1" is the most
any fp32 path computing every multiply-add could reach over PyTorch at batch 1 here.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Optional

import src  # noqa: F401  (CPU performance setup before MindSpore loads)
from src.cli import REPO_ROOT
from src.deploy.runner import fastest
from src.errors import ZooError
from src.utils.timing import interleaved_median_seconds

# Benchmark recipe per model: config, input size, batch (full and --quick).
BENCHMARKS = {
    "tinydarknet": {"config": "tinydarknet_imagenet.yaml", "size": 224, "batch": 32,
                    "quick_size": 64, "quick_batch": 2},
    "mobilenetv1": {"config": "mobilenetv1_imagenet.yaml", "size": 224, "batch": 32,
                    "quick_size": 64, "quick_batch": 2},
    "vgg16": {"config": "vgg16_imagenet.yaml", "size": 224, "batch": 8,
              "quick_size": 32, "quick_batch": 2},
    "yolov3_tiny": {"config": "yolov3_tiny_coco.yaml", "size": 416, "batch": 8,
                    "quick_size": 64, "quick_batch": 2},
}
DEMO_ROOT = os.path.join(REPO_ROOT, "demo_data")


# Batch-1 calls take 5-200 ms, and on a shared 2-core VM single calls of the same path vary 2-3x
# (Tiny-DarkNet on onnxruntime: 5.6-17 ms); a median of 3 flipped a ratio between runs by 1.5x.
# So batch 1 gets at least this many timed calls per path (except with --quick).
BATCH1_MIN_REPEATS = 21
# Inference paths timed, in table order: the checkpoint network, the MINDIR export on MindSpore,
# the ONNX export on onnxruntime and the same ONNX file on OpenCV DNN.
INFERENCE_PATHS = ("ckpt", "mindir", "onnx", "opencv")


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return interleaved_median_seconds([fn], repeats, warmup)[0]


def forward_flops(net, image_size) -> float:
    """Forward FLOPs per image (2 x multiply-adds of every Conv2d and Dense layer)."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from src import kernels

    total = [0.0]

    def conv_hook(cell, _inputs, output):
        kh, kw = cell.kernel_size
        out_elems = float(np.prod(output.shape[1:]))
        total[0] += 2.0 * out_elems * (cell.in_channels // cell.group) * kh * kw

    def dense_hook(cell, _inputs, output):
        total[0] += 2.0 * float(np.prod(output.shape[1:])) * cell.in_channels

    handles = []
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            handles.append(cell.register_forward_hook(conv_hook))
        elif isinstance(cell, nn.Dense):
            handles.append(cell.register_forward_hook(dense_hook))
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        net.set_train(False)
        # Standard operators: on the kernels a ConvBNAct at inference is one fused call that
        # never runs its Conv2d cell, so the hook would not see it.
        with kernels.standard_operators(net):
            net(ms.Tensor(np.zeros((1, 3, *image_size), np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        ms.set_context(mode=mode)
    return total[0]


def benchmark_config_source(name: str, size: int, batch: int, cpu_kernels: str = "auto"):
    """``(config path, overrides)`` of model ``name``'s benchmark recipe (see :func:`load_config`)."""
    from src.config import load_config

    path = os.path.join(REPO_ROOT, "config", BENCHMARKS[name]["config"])
    return path, [("device_target", "CPU"), ("image_size", [size, size]), ("batch_size", batch),
                  ("data.dir", os.path.join(DEMO_ROOT, load_config(path).dataset)),
                  ("detection.multi_scale", []), ("epochs", 1), ("lr.warmup_epochs", 0),
                  ("cpu_kernels", cpu_kernels)]


def benchmark_config(name: str, size: int, batch: int, cpu_kernels: str = "auto"):
    """``(cfg, task, RunContext)`` of model ``name``'s benchmark recipe on the demo data (CPU)."""
    import mindspore as ms

    from src.config import load_config
    from src.datasets.demo import ensure_demo_data
    from src.device import RunContext
    from src.registry import get_model_spec
    from src.tasks import get_task

    task = get_task(get_model_spec(name).task)
    cfg = load_config(*benchmark_config_source(name, size, batch, cpu_kernels))
    ensure_demo_data(DEMO_ROOT, cfg.dataset)
    ms.set_context(mode=ms.GRAPH_MODE)
    return cfg, task, RunContext("CPU", 0)


def benchmark_train_step(cfg, task, steps: int):
    """``(network, compiled train step)`` whose LR array lasts ``steps`` steps."""
    from src.engine import build_network, build_optimizer, learning_rates
    from src.train_step import build_train_step

    net = build_network(cfg)
    # The timed step repeats the same batch: the LR array must outlast the repeats.
    optimizer = build_optimizer(cfg, net, learning_rates(cfg, steps))
    return net, build_train_step(cfg, task.loss_network(cfg, net), optimizer)


def first_training_batch(cfg, task, ctx):
    """One batch of the real training pipeline as plain tensors; the pipeline is shut down."""
    import mindspore as ms

    dataset = task.train_dataset(cfg, ctx, seed=0)
    batch = next(dataset.create_tuple_iterator(num_epochs=1))
    return [ms.Tensor(column.asnumpy()) for column in batch]


# oneDNN primitive kinds of a train step, by the name profile_exec prints.
ONEDNN_KINDS = {"convolution": "conv", "deconvolution": "conv", "batch_normalization": "BatchNorm",
                "eltwise": "activation", "pooling": "pooling", "inner_product": "dense",
                "matmul": "dense", "reorder": "reorder (layout)", "binary": "elementwise",
                "sum": "elementwise", "softmax": "softmax", "reduction": "reduction",
                "gemm_api": "conv 1x1 as sgemm (src/kernels pointwise)"}


def profile_child(name: str, size: int, batch: int, steps: int, cpu_kernels: str) -> None:
    """Run ``steps`` timed train steps between markers on stdout (ONEDNN_VERBOSE is set by the parent)."""
    import ctypes

    cfg, task, ctx = benchmark_config(name, size, batch, cpu_kernels)
    first_batch = first_training_batch(cfg, task, ctx)
    _, step = benchmark_train_step(cfg, task, steps + 10)
    for _ in range(2):  # compile and warm up
        step(*first_batch)[0].asnumpy()
    libc = ctypes.CDLL(None)
    libc.fflush(None)
    os.write(1, b"@@start\n")
    start = time.perf_counter()
    for _ in range(steps):
        step(*first_batch)[0].asnumpy()
    seconds = time.perf_counter() - start
    libc.fflush(None)
    os.write(1, f"@@end {seconds / steps}\n".encode())


def _conv_shape(problem: str) -> str:
    """'depthwise', '1x1' or '3x3' (...) from a oneDNN convolution problem descriptor."""
    import re  # pylint: disable=import-outside-toplevel
    group = re.match(r"g(\d+)", problem)
    if group and int(group.group(1)) > 1:
        return "depthwise"
    kernel = re.search(r"kh(\d+)", problem)
    size = int(kernel.group(1)) if kernel else 1
    return f"{size}x{size}"


def parse_onednn_profile(lines, steps: int) -> dict:
    """ms per step by ``(category, oneDNN kind, propagation, kernel)`` from profile_exec lines."""
    totals = {}
    for line in lines:
        fields = line.strip().split(",")
        if "exec" not in fields or not fields[0].startswith(("onednn_verbose", "dnnl_verbose")):
            continue
        at = fields.index("exec")
        kind, kernel, propagation = fields[at + 2], fields[at + 3], fields[at + 4]
        try:
            ms_taken = float(fields[-1])
        except ValueError:
            continue
        category = ONEDNN_KINDS.get(kind, kind)
        if category == "conv":
            category = f"conv {_conv_shape(fields[-2])}"
        key = (category, kind, propagation, kernel)
        totals[key] = totals.get(key, 0.0) + ms_taken / steps
    return totals


def profile_model(name: str, size: int, batch: int, steps: int, cpu_kernels: str = "auto") -> dict:
    """Where a train step's time goes: oneDNN primitives by kind/kernel, and the rest.

    The steps run in a child process with ``ONEDNN_VERBOSE=profile_exec``
    (oneDNN prints every primitive's kernel and time); what oneDNN does not
    account for is MindSpore's own CPU kernels (optimizer update, loss,
    elementwise work MindSpore does itself) and the host-side launch overhead.
    """
    import subprocess  # pylint: disable=import-outside-toplevel
    env = dict(os.environ, ONEDNN_VERBOSE="profile_exec")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--profile_child",
                           f"{name},{size},{batch},{steps},{cpu_kernels}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False)
    lines = proc.stdout.splitlines()
    if proc.returncode or "@@start" not in lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: profiling {name} failed: {tail}")
    begin = lines.index("@@start")
    end = next(i for i, line in enumerate(lines) if line.startswith("@@end"))
    step_ms = float(lines[end].split()[1]) * 1000
    kernels = parse_onednn_profile(lines[begin + 1:end], steps)
    return {"model": name, "image_size": size, "batch": batch, "step_ms": step_ms,
            "kernels": [{"category": c, "kind": k, "propagation": p, "kernel": i, "ms": ms}
                        for (c, k, p, i), ms in sorted(kernels.items(), key=lambda kv: -kv[1])]}


def format_profile(profile) -> str:
    """Markdown: ms per step and share of the step by category, then the top kernels."""
    step_ms = profile["step_ms"]
    by_category = {}
    for k in profile["kernels"]:
        label = k["category"]
        if label.startswith("conv"):
            label += " " + k["propagation"].replace("_training", "").replace("_", " ")
        by_category[label] = by_category.get(label, 0.0) + k["ms"]
    onednn = sum(by_category.values())
    rows = sorted(by_category.items(), key=lambda kv: -kv[1])
    rows.append(("not oneDNN (MindSpore kernels, optimizer, loss, launch)", step_ms - onednn))
    lines = [f"{profile['model']} ({profile['image_size']}, batch {profile['batch']}): "
             f"{step_ms:.0f} ms per step", "", "| category | ms/step | share |", "|---|---|---|"]
    lines += [f"| {label} | {ms:.1f} | {100 * ms / step_ms:.1f} % |" for label, ms in rows]
    lines += ["", "| top oneDNN kernels | propagation | ms/step | share |", "|---|---|---|---|"]
    lines += [f"| {k['category']}: {k['kernel']} | {k['propagation']} | {k['ms']:.1f} | "
              f"{100 * k['ms'] / step_ms:.1f} % |" for k in profile["kernels"][:8]]
    return "\n".join(lines)


def benchmark_model(name: str, size: int, batch: int, repeats: int, workdir: str, rival=None,
                    peer=None, log=print, cpu_kernels: str = "auto",
                    batch1_repeats: Optional[int] = None):
    """All measurements for one model; returns a JSON-ready dict.

    ``batch1_repeats``: timed calls per path at batch 1 (default ``repeats``).

    ``cpu_kernels``: the config key for the zoo's network (src/kernels); the result's
    ``cpu_kernels`` says which were used (``zoo`` or ``mindspore``).

    ``rival``: another zoo's train step (a callable taking images and labels),
    timed interleaved with ours on the same batch; it adds
    ``mindcv_train_img_per_s`` and ``train_over_mindcv``.
    ``peer``: ``peer((config path, overrides), net, numpy batch)`` gives a
    :class:`~src.bench.pytorch_peers.PeerProcess`;
    its train step is timed interleaved with ours on the same batch, its batch-1
    inference with the checkpoint network's and the exports'; it adds
    ``pytorch_*_img_per_s`` and the ``*_over_pytorch`` ratios.
    """
    import mindspore as ms

    from src.export import ExportedModel, export_network, sample_input

    cfg, task, ctx = benchmark_config(name, size, batch, cpu_kernels)
    result = {"model": name, "image_size": size, "batch": batch}

    # Data pipeline: the real training pipeline, no model.
    dataset = task.train_dataset(cfg, ctx, seed=0)
    batches = dataset.get_dataset_size()
    iterator = dataset.create_tuple_iterator(num_epochs=1)
    first_batch = next(iterator)
    start, seen = time.perf_counter(), 0
    for _ in iterator:
        seen += 1
    elapsed = time.perf_counter() - start
    result["data_img_per_s"] = seen * batch / elapsed if seen else None
    # Keep the batch as plain tensors and shut the pipeline down: its threads
    # must not share the cores with the timed train steps.
    first_batch = [ms.Tensor(column.asnumpy()) for column in first_batch]
    del iterator, dataset
    result["data_batches"] = batches

    # Training step on one real batch, repeated.
    net, step = benchmark_train_step(cfg, task, max(batches, repeats + 10))
    start = time.perf_counter()
    step(*first_batch)
    result["train_compile_s"] = time.perf_counter() - start
    timed = {"ours": lambda: step(*first_batch)[0].asnumpy()}
    if rival:
        timed["mindcv"] = lambda: rival(*first_batch)  # the same batch for both
    result["cpu_kernels"] = ("zoo" if any(getattr(c, "zoo_kernel", False)
                                          for _, c in net.cells_and_names()) else "mindspore")
    peer_runner = (peer(benchmark_config_source(name, size, batch, cpu_kernels), net,
                        [column.asnumpy() for column in first_batch]) if peer else None)
    if peer_runner:
        timed["pytorch"] = peer_runner.train_step
    seconds = dict(zip(timed, interleaved_median_seconds(list(timed.values()), repeats)))
    result["train_img_per_s"] = batch / seconds["ours"]
    for other in ("mindcv", "pytorch"):
        if other in seconds:
            result[f"{other}_train_img_per_s"] = batch / seconds[other]
            result[f"train_over_{other}"] = seconds[other] / seconds["ours"]

    # Inference: checkpoint network and the two exports, at batch 1 and the benchmark batch.
    flops = forward_flops(net, (size, size))
    result["gflops_per_image"] = flops / 1e9
    deploy = task.export_network(cfg, net)
    deploy.set_train(False)
    for n in sorted({1, batch}):
        x = sample_input(n, (size, size))
        tensor = ms.Tensor(x)
        timed = {"ckpt": lambda: _sync(deploy(tensor))}
        for fmt in ("MINDIR", "ONNX"):
            path = export_network(deploy, os.path.join(workdir, f"{name}_b{n}"), fmt, n,
                                  (size, size), verify=False, log=lambda _: None)
            timed[fmt.lower()] = lambda runner=ExportedModel(path): runner(x)
        # The same ONNX file on OpenCV DNN (infer.py --onnx_runtime=opencv).
        timed["opencv"] = lambda runner=ExportedModel(path, onnx_runtime="opencv"): runner(x)
        if peer_runner and n == 1:
            peer_runner.set_image(x)
            timed["pytorch"] = peer_runner.infer
        calls = (batch1_repeats or repeats) if n == 1 else repeats
        seconds = dict(zip(timed, interleaved_median_seconds(list(timed.values()), calls)))
        result[f"infer_b{n}_repeats"] = calls
        for path_name in INFERENCE_PATHS:
            result[f"infer_{path_name}_b{n}_img_per_s"] = n / seconds[path_name]
        if n == 1:
            # The deploy path: the ONNX file on the runtime infer.py picks here (--onnx_runtime=auto).
            pick, _ = fastest({"onnxruntime": timed["onnx"], "opencv": timed["opencv"]})
            seconds["deploy"] = seconds["onnx" if pick == "onnxruntime" else "opencv"]
            result["infer_deploy_b1_runtime"] = pick
            result["infer_deploy_b1_img_per_s"] = 1 / seconds["deploy"]
        if "pytorch" in seconds:
            result["pytorch_infer_b1_img_per_s"] = 1 / seconds["pytorch"]
            for path_name in ("ckpt", "onnx", "opencv", "deploy"):
                result[f"infer_{path_name}_b1_over_pytorch"] = (seconds["pytorch"]
                                                                / seconds[path_name])
    if peer_runner:
        peer_runner.close()
    result["train_gflops_per_s"] = 3 * flops * result["train_img_per_s"] / 1e9
    result["infer_ckpt_gflops_per_s"] = flops * result[f"infer_ckpt_b{batch}_img_per_s"] / 1e9
    if result["data_img_per_s"]:
        result["data_over_train"] = result["data_img_per_s"] / result["train_img_per_s"]
    log(f"{name}: train {result['train_img_per_s']:.1f} img/s, "
        f"data {result['data_img_per_s'] or float('nan'):.1f} img/s")
    return result


MINDCV_NAMES = {"mobilenetv1": "mobilenet_v1_100", "vgg16": "vgg16"}


def mindcv_train_step(cfg, name: str):
    """A callable ``f(images, labels)`` running one train step of MindCV's network of
    the same name (``pip install mindcv==0.3.0``); None when MindCV has no such model.

    Same MindSpore, machine and oneDNN setting; the batch comes from the caller.
    The same recipe through MindCV's own factories: Momentum with the config's weight
    decay (not on biases/BN), cross entropy with the config's label smoothing,
    ``nn.TrainOneStepCell``.
    """
    if name not in MINDCV_NAMES:
        return None
    try:
        import mindcv  # pylint: disable=import-outside-toplevel
        from mindcv.loss import create_loss  # pylint: disable=import-outside-toplevel
        from mindcv.optim import create_optimizer  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise SystemExit("error: --mindcv needs MindCV: pip install --no-deps mindcv==0.3.0 tqdm")
    import mindspore as ms
    from mindspore import nn

    ms.set_context(mode=ms.GRAPH_MODE)
    net = mindcv.create_model(MINDCV_NAMES[name], num_classes=cfg.num_classes)
    loss = create_loss("CE", label_smoothing=cfg.loss.label_smoothing)
    opt = create_optimizer(net.trainable_params(), opt="momentum", lr=0.01,
                           weight_decay=cfg.optimizer.weight_decay,
                           momentum=cfg.optimizer.momentum, weight_decay_filter="norm_and_bias")
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    step.set_train()
    return lambda images, labels: step(images, labels).asnumpy()


def pytorch_peer():
    """``f(cfg, net)`` building the PyTorch peer of ``net``; a clear SystemExit without torch."""
    from src.bench import TORCH_MISSING  # pylint: disable=import-outside-toplevel
    try:
        import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        raise SystemExit(TORCH_MISSING) from None
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from src.bench.pytorch_peers import PeerProcess  # pylint: disable=import-outside-toplevel

    # Same thread count as MindSpore's CPU kernels, and the zoo's starting weights.
    return lambda source, net, batch: PeerProcess(source, ms.get_context("runtime_num_threads"),
                                                  net, batch)


def _sync(outputs):
    if isinstance(outputs, (tuple, list)):
        return [o.asnumpy() for o in outputs]
    return outputs.asnumpy()


COLUMNS = [("model", "model", "{}"), ("size", "image_size", "{}"), ("batch", "batch", "{}"),
           ("kernels", "cpu_kernels", "{}"),
           ("GFLOPs/img", "gflops_per_image", "{:.3f}"), ("train img/s", "train_img_per_s", "{:.1f}"),
           ("train GFLOP/s", "train_gflops_per_s", "{:.1f}"), ("compile s", "train_compile_s", "{:.1f}"),
           ("data img/s", "data_img_per_s", "{:.1f}"), ("data/train", "data_over_train", "{:.1f}x"),
           ("ckpt b1", "infer_ckpt_b1_img_per_s", "{:.1f}"), ("mindir b1", "infer_mindir_b1_img_per_s", "{:.1f}"),
           ("onnx b1", "infer_onnx_b1_img_per_s", "{:.1f}"),
           ("opencv b1", "infer_opencv_b1_img_per_s", "{:.1f}"),
           ("MindCV train img/s", "mindcv_train_img_per_s", "{:.1f}"),
           ("ours/MindCV", "train_over_mindcv", "{:.2f}x"),
           ("PyTorch train img/s", "pytorch_train_img_per_s", "{:.1f}"),
           ("ours/PyTorch", "train_over_pytorch", "{:.2f}x"),
           ("PyTorch b1", "pytorch_infer_b1_img_per_s", "{:.1f}"),
           ("ckpt b1/PyTorch", "infer_ckpt_b1_over_pytorch", "{:.2f}x"),
           ("onnx b1/PyTorch", "infer_onnx_b1_over_pytorch", "{:.2f}x"),
           ("opencv b1/PyTorch", "infer_opencv_b1_over_pytorch", "{:.2f}x"),
           ("deploy runtime", "infer_deploy_b1_runtime", "{}"),
           ("deploy b1/PyTorch", "infer_deploy_b1_over_pytorch", "{:.2f}x"),
           ("fp32 peak/PyTorch b1", "peak_over_pytorch_b1", "{:.2f}x")]


def format_table(results) -> str:
    """A Markdown table of the main numbers (img/s unless noted)."""
    lines = ["| " + " | ".join([title for title, _, _ in COLUMNS]
                               + [f"{path_name} bN" for path_name in INFERENCE_PATHS]) + " |",
             "|" + "---|" * (len(COLUMNS) + len(INFERENCE_PATHS))]
    for r in results:
        cells = [fmt.format(r[key]) if r.get(key) is not None else "-" for _, key, fmt in COLUMNS]
        n = r["batch"]
        cells += [f"{r.get(f'infer_{k}_b{n}_img_per_s', float('nan')):.1f}" for k in INFERENCE_PATHS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of this machine's fastest fp32 matrix product (numpy's BLAS, every core).

    A convolution computed directly does the same multiply-adds, so no fp32 path without
    fewer operations (Winograd) runs a network faster than its FLOPs at this speed.
    """
    import numpy as np
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    a @ a  # pylint: disable=pointless-statement  (warm-up: BLAS threads, page faults)
    fastest_seconds = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a  # pylint: disable=pointless-statement
        fastest_seconds = min(fastest_seconds, time.perf_counter() - start)
    return 2.0 * size ** 3 / fastest_seconds / 1e9


def with_peak_ratio(result: dict, peak_gflops: float) -> dict:
    """``result`` plus ``peak_over_pytorch_b1``: the most any fp32 path that computes every
    multiply-add can reach over PyTorch's batch-1 figure on this machine."""
    pytorch = result.get("pytorch_infer_b1_img_per_s")
    if pytorch:
        result["pytorch_infer_b1_gflops_per_s"] = result["gflops_per_image"] * pytorch
        result["peak_over_pytorch_b1"] = peak_gflops / result["pytorch_infer_b1_gflops_per_s"]
    return result


def environment() -> dict:
    """What the numbers were measured on."""
    import mindspore as ms
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"mindspore": ms.__version__, "cpu": cpu, "cores": os.cpu_count(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""),
            "python": platform.python_version()}


def check_arguments(args, names):
    """{model: (image side, batch)} after checking every argument; ZooError naming the bad one."""
    from src.config import MAX_BATCH, MAX_IMAGE_SIDE  # pylint: disable=import-outside-toplevel
    from src.errors import ConfigError  # pylint: disable=import-outside-toplevel
    from src.registry import get_model_spec  # pylint: disable=import-outside-toplevel
    if args.repeats is not None and not 1 <= args.repeats <= 1000:
        raise ConfigError(f"--repeats must be between 1 and 1000, got {args.repeats}")
    if args.batch_size is not None and not 1 <= args.batch_size <= MAX_BATCH:
        raise ConfigError(f"--batch_size must be between 1 and {MAX_BATCH}, got {args.batch_size}")
    if args.image_size is not None and not 16 <= args.image_size <= MAX_IMAGE_SIDE:
        raise ConfigError(f"--image_size must be between 16 and {MAX_IMAGE_SIDE}, "
                          f"got {args.image_size}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ConfigError(f"--json {args.json!r} cannot be written (is the folder {folder!r} "
                              f"there and writable?); pass another path")
    sizes = {}
    for name in names:
        recipe = BENCHMARKS[name]
        size = recipe["quick_size" if args.quick else "size"]
        size = size if args.image_size is None else args.image_size
        batch = recipe["quick_batch" if args.quick else "batch"]
        batch = batch if args.batch_size is None else args.batch_size
        try:
            get_model_spec(name).check_image_size([size, size])
        except ConfigError as exc:
            raise ConfigError(f"--image_size {size}: {exc}") from None
        sizes[name] = (size, batch)
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", help="model name or 'all'")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (CI)")
    parser.add_argument("--image_size", type=int, default=None, help="override the input size")
    parser.add_argument("--batch_size", type=int, default=None, help="override the batch")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats (default 5, quick 2; batch-1 inference at least "
                             f"{BATCH1_MIN_REPEATS} unless --quick)")
    parser.add_argument("--json", default="", help="also write the results as JSON here")
    parser.add_argument("--mindcv", action="store_true",
                        help="also time MindCV 0.3.0's mobilenet_v1_100 / vgg16 training step")
    parser.add_argument("--peer", choices=("pytorch",), default=None,
                        help="also time the same networks in PyTorch eager (needs torch)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: where a train step's time goes (oneDNN kernels and the rest)")
    parser.add_argument("--cpu_kernels", choices=("auto", "zoo", "mindspore"), default="auto",
                        help="the zoo's train step on its own CPU kernels (src/kernels) or on "
                             "MindSpore's operators, as the config key cpu_kernels")
    parser.add_argument("--profile_child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile_child:
        name, size, batch, steps, cpu_kernels = args.profile_child.split(",")
        profile_child(name, int(size), int(batch), int(steps), cpu_kernels)
        return 0
    names = list(BENCHMARKS) if args.model == "all" else [args.model]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; choose from {list(BENCHMARKS)} or all",
              file=sys.stderr)
        return 2
    try:
        sizes = check_arguments(args, names)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    peer = pytorch_peer() if args.peer == "pytorch" else None
    if args.profile:
        profiles = []
        for name in names:
            size, batch = sizes[name]
            profiles.append(profile_model(name, size, batch, args.repeats or (1 if args.quick else 3),
                                          args.cpu_kernels))
            print(format_profile(profiles[-1]), flush=True)
        if args.json:
            from src.utils.io import atomic_write_text  # pylint: disable=import-outside-toplevel
            atomic_write_text(args.json, json.dumps({"environment": environment(),
                                                     "profiles": profiles}, indent=2))
        return 0
    from src.config import load_config  # pylint: disable=import-outside-toplevel
    peak_gflops = matmul_peak_gflops()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            recipe = BENCHMARKS[name]
            size, batch = sizes[name]
            rival = None
            if args.mindcv:
                recipe_cfg = load_config(os.path.join(REPO_ROOT, "config", recipe["config"]))
                rival = mindcv_train_step(recipe_cfg, name)
            results.append(benchmark_model(
                name, size, batch, repeats, workdir, rival=rival, peer=peer,
                cpu_kernels=args.cpu_kernels,
                batch1_repeats=repeats if args.quick else max(repeats, BATCH1_MIN_REPEATS)))
            with_peak_ratio(results[-1], peak_gflops)
    report = {"environment": dict(environment(), fp32_matmul_gflops=peak_gflops),
              "results": results}
    print(format_table(results))
    print(json.dumps(report["environment"]))
    if args.json:
        from src.utils.io import atomic_write_text
        atomic_write_text(args.json, json.dumps(report, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

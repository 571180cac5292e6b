"""The zoo's CPU kernels (src/kernels): same results as MindSpore's operators, forward and
backward; exports hold only standard operators; clear failures when they cannot be built."""
import ctypes
import glob
import os
import shutil
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import src  # noqa: F401  (sets the oneDNN environment before MindSpore loads)
import mindspore as ms
from mindspore import Tensor, nn, ops

from src import kernels
from src.errors import ConfigError
from src.kernels import build, cells
from src.registry import list_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kernels_or_skip():
    try:
        kernels.load()
    except build.KernelBuildError as exc:
        pytest.skip(f"the zoo's CPU kernels cannot be built here: {exc}")


@pytest.fixture
def zoo_kernels():
    """Layers built inside the test use the zoo's kernels; the previous state is restored."""
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    _kernels_or_skip()
    assert kernels.available("zoo", "CPU", "O0", 2)
    with kernels.layers_use_kernels(True):
        yield


class SquaredSum(nn.Cell):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def construct(self, x):
        return (self.layer(x) ** 2).sum()


def _run(layer, x, make_loss=SquaredSum):
    """Eval-mode output; train-mode input and parameter gradients of ``make_loss(layer)``."""
    layer.set_train(True)
    net = make_loss(layer)
    net.set_train(True)
    _, (dx, dparams) = ms.value_and_grad(net, 0, net.trainable_params())(x)
    layer.set_train(False)
    y_eval = layer(x).asnumpy()
    layer.set_train(True)
    return [y_eval, dx.asnumpy()] + [d.asnumpy() for d in dparams]


def _pair_of_layers(make):
    """The same layer twice: on MindSpore's operators and on the zoo's kernels, equal weights."""
    with kernels.layers_use_kernels(False):
        standard = make()
    zoo = make()
    assert not getattr(standard, "zoo_kernel") and zoo.zoo_kernel
    for a, b in zip(standard.trainable_params(), zoo.trainable_params()):
        assert a.name == b.name
        b.set_data(a.data)
    return standard, zoo


CONVS = {
    "3x3 same": (lambda: cells.Conv2d(6, 8, 3, pad_mode="same"), (2, 6, 9, 9)),
    "3x3 same stride 2, even size (pad bottom/right only)": (
        lambda: cells.Conv2d(6, 8, 3, stride=2, pad_mode="same"), (2, 6, 10, 10)),
    "3x3 pad 1 stride 2, bias": (
        lambda: cells.Conv2d(6, 8, 3, stride=2, pad_mode="pad", padding=1, has_bias=True),
        (2, 6, 11, 11)),
    "asymmetric explicit padding": (
        lambda: cells.Conv2d(6, 8, 3, pad_mode="pad", padding=(0, 2, 1, 0)), (1, 6, 7, 8)),
    "depthwise 3x3": (lambda: cells.Conv2d(8, 8, 3, pad_mode="pad", padding=1, group=8),
                      (2, 8, 9, 9)),
    "grouped 1x1": (lambda: cells.Conv2d(8, 12, 1, group=4), (2, 8, 5, 5)),
    "1x1 valid, bias (pointwise: a matrix product per image)": (
        lambda: cells.Conv2d(8, 16, 1, pad_mode="valid", has_bias=True), (3, 8, 5, 7)),
    "1x1 same (pointwise)": (lambda: cells.Conv2d(8, 16, 1, pad_mode="same"), (2, 8, 6, 6)),
    "1x1 stride 2 (not pointwise)": (lambda: cells.Conv2d(8, 16, 1, stride=2), (2, 8, 7, 7)),
}
POINTWISE = {"1x1 valid, bias (pointwise: a matrix product per image)", "1x1 same (pointwise)"}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_convolution_matches_mindspore_forward_and_backward(case, zoo_kernels):
    make, shape = CONVS[case]
    standard, zoo = _pair_of_layers(make)
    assert zoo.pointwise == (case in POINTWISE)
    x = Tensor(np.random.RandomState(1).randn(*shape).astype(np.float32))
    for want, got in zip(_run(standard, x), _run(zoo, x)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


POOLS = {
    "2x2 stride 2 same (Tiny-DarkNet)": (lambda: cells.MaxPool2d(2, 2, pad_mode="same"),
                                         (2, 3, 8, 8)),
    "2x2 stride 1 same (YOLOv3-Tiny: pads bottom/right)": (
        lambda: cells.MaxPool2d(2, 1, pad_mode="same"), (2, 3, 7, 7)),
    "2x2 stride 2 valid, odd size (VGG16, YOLOv3-Tiny)": (
        lambda: cells.MaxPool2d(2, 2, pad_mode="valid"), (2, 3, 9, 9)),
    "3x3 stride 2 same": (lambda: cells.MaxPool2d(3, 2, pad_mode="same"), (1, 2, 9, 10)),
}


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", sorted(POOLS))
def test_max_pooling_matches_mindspore_exactly(case, ties, zoo_kernels):
    """Bit-equal, gradient included: with ties (flat image regions) the gradient goes to the
    same element of the window as in MindSpore, since both keep oneDNN's record of it."""
    make, shape = POOLS[case]
    standard, zoo = _pair_of_layers(make)
    rng = np.random.RandomState(2)
    data = rng.randint(0, 3, shape) if ties else rng.randn(*shape)
    x = Tensor(data.astype(np.float32))
    for want, got in zip(_run(standard, x), _run(zoo, x)):
        np.testing.assert_array_equal(got, want)


def test_leaky_relu_matches_mindspore(zoo_kernels):
    standard, zoo = _pair_of_layers(lambda: cells.LeakyReLU(0.1))
    x = Tensor(np.random.RandomState(3).randn(2, 3, 5, 5).astype(np.float32))
    for want, got in zip(_run(standard, x), _run(zoo, x)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_dense_matches_mindspore(bias, zoo_kernels):
    standard, zoo = _pair_of_layers(lambda: cells.Dense(37, 11, has_bias=bias,
                                                        bias_init="normal"))
    x = Tensor(np.random.RandomState(4).randn(3, 37).astype(np.float32))
    results = list(zip(_run(standard, x), _run(zoo, x)))
    assert len(results) == 3 + bias  # eval output, dx, dw (, db)
    for want, got in results:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_a_model_built_by_the_engine_uses_them_and_exports_standard_operators(tmp_path):
    """build_network follows cpu_kernels; ONNX and MINDIR exports hold no custom operator and
    agree with the network running on the kernels."""
    _kernels_or_skip()
    import onnx

    from src.config import load_config
    from src.engine import build_network
    from src.export import ExportedModel, export_network, sample_input

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_config(os.path.join(REPO, "config", "yolov3_tiny_coco.yaml"),
                      [("device_target", "CPU"), ("image_size", [64, 64]), ("num_classes", 3)])
    for mode, expect in (("mindspore", False), ("zoo", True), ("auto", True)):
        net = build_network(cfg.replace(cpu_kernels=mode))
        used = {type(c).__name__ for _, c in net.cells_and_names() if getattr(c, "zoo_kernel", 0)}
        assert used == ({"Conv2d", "MaxPool2d", "BatchNorm2d", "LeakyReLU"} if expect else set()), mode
    assert not build_network(cfg.replace(amp_level="O2")).backbone.downsample[0].zoo_kernel
    batch = sample_input(1, (64, 64), seed=4)
    net.set_train(False)
    expected = [o.asnumpy() for o in net(Tensor(batch))]
    for file_format in ("ONNX", "MINDIR"):
        path = export_network(net, str(tmp_path / "yolo"), file_format, 1, (64, 64),
                              log=lambda _: None)
        if file_format == "ONNX":
            ops = [n.op_type for n in onnx.load(path).graph.node]
            assert not set(ops) & {"Custom", "ZooConv2D", "Max"}, ops
            assert ops.count("LeakyRelu") == 11  # every LeakyReLU one node (onnx_compat)
        for want, got in zip(expected, ExportedModel(path)(batch)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert net.backbone.downsample[0].zoo_kernel  # the network itself still runs on the kernels


def test_their_onednn_is_a_separate_copy_with_the_full_isa():
    """MindSpore's bundled oneDNN (3.10, capped at AVX2) and the kernels' (the wheel's) coexist."""
    _kernels_or_skip()
    handle = ctypes.CDLL(kernels.load())
    assert handle.ZooOnednnVersion() // 100 == 302  # the onednn-cpu-gomp 2023.2 wheel
    libraries = [line.split()[-1] for line in open("/proc/self/maps", encoding="utf-8")
                 if "dnnl" in line]
    assert any(path.endswith("mindspore/lib/libdnnl.so.3") for path in libraries)
    assert any(path.endswith(build.ONEDNN_COPY) for path in libraries)


def test_set_soname_rewrites_only_the_name(tmp_path):
    _kernels_or_skip()
    copy = tmp_path / "lib.so"
    shutil.copy(os.path.join(os.path.dirname(kernels.load()), build.ONEDNN_COPY), copy)
    size = copy.stat().st_size
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is needed to read the soname back")
    build.set_soname(str(copy), "libq.so")
    out = subprocess.run([readelf, "-d", str(copy)], capture_output=True, text=True).stdout
    assert "Library soname: [libq.so]" in out
    assert copy.stat().st_size == size
    with pytest.raises(build.KernelBuildError, match="longer"):
        build.set_soname(str(copy), "libmuchlongername.so")


def _configure_in_child(mode: str, env: dict) -> subprocess.CompletedProcess:
    code = ("import src, sys\nfrom src import kernels\nfrom src.errors import ConfigError\n"
            f"try:\n    print('active', kernels.available({mode!r}, 'CPU', 'O0'))\n"
            "except ConfigError as e:\n    print('error:', e, file=sys.stderr); sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)


def test_without_a_compiler_auto_falls_back_with_a_note_and_zoo_fails_clearly(tmp_path):
    env = {"CXX": "no-such-compiler", build.CACHE_VARIABLE: str(tmp_path / "cache")}
    auto = _configure_in_child("auto", env)
    assert auto.returncode == 0 and "active False" in auto.stdout
    assert "note: using MindSpore's CPU operators (slower): no C++ compiler (no-such-compiler)" \
        in auto.stderr
    strict = _configure_in_child("zoo", env)
    assert strict.returncode == 2
    assert ("error: cpu_kernels=zoo, but the zoo's CPU kernels cannot be used: no C++ compiler"
            in strict.stderr)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_unwritable_cache_says_how_to_fix_it_and_a_damaged_one_is_rebuilt(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    unwritable = _configure_in_child("auto", {build.CACHE_VARIABLE: str(blocker / "cache")})
    assert unwritable.returncode == 0 and "active False" in unwritable.stdout
    assert f"set {build.CACHE_VARIABLE} to a writable folder" in unwritable.stderr
    _kernels_or_skip()
    cache = tmp_path / "cache"
    built = _configure_in_child("auto", {build.CACHE_VARIABLE: str(cache)})
    assert "active True" in built.stdout, built.stderr
    library = next(cache.glob(f"*/{build.LIBRARY_NAME}"))
    whole = library.read_bytes()
    library.write_bytes(whole[:4096])  # truncated, e.g. a full disk: loading it would crash
    assert not build.is_whole_elf(str(library))
    rebuilt = _configure_in_child("auto", {build.CACHE_VARIABLE: str(cache)})
    assert "active True" in rebuilt.stdout, rebuilt.stderr
    assert build.is_whole_elf(str(library)) and library.stat().st_size == len(whole)


def test_not_cpu_or_not_float32_means_mindspore_operators():
    assert not kernels.available("auto", "GPU", "O0")
    assert not kernels.available("auto", "CPU", "O2")
    with pytest.raises(ConfigError, match="amp_level is O2"):
        kernels.available("zoo", "CPU", "O2")
    with pytest.raises(ConfigError, match="invalid cpu_kernels"):
        kernels.available("fast", "CPU", "O0")


def test_layers_outside_the_engine_are_mindspores():
    """create_model (mindspore_hub_conf) gives standard layers, whatever was built before."""
    _kernels_or_skip()
    from src.registry import create_model

    with kernels.layers_use_kernels(True):
        assert create_model("tinydarknet", 10, image_size=(32, 32)).features[0].conv.zoo_kernel
    assert not create_model("tinydarknet", 10, image_size=(32, 32)).features[0].conv.zoo_kernel


def test_concurrent_first_builds_agree(tmp_path):
    """Data-parallel workers build at the same time: both succeed and share one library."""
    _kernels_or_skip()
    code = "from src.kernels import build; print(build.build_library())"
    env = dict(os.environ, **{build.CACHE_VARIABLE: str(tmp_path)})
    children = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE) for _ in range(2)]
    paths = [child.communicate(timeout=300)[0].strip() for child in children]
    assert all(child.returncode == 0 for child in children)
    assert paths[0] == paths[1] and os.path.isfile(paths[0])
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(os.path.dirname(paths[0]))]


def _call_kernel(name, inputs, output_shape):
    """Call an entry point of the kernel library directly (MindSpore's AOT signature) on this
    Python thread; returns the float32 output."""
    handle = ctypes.CDLL(kernels.load())
    output = np.zeros(output_shape, np.float32)
    arrays = [np.ascontiguousarray(a) for a in inputs] + [output]
    shapes = [(ctypes.c_int64 * max(a.ndim, 1))(*(a.shape or (1,))) for a in arrays]
    count = len(arrays)
    status = getattr(handle, name)(
        count, (ctypes.c_void_p * count)(*[a.ctypes.data for a in arrays]),
        (ctypes.c_int * count)(*[a.ndim for a in arrays]),
        (ctypes.POINTER(ctypes.c_int64) * count)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64))
                                                  for s in shapes]),
        (ctypes.c_char_p * count)(*[str(a.dtype).encode() for a in arrays]), None, None)
    assert status == 0
    return output


def test_a_primitive_is_only_run_with_the_thread_count_it_was_made_for(zoo_kernels):
    """oneDNN plans a primitive's work split and per-thread buffers for the OpenMP thread count
    at its creation, and that count is per calling thread (PyTorch shares this OpenMP runtime:
    torch.set_num_threads(1) changes it on its thread only). A thread with another count gets
    its own primitive, with the same result."""
    handle = ctypes.CDLL(kernels.load())
    rng = np.random.RandomState(5)
    x, w = rng.randn(2, 8, 13, 13).astype(np.float32), rng.randn(16, 8, 3, 3).astype(np.float32)
    dy = rng.randn(2, 16, 13, 13).astype(np.float32)
    geometry = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0], np.int64)  # stride 1, same, plain
    key = "conv 2,8,13,13,16,8,3,3,"
    results = []
    try:
        for threads in (1, 2):
            handle.ZooSetThreads(threads)
            results.append(_call_kernel("ZooConv2DBackpropFilter", [x, w, dy, geometry], w.shape))
    finally:
        handle.ZooSetThreads(2)
    made = [line for line in kernels.implementations().splitlines() if line.startswith(key)]
    assert sorted(line.split("threads=")[1].split()[0] for line in made) == ["1", "2"], made
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)
    want = np.einsum("nchw,nkhw->kc", x, dy)  # the centre tap of each 3x3 filter
    np.testing.assert_allclose(results[0][:, :, 1, 1], want, rtol=1e-4, atol=1e-3)


CROSS_THREAD = """
import ctypes, sys
import numpy as np
import src  # noqa: F401
import mindspore as ms
from mindspore import Tensor
from src import kernels
from src.config import load_config
from src.engine import build_network
from tests.test_kernels import SquaredSum

ms.set_device("CPU")
cfg = load_config("config/mobilenetv1_imagenet.yaml", [("image_size", [64, 64]), ("num_classes", 10)])
net = build_network(cfg)
ctypes.CDLL(kernels.load()).ZooUseKernelThread(int(sys.argv[1]))
x = Tensor(np.random.RandomState(0).randn(2, 3, 64, 64).astype(np.float32))
ms.set_context(mode=ms.PYNATIVE_MODE)
net.set_train(True)
net(x)  # the primitives are made on PyNative's launch thread
ms.set_context(mode=ms.GRAPH_MODE)  # ... and run on graph mode's actor thread
loss = SquaredSum(net)
loss.set_train(True)
value, grads = ms.value_and_grad(loss, None, net.trainable_params())(x)
assert np.isfinite(value.asnumpy()) and all(np.isfinite(g.asnumpy()).all() for g in grads)
print("ran on both threads")
"""


@pytest.mark.parametrize("kernel_thread", [0, 1], ids=["callers' threads", "kernel thread"])
def test_a_primitive_made_on_one_thread_runs_on_another(kernel_thread, tmp_path):
    """MindSpore calls the kernels from different threads (PyNative's launch thread, graph
    mode's actor threads), which share the cached primitives. With oneDNN's own scratchpad, a
    primitive made on one thread and run on another wrote past that thread's buffer: MobileNetV1
    in PyNative then graph mode crashed with a segmentation fault (in the test suite, a test
    after the PyTorch peer's). The kernels now run on a thread of their own; with that switched
    off (ZooUseKernelThread(0)) the primitives still run on every caller's thread. Run in a child
    process, so that a regression fails this test instead of killing the run."""
    _kernels_or_skip()
    script = tmp_path / "cross_thread.py"  # a file: graph mode reads the Cell's source
    script.write_text(CROSS_THREAD)
    proc = subprocess.run([sys.executable, str(script), str(kernel_thread)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0 and "ran on both threads" in proc.stdout, (proc.returncode,
                                                                            proc.stderr[-2000:])


def test_every_call_runs_on_the_kernels_own_thread_whichever_thread_makes_it(zoo_kernels):
    """One thread starts every OpenMP parallel region, so libgomp keeps one pool of workers
    (see KernelThread in zoo_kernels.cc); switched off, a call runs on its caller's thread."""
    handle = ctypes.CDLL(kernels.load())
    seen = {}

    def call(name):
        seen[name] = (threading.get_native_id(), handle.ZooWhereKernelsRun())

    call("main")
    other = threading.Thread(target=call, args=("other",))
    other.start()
    other.join()
    (main, ran_for_main), (other_id, ran_for_other) = seen["main"], seen["other"]
    assert ran_for_main == ran_for_other and ran_for_main not in (main, other_id)
    with open(f"/proc/self/task/{ran_for_main}/comm", encoding="utf-8") as f:
        assert f.read().strip() == "zoo_kernels"
    previous = handle.ZooUseKernelThread(0)
    try:
        assert handle.ZooWhereKernelsRun() == threading.get_native_id()
    finally:
        handle.ZooUseKernelThread(previous)


def test_every_entry_point_goes_through_the_kernel_thread():
    """Each MindSpore entry point (AOT signature) runs its body through guarded() (or product(),
    which does): one that did not would start a second OpenMP pool from MindSpore's thread."""
    with open(build.SOURCE, encoding="utf-8") as f:
        source = f.read()
    bodies = re.findall(r"^int (Zoo\w+)\(int nparam, void \*\*params[^{]*\{\n(.*?)^\}$", source,
                        re.M | re.S)
    assert len(bodies) >= 20
    first_returns = {name: re.search(r"\breturn (\w+)", body) for name, body in bodies}
    unrouted = [name for name, found in first_returns.items()
                if not found or found.group(1) not in ("guarded", "product")]
    assert unrouted == []


SPIN = """
import os, threading
import numpy as np
import src  # noqa: F401
import mindspore as ms
from mindspore import Tensor
from src.config import load_config
from src import kernels
from src.engine import build_network
from src.layers import ConvBNAct

ms.set_device("CPU")
ms.set_context(mode=ms.GRAPH_MODE)
cfg = load_config("config/mobilenetv1_imagenet.yaml", [("image_size", [64, 64]), ("num_classes", 10)])
net = build_network(cfg)
net.set_train(False)
x = Tensor(np.random.RandomState(0).randn(1, 3, 64, 64).astype(np.float32))
for _ in range(3):  # the first run calls the kernels from an actor thread, later ones from this one
    net(x).asnumpy()


def sleeps():
    found = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/self/task/{tid}/status") as f:
            status = f.read()
        found[tid] = (name, int(status.split("\\nvoluntary_ctxt_switches:")[1].split()[0]))
    return found


before, runs = sleeps(), 20
for _ in range(runs):
    net(x).asnumpy()
after = sleeps()
kernel_thread = str(__import__("ctypes").CDLL(kernels.load()).ZooWhereKernelsRun())
workers = [after[t][1] - before[t][1] for t in after
           if t in before and after[t][0] == "zoo_kernels" and t != kernel_thread]
layers = sum(1 for _, cell in net.cells_and_names() if isinstance(cell, ConvBNAct))
print("workers", len(workers), "sleeps per run", max(workers) / runs if workers else -1, "layers", layers)
"""


def test_the_kernels_openmp_worker_stays_awake_between_the_layers_of_a_network(tmp_path):
    """With one OpenMP pool and the zoo's GOMP_SPINCOUNT, the worker spins from one parallel
    region to the next instead of sleeping after each: before, it slept (and had to be woken)
    about once per region, 40 times per batch-1 YOLOv3-Tiny inference, which after an idle pause
    made inference up to 1.8x slower. Run in a child process with the zoo's own OpenMP settings."""
    _kernels_or_skip()
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: the kernels run without OpenMP workers")
    script = tmp_path / "spin.py"
    script.write_text(SPIN)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "ZOO_CPU_ENV_SET")}
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(env, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    workers, per_run, layers = int(words[1]), float(words[5]), int(words[7])
    assert workers >= 1 and layers >= 20
    assert per_run < layers / 4, proc.stdout


def test_best_iou_is_bit_equal_to_the_yolo_loss_arithmetic(zoo_kernels):
    """The ignore mask's IoU on the kernel equals the MindSpore version, padding rows and an
    exact match included, and passes no gradient."""
    from src.yolov3_tiny.loss import best_iou_with_ground_truth

    rng = np.random.RandomState(6)
    pred = rng.uniform(0.01, 0.9, (2, 5, 4, 3, 4)).astype(np.float32)
    gt = rng.uniform(0.01, 0.9, (2, 7, 4)).astype(np.float32)
    gt[1, 3:] = 0.0
    gt[0, 2] = pred[0, 4, 1, 2]
    got = cells.BestIoU()(Tensor(pred), Tensor(gt)).asnumpy()
    want = best_iou_with_ground_truth(Tensor(pred), Tensor(gt)).asnumpy()
    assert got.shape == (2, 5, 4, 3, 1)
    np.testing.assert_array_equal(got, want)
    assert abs(got[0, 4, 1, 2, 0] - 1.0) < 1e-4  # eps 1e-6 over a small union

    class Masked(nn.Cell):
        def __init__(self):
            super().__init__()
            self.iou = cells.BestIoU()

        def construct(self, boxes, truth):
            return (self.iou(boxes, truth) * boxes[..., :1]).sum()

    grad = ms.grad(Masked(), grad_position=0)(Tensor(pred), Tensor(gt)).asnumpy()
    np.testing.assert_array_equal(grad[..., 1:], 0)  # only through the multiplier


def _to_blocked(a, block):
    """NCHW -> oneDNN's nChw<block>c, kept in an array of the NCHW shape (as MindSpore holds it)."""
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2)
                                ).reshape(a.shape)


def _from_blocked(a, block):
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // block, h, w, block).transpose(0, 1, 4, 2, 3)
                                ).reshape(a.shape)


BLOCKED = {
    "conv 3x3 pad, blocked in and out": (lambda: cells.Conv2d(32, 32, 3, pad_mode="pad", padding=1),
                                         (2, 32, 9, 9), (True, True)),
    "conv 3x3 stride 2 same, plain in (first layer), blocked out": (
        lambda: cells.Conv2d(3, 16, 3, stride=2, pad_mode="same"), (2, 3, 10, 10), (False, True)),
    "conv 3x3, blocked in, plain out (last of a run)": (
        lambda: cells.Conv2d(16, 8, 3, pad_mode="same"), (1, 16, 7, 7), (True, False)),
    "max pool 2x2/2 valid, odd size, ties": (lambda: cells.MaxPool2d(2, 2), (2, 32, 9, 9), True),
    "max pool 2x2/1 same, ties": (lambda: cells.MaxPool2d(2, 1, pad_mode="same"), (1, 16, 6, 7),
                                  True),
    "conv 1x1 (not as sgemm: the primitive reads the blocked layout)": (
        lambda: cells.Conv2d(32, 16, 1), (2, 32, 5, 5), (True, True)),
    "depthwise 3x3 stride 2 same": (
        lambda: cells.Conv2d(32, 32, 3, stride=2, pad_mode="same", group=32), (2, 32, 8, 8),
        (True, True)),
    "BatchNorm": (lambda: cells.BatchNorm2d(32, eps=1e-3, momentum=0.9), (2, 32, 5, 5), True),
    "BatchNorm, 1x1 maps": (lambda: cells.BatchNorm2d(16), (4, 16, 1, 1), True),
}


class Projection(nn.Cell):
    """sum(layer(x) * weights): a loss whose gradient is well defined for every layer
    (a sum of squares is flat through BatchNorm)."""

    def __init__(self, layer, weights):
        super().__init__()
        self.layer = layer
        self.weights = weights

    def construct(self, x):
        return (self.layer(x) * self.weights).sum()


@pytest.mark.parametrize("case", sorted(BLOCKED))
def test_layers_reading_and_writing_the_blocked_layout_match_mindspore(case, zoo_kernels):
    """A layer told its input and/or output hold oneDNN's blocked layout computes the same as
    MindSpore's operator on NCHW (max pooling's output bit-equal, ties included), forward and
    backward; BatchNorm's moving statistics too."""
    make, shape, layout = BLOCKED[case]
    block = kernels.activation_block()
    if not block:
        pytest.skip("oneDNN picks no blocked activation layout on this CPU")
    standard, zoo = _pair_of_layers(make)
    layout = layout if isinstance(layout, tuple) else (layout, layout)
    out_channels = getattr(standard, "out_channels", shape[1])
    if (layout[0] and shape[1] % block) or (layout[1] and out_channels % block):
        pytest.skip(f"channels are not a multiple of this CPU's block ({block})")
    zoo.set_layout(*layout) if isinstance(zoo, cells.Conv2d) else zoo.set_layout(layout[0])
    rng = np.random.RandomState(7)
    pooling = isinstance(zoo, cells.MaxPool2d)
    data = (rng.randint(0, 3, shape) if pooling else rng.randn(*shape) * 2 + 1).astype(np.float32)
    standard.set_train(False)
    weights = rng.randn(*standard(Tensor(data)).shape).astype(np.float32)
    want = _run(standard, Tensor(data), lambda layer: Projection(layer, Tensor(weights)))
    blocked_weights = Tensor(_to_blocked(weights, block) if layout[1] else weights)
    got = _run(zoo, Tensor(_to_blocked(data, block) if layout[0] else data),
               lambda layer: Projection(layer, blocked_weights))
    got[0] = _from_blocked(got[0], block) if layout[1] else got[0]
    got[1] = _from_blocked(got[1], block) if layout[0] else got[1]
    if isinstance(zoo, cells.BatchNorm2d):
        want += [standard.moving_mean.asnumpy(), standard.moving_variance.asnumpy()]
        got += [zoo.moving_mean.asnumpy(), zoo.moving_variance.asnumpy()]
        assert not np.allclose(want[-2], 0)  # the train-mode passes moved the statistics
    for index, (w, g) in enumerate(zip(want, got)):
        assert g.shape == w.shape
        if pooling and index == 0:
            np.testing.assert_array_equal(g, w)
        elif pooling:  # where the maxima were is exact; overlapping windows add in another order
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6 * np.abs(w).max())
        else:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


FUSED = {
    # name: (ConvBNAct options, input shape, (x_blocked, y_blocked))
    "3x3, BatchNorm, relu6, blocked in and out": (
        dict(out_channels=32, activation="relu6", bn_eps=1e-3), (1, 32, 9, 9), (True, True)),
    "depthwise 3x3 stride 2, BatchNorm, relu6, blocked": (
        dict(out_channels=32, stride=2, groups=32, activation="relu6"), (2, 32, 8, 8),
        (True, True)),
    "3x3, BatchNorm, leaky_relu 0.1, plain in, blocked out": (
        dict(out_channels=16, activation="leaky_relu", leaky_alpha=0.1), (1, 3, 10, 10),
        (False, True)),
    "1x1, BatchNorm, relu, blocked in, plain out": (
        dict(out_channels=16, kernel_size=1, activation="relu"), (2, 32, 5, 5), (True, False)),
    "3x3 pad, no BatchNorm, relu, plain": (
        dict(out_channels=8, pad_mode="pad", batch_norm=False, activation="relu"),
        (1, 5, 7, 7), (False, False)),
    "3x3, BatchNorm, no activation, plain": (
        dict(out_channels=8, activation="none"), (1, 16, 6, 6), (False, False)),
}


@pytest.mark.parametrize("case", sorted(FUSED))
def test_conv_batchnorm_activation_runs_as_one_kernel_at_inference(case, zoo_kernels):
    """At inference a ConvBNAct on the kernels is one fused convolution (BatchNorm's moving
    statistics folded in, the activation a post-op) that equals the three layers on MindSpore's
    operators; training still gets the separate layers, gradients included."""
    from src.layers import ConvBNAct

    options, shape, layout = FUSED[case]
    options = dict(options)
    block = kernels.activation_block()
    out_channels = options.pop("out_channels")
    if any(layout) and (not block or (layout[0] and shape[1] % block)
                        or (layout[1] and out_channels % block)):
        pytest.skip(f"channels are not a multiple of this CPU's block ({block})")
    kernel = options.pop("kernel_size", 3)
    make = lambda: ConvBNAct(shape[1], out_channels, kernel, **options)  # noqa: E731
    with kernels.layers_use_kernels(False):
        standard = make()
    zoo = make()
    assert zoo.use_fused and not standard.use_fused
    rng = np.random.RandomState(3)
    for a, b in zip(standard.get_parameters(), zoo.get_parameters()):
        value = rng.uniform(0.5, 2.0, a.shape) if "variance" in a.name else rng.randn(*a.shape)
        a.set_data(Tensor(value.astype(np.float32)))
        b.set_data(Tensor(value.astype(np.float32)))
    zoo.set_layout(*layout)
    data = (rng.randn(*shape) * 2).astype(np.float32)
    standard.set_train(False)
    zoo.set_train(False)
    before = kernels.implementations().count("fused conv")
    want = standard(Tensor(data)).asnumpy()
    got = zoo(Tensor(_to_blocked(data, block) if layout[0] else data)).asnumpy()
    got = _from_blocked(got, block) if layout[1] else got
    assert kernels.implementations().count("fused conv") == before + 1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    if options.get("activation") == "relu6":
        assert want.max() == 6.0 and want.min() == 0.0  # the clip's both ends are exercised
    weights = rng.randn(*want.shape).astype(np.float32)
    grads = [_run(layer, Tensor(x), lambda cell, w=w: Projection(cell, Tensor(w)))[1:]
             for layer, x, w in ((standard, data, weights),
                                 (zoo, _to_blocked(data, block) if layout[0] else data,
                                  _to_blocked(weights, block) if layout[1] else weights))]
    grads[1][0] = _from_blocked(grads[1][0], block) if layout[0] else grads[1][0]
    for w, g in zip(*grads):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_fused_inference_leaves_batch_statistics_and_biases_to_the_separate_layers(zoo_kernels):
    """Where folding would change the result or is not covered, the layers stay separate."""
    from src.layers import ConvBNAct

    assert not ConvBNAct(8, 8, 3, has_bias=True).use_fused
    assert not ConvBNAct(8, 8, 3, batch_norm=False, has_bias=True, activation="none").use_fused
    with kernels.layers_use_kernels(False):
        assert not ConvBNAct(8, 8, 3).use_fused
        standard = ConvBNAct(8, 8, 3)
    zoo = ConvBNAct(8, 8, 3)
    assert zoo.use_fused
    for a, b in zip(standard.get_parameters(), zoo.get_parameters()):
        b.set_data(a.data.copy())
    x = Tensor(np.random.RandomState(4).randn(2, 8, 6, 6).astype(np.float32) * 3 + 2)
    for layer in (standard, zoo):
        layer.bn.use_batch_statistics = True  # set after the layer was built
        layer.set_train(False)
    want = standard(x).asnumpy()
    # With the moving statistics (mean 0, variance 1) the outputs would differ from these.
    np.testing.assert_allclose(zoo(x).asnumpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_sequence_passes_the_blocked_layout_between_its_layers_and_ends_plain(zoo_kernels):
    """Within an nn.SequentialCell: a convolution's output stays blocked only up to the next
    convolution that can read it (pools in between included); a bias, channels off the block,
    a layer without a kernel and a layer shared with another sequence break the run; the
    sequence's output is plain."""
    from src.layers import ConvBNAct

    if kernels.activation_block() not in (8, 16):  # 20 channels are off either block
        pytest.skip("oneDNN picks no 8- or 16-channel blocked layout on this CPU")

    def conv(cin, cout, **kw):
        return ConvBNAct(cin, cout, 3, batch_norm=kw.pop("bn", False), **kw)

    shared = conv(32, 32)
    layers = [conv(3, 16), cells.MaxPool2d(2, 2), conv(16, 32), conv(32, 20), conv(20, 32),
              conv(32, 32), conv(32, 32, bn=True), conv(32, 32), conv(32, 32, has_bias=True),
              conv(32, 32), nn.ReLU(), conv(32, 32), ConvBNAct(32, 32, 1, batch_norm=False),
              conv(32, 32), conv(32, 32), shared, conv(32, 32), cells.MaxPool2d(2, 2)]
    net = nn.SequentialCell([nn.SequentialCell(layers), nn.SequentialCell([shared])])
    changed = kernels.keep_blocked_layouts(net)

    def layout(cell):
        if isinstance(cell, cells.MaxPool2d):
            return cell.blocked
        if isinstance(cell, ConvBNAct):
            return (cell.conv.x_blocked, cell.conv.y_blocked)
        return None
    assert [layout(c) for c in layers] == [
        (False, True), True, (True, True), (True, False), (False, True), (True, True),
        (True, True), (True, False), (False, False), (False, False), None, (False, True),
        (True, True), (True, True), (True, False), (False, False), (False, False), False]
    assert layers[6].bn.blocked
    assert changed == 12


def test_vgg16_trains_and_exports_alike_with_blocked_layouts_between_its_convolutions(tmp_path):
    """VGG16 from build_network keeps the blocked layout from its first convolution to its
    last; loss gradients and eval outputs equal the network on MindSpore's operators, and the
    ONNX export (standard operators, NCHW) matches it."""
    _kernels_or_skip()
    from src.config import load_config
    from src.engine import build_network
    from src.export import ExportedModel, export_network, sample_input

    if not kernels.activation_block():
        pytest.skip("oneDNN picks no blocked activation layout on this CPU")
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_config(os.path.join(REPO, "config", "vgg16_imagenet.yaml"),
                      [("device_target", "CPU"), ("image_size", [32, 32]), ("num_classes", 10),
                       ("net.dropout", 0.0)])
    zoo = build_network(cfg.replace(cpu_kernels="zoo"))
    standard = build_network(cfg.replace(cpu_kernels="mindspore"))
    convs = [c.conv for c in zoo.features if hasattr(c, "conv")]
    pools = [c for c in zoo.features if isinstance(c, cells.MaxPool2d)]
    assert [(c.x_blocked, c.y_blocked) for c in convs] == (
        [(False, True)] + [(True, True)] * 11 + [(True, False)])
    assert [p.blocked for p in pools] == [True] * 4 + [False]
    for a, b in zip(standard.trainable_params(), zoo.trainable_params()):
        b.set_data(a.data)
    x = Tensor(sample_input(2, (32, 32), seed=8))

    def loss_and_gradients(net):
        loss = SquaredSum(net)
        loss.set_train(True)
        value, (dx, dparams) = ms.value_and_grad(loss, 0, net.trainable_params())(x)
        return [value.asnumpy(), dx.asnumpy()] + [d.asnumpy() for d in dparams]

    for want, got in zip(loss_and_gradients(standard), loss_and_gradients(zoo)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # No primitive on oneDNN's reference kernel: with AVX2 the weight gradient of the 3x3
    # convolutions on 2x2 blocked maps had only that one (5 s a call, 25x the whole step).
    chosen = kernels.implementations().splitlines()
    assert len(chosen) >= 13 and not [line for line in chosen if " ref:" in line], chosen
    zoo.set_train(False)
    standard.set_train(False)
    expected = zoo(x).asnumpy()
    np.testing.assert_allclose(expected, standard(x).asnumpy(), rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())
    path = export_network(zoo, str(tmp_path / "vgg16"), "ONNX", 2, (32, 32), log=lambda _: None)
    np.testing.assert_allclose(ExportedModel(path)(x.asnumpy())[0], expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


class _ProjectedOutputs(nn.Cell):
    """sum over the network's outputs of output * fixed weights (a sine ramp)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        outputs = self.net(x)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        total = 0.0
        for out in outputs:
            ramp = ops.cumsum(ops.ones_like(out).reshape(-1), 0).reshape(out.shape)
            total = total + (out * ops.sin(ramp)).sum()
        return total


@pytest.mark.parametrize("model", sorted(list_models()))
def test_every_model_on_the_kernels_computes_what_it_does_on_mindspores_operators(model):
    """build_network's network on the kernels (blocked layouts between layers included) against
    the same weights on MindSpore's operators: eval outputs after a train-mode pass, the moving
    statistics that pass left, and the gradients of every parameter."""
    _kernels_or_skip()
    from src.config import load_config
    from src.engine import build_network
    from src.export import sample_input

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    # Each model's first shipped recipe (VGG16: CIFAR-10's, with BatchNorm; VGG16 without it
    # is the test above).
    recipe = sorted(glob.glob(os.path.join(REPO, "config", f"{model}_*.yaml")))[0]
    cfg = load_config(recipe, [("device_target", "CPU"), ("image_size", [64, 64]),
                               ("num_classes", 10)])
    if "dropout" in cfg.net:
        cfg = cfg.replace(net=dict(cfg.net, dropout=0.0))
    standard = build_network(cfg.replace(cpu_kernels="mindspore"))
    zoo = build_network(cfg.replace(cpu_kernels="zoo"))
    assert any(getattr(c, "y_blocked", False) for _, c in zoo.cells_and_names())
    for a, b in zip(standard.get_parameters(), zoo.get_parameters()):
        assert a.name == b.name
        b.set_data(a.data.copy())
    x = Tensor(sample_input(2, (64, 64), seed=9))

    def gradients(net):
        loss = _ProjectedOutputs(net)
        loss.set_train(True)
        value, grads = ms.value_and_grad(loss, None, net.trainable_params())(x)
        return [value.asnumpy()] + [g.asnumpy() for g in grads]

    want, got = gradients(standard), gradients(zoo)
    # MobileNetV1's ReLU6 leaves channels at zero on this input; BatchNorm over such a channel
    # (variance 0) scales rounding noise by 1/sqrt(eps), so only its loss value is compared.
    for w, g in zip(want, got if model != "mobilenetv1" else got[:1]):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * np.abs(w).max())
    for a, b in zip(standard.get_parameters(), zoo.get_parameters()):
        if "moving_" in a.name:
            np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-4,
                                       atol=1e-4 * np.abs(a.asnumpy()).max())
    standard.set_train(False)
    zoo.set_train(False)
    want = standard(x)
    got = zoo(x)
    for w, g in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        w = w.asnumpy()
        np.testing.assert_allclose(g.asnumpy(), w, rtol=1e-4, atol=1e-4 * np.abs(w).max())

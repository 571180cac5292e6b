"""Export a network to MINDIR / ONNX / AIR and check the result numerically.

The export is written under a temporary name, run on CPU against the
checkpoint network on a fixed batch (MINDIR through MindSpore, ONNX through
onnxruntime), and renamed to its final name only if the largest absolute
difference is within tolerance. AIR needs Ascend and is checked up front.
"""
import contextlib
import os
from typing import List, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from src import kernels
from src.deploy.common import ONNX_RUNTIMES
from src.errors import ExportError

EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def check_format_supported(file_format: str, device_target: str) -> None:
    """AIR export needs an Ascend device: refuse early, before any work."""
    if file_format != "AIR":
        return
    available = False
    if device_target == "Ascend":
        try:
            available = ms.hal.is_available("Ascend")
        except Exception:  # pylint: disable=broad-except
            available = False
    if not available:
        raise ExportError("AIR export needs an Ascend device and the Ascend build of MindSpore; "
                          "on this machine export MINDIR or ONNX (--file_format=MINDIR), or run "
                          "with --device_target=Ascend on an Ascend host")


def sample_input(batch_size: int, image_size: Sequence[int], seed: int = 0,
                 channels: int = 3) -> np.ndarray:
    """The fixed batch used for export and verification (normalised-image-like values)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch_size, channels, image_size[0], image_size[1])).astype(np.float32)


def _as_list(outputs) -> List[np.ndarray]:
    if isinstance(outputs, (tuple, list)):
        return [o.asnumpy() if hasattr(o, "asnumpy") else np.asarray(o) for o in outputs]
    return [outputs.asnumpy() if hasattr(outputs, "asnumpy") else np.asarray(outputs)]


class ExportedModel:
    """Run an exported MINDIR (MindSpore) or ONNX file on numpy input.

    ONNX files run on onnxruntime, or with ``onnx_runtime="opencv"`` on OpenCV's DNN
    module. ``num_threads`` (0: the runtime's default) sets onnxruntime's intra-op
    threads; for OpenCV it sets ``cv2.setNumThreads``, which holds for the whole process.
    """

    def __init__(self, path: str, num_threads: int = 0,
                 providers: Sequence[str] = ("CPUExecutionProvider",),
                 onnx_runtime: str = "onnxruntime"):
        if not os.path.isfile(path):
            raise ExportError(f"exported model {path!r} not found")
        if onnx_runtime not in ONNX_RUNTIMES:
            raise ExportError(f"unknown ONNX runtime {onnx_runtime!r}; choose one of "
                              f"{', '.join(ONNX_RUNTIMES)}")
        self.path = path
        self.format = "ONNX" if path.endswith(".onnx") else "MINDIR"
        self.runtime = onnx_runtime if self.format == "ONNX" else "mindspore"
        if self.runtime == "onnxruntime":
            import onnxruntime as ort  # pylint: disable=import-outside-toplevel
            options = ort.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = num_threads
            try:
                self._session = ort.InferenceSession(path, options, providers=list(providers))
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ExportError(f"onnxruntime cannot load {path!r}: {exc}") from None
            self._input_name = self._session.get_inputs()[0].name
        elif self.runtime == "opencv":
            self._opencv, self._output_names = _opencv_network(path, num_threads)
        else:
            try:
                self._cell = nn.GraphCell(ms.load(path))
            except (RuntimeError, ValueError) as exc:
                raise ExportError(f"MindSpore cannot load {path!r}: "
                                  f"{str(exc).splitlines()[0]}") from None

    def __call__(self, batch: np.ndarray) -> List[np.ndarray]:
        """Outputs of the exported graph for one input batch, as numpy arrays."""
        if self.runtime == "onnxruntime":
            return list(self._session.run(None, {self._input_name: batch}))
        if self.runtime == "opencv":
            self._opencv.setInput(np.ascontiguousarray(batch, dtype=np.float32))
            # Copies: OpenCV reuses its output buffers on the next call.
            return [np.array(out) for out in self._opencv.forward(self._output_names)]
        return _as_list(self._cell(ms.Tensor(batch)))


def _opencv_network(path: str, num_threads: int):
    """``(cv2.dnn.Net, output names in the graph's order)`` of the ONNX file at ``path``.

    A file that did not come from this ``export.py`` (an older export, MindSpore's own)
    gets the export's rewrites in memory first: without them OpenCV computes some
    convolutions wrong (see :mod:`src.deploy.onnx_compat`).
    """
    import cv2  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel

    from src.deploy.onnx_compat import make_portable, outputs_in_graph_order  # pylint: disable=C0415
    if num_threads:
        cv2.setNumThreads(num_threads)
    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf raises its own types  pylint: disable=broad-except
        raise ExportError(f"cannot read {path!r} as an ONNX model: "
                          f"{str(exc).strip().splitlines()[0]}") from None
    try:
        rewritten = make_portable(model)
    except Exception as exc:  # DeployError, onnx's shape-inference errors  pylint: disable=broad-except
        raise ExportError(f"cannot rewrite {path!r} for OpenCV DNN: "
                          f"{str(exc).strip().splitlines()[0]}; run it on onnxruntime instead") from None
    try:
        if rewritten:
            network = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
        else:
            network = cv2.dnn.readNetFromONNX(path)
    except cv2.error as exc:
        # One line: OpenCV's message spans lines that start with "> ".
        reason = " ".join(line.strip().lstrip("> ").strip()
                          for line in (getattr(exc, "err", "") or str(exc)).splitlines() if line.strip())
        raise ExportError(f"OpenCV {cv2.__version__} DNN cannot load {path!r}: {reason}; run it "
                          f"on onnxruntime instead") from None
    return network, outputs_in_graph_order(network.getUnconnectedOutLayersNames())


@contextlib.contextmanager
def _working_directory(folder: str):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def export_network(net, file_base: str, file_format: str, batch_size: int,
                   image_size: Sequence[int], verify: bool = True,
                   tolerance: float = 1e-4, log=print) -> str:
    """Export ``net`` to ``file_base`` + extension; verify it on CPU; return the path."""
    ext = EXTENSIONS[file_format]
    final = file_base + ext
    folder = os.path.dirname(os.path.abspath(final))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {folder!r} ({exc.strerror}); choose another "
                          f"--export.file_name=<folder>/<name>") from None
    if not os.access(folder, os.W_OK):
        raise ExportError(f"cannot write into {folder!r} (read-only); choose a writable folder "
                          f"with --export.file_name=<folder>/<name>")
    # MindSpore accepts only [0-9a-zA-Z@_-.:/\\] in file names: the file is written under
    # a plain temporary name from inside its folder, then renamed to the user's name.
    safe_name = f".export-{os.getpid()}.partial"
    tmp_base = os.path.join(folder, safe_name)
    net.set_train(False)
    batch = sample_input(batch_size, image_size)
    try:
        with _working_directory(folder):
            with kernels.standard_operators(net):
                ms.export(net, ms.Tensor(batch), file_name=safe_name, file_format=file_format)
        written = tmp_base + ext
        if not os.path.isfile(written):
            raise ExportError(f"MindSpore reported no error but wrote no {file_format} file")
        if file_format == "ONNX":
            # Exact rewrites: fused LeakyReLU for onnxruntime, patterns OpenCV DNN (the C++
            # CPU app) rejects; verified below like the rest.
            from src.deploy.onnx_compat import normalize_onnx_file  # pylint: disable=C0415
            changed = normalize_onnx_file(written)
            if changed:
                log(f"ONNX graph rewritten for onnxruntime and OpenCV DNN ({changed} node(s), "
                    f"see src/deploy/onnx_compat.py)")
        if verify and file_format in ("MINDIR", "ONNX"):
            expected = _as_list(net(ms.Tensor(batch)))
            actual = ExportedModel(written)(batch)
            max_diff = compare_outputs(expected, actual)
            log(f"export check ({file_format} vs checkpoint network, batch {batch_size}): "
                f"max abs difference {max_diff:.3e} (tolerance {tolerance:g})")
            if not max_diff <= tolerance:
                raise ExportError(f"{file_format} export differs from the network by {max_diff:.3e} "
                                  f"> tolerance {tolerance:g}; not written")
        os.replace(written, final)
    except OSError as exc:
        raise ExportError(f"cannot write {final!r} ({exc.strerror or exc}); choose a writable "
                          f"folder with --export.file_name=<folder>/<name>") from None
    finally:
        for leftover in (tmp_base + ext, tmp_base + ext + ".tmp"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return final


def compare_outputs(expected: List[np.ndarray], actual: List[np.ndarray]) -> float:
    """Largest absolute difference between two output lists (inf if shapes differ)."""
    if len(expected) != len(actual):
        return float("inf")
    worst = 0.0
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(e.astype(np.float64) - a.astype(np.float64)))))
    return worst

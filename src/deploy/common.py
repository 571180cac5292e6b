"""File conventions shared by preprocess, the inference runners and postprocess.

* **Input files.** A data folder holds images (or preprocessed ``.bin``
  tensors) either directly ("flat") or in one sub-folder per class. Files are
  taken in sorted order (class folders sorted, then files sorted). An image's
  *stem* is its file name without the last extension; stems must be unique
  across class folders, because result files are named after them. The C++
  app (``ascend310_infer/src/utils.cc``) walks folders the same way.
* **Result files.** ``result_Files/<stem>_<i>.bin``: the raw float32 bytes of
  output ``i`` for one image (batch 1), in C order.
* **Label file.** Text, one ``<stem> <class-index>`` line per image; blank
  lines and lines starting with ``#`` are ignored.
* **Timing.** ``time_Result/test_perform_static.txt`` holds one line
  ``NN inference cost average time: X ms of infer_count N``.
"""
import os
import re
from typing import Dict, Iterator, List, Sequence, Tuple

from src.errors import ZooError

RESULT_DIR = "result_Files"
TIME_DIR = "time_Result"
TIME_FILE = "test_perform_static.txt"
RESULT_NAME = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)\.bin$")

# What can run an ONNX file (src.export.ExportedModel). onnxruntime is the default and the
# export check's; OpenCV's DNN module computes 3x3 convolutions with Winograd, which makes
# VGG16 faster on CPU and the other models slower (README: Benchmarks), and moves the outputs
# by about 1e-6 relative.
ONNX_RUNTIMES = ("onnxruntime", "opencv")
# infer.py's default on CPU: time both on the file at start-up and keep the faster
# (src.deploy.runner.open_fastest_onnx), as cudnn.benchmark picks a convolution algorithm.
AUTO_ONNX_RUNTIME = "auto"


class DeployError(ZooError):
    """Missing or inconsistent deploy inputs (model, data, result or label files)."""


# What to check when deployed outputs are NaN/Inf (infer.py and both tasks' postprocess).
NON_FINITE_RESULTS_FIX = ("check the inference's normalisation (no zero --std) and the export "
                          "(does python infer.py on it give finite outputs?), then run the "
                          "inference again")


def file_stem(name: str) -> str:
    """``a/b/ILSVRC2012_val_00000001.JPEG`` -> ``ILSVRC2012_val_00000001``."""
    return os.path.splitext(os.path.basename(name))[0]


def _visible(names: Sequence[str]) -> List[str]:
    return sorted(n for n in names if not n.startswith("."))


def list_input_files(folder: str, extensions: Sequence[str]) -> List[Tuple[str, str, int]]:
    """Sorted ``(stem, path, class_index)`` of the input files in ``folder``.

    ``folder`` is flat (files directly inside; class_index is -1) or holds one
    sub-folder per class (sorted names give the indices, as ImageFolderDataset
    does; loose files next to the class folders are ignored). Only files ending
    in one of ``extensions`` (case-sensitive) count. Raises DeployError when
    there is nothing to read or two files share a stem.
    """
    if not os.path.isdir(folder):
        raise DeployError(f"data folder {folder!r} not found")
    names = _visible(os.listdir(folder))
    subdirs = [n for n in names if os.path.isdir(os.path.join(folder, n))]

    def matching(directory: str) -> List[str]:
        return [n for n in _visible(os.listdir(directory))
                if n.endswith(tuple(extensions)) and os.path.isfile(os.path.join(directory, n))]

    entries: List[Tuple[str, str, int]] = []
    if subdirs:
        for index, sub in enumerate(subdirs):
            directory = os.path.join(folder, sub)
            files = matching(directory)
            if not files and any(os.path.isdir(os.path.join(directory, n))
                                 for n in os.listdir(directory)):
                raise DeployError(
                    f"{directory!r} holds folders but no {'/'.join(extensions)} files; point the "
                    f"data path at the split folder itself (e.g. imagenet/val), whose "
                    f"sub-folders are the classes")
            entries += [(file_stem(n), os.path.join(directory, n), index) for n in files]
    else:
        entries = [(file_stem(n), os.path.join(folder, n), -1) for n in matching(folder)]
    if not entries:
        raise DeployError(f"no {'/'.join(extensions)} files in {folder!r} (nor in its "
                          f"sub-folders)")
    check_unique_stems(entries)
    return entries


def check_unique_stems(entries: Sequence[Tuple[str, str, int]]) -> None:
    """DeployError naming both files when two inputs share a stem."""
    seen: Dict[str, str] = {}
    for stem, path, _ in entries:
        if stem in seen:
            raise DeployError(
                f"two input files have the same stem {stem!r}: {seen[stem]!r} and {path!r}; "
                f"result files and label lines are keyed by the stem, so rename one of them")
        seen[stem] = path


# --------------------------------------------------------------------------- label file

def write_label_file(path: str, labels: Sequence[Tuple[str, int]]) -> None:
    """Write ``<stem> <class-index>`` lines (atomically)."""
    from src.utils.io import atomic_write_text  # pylint: disable=import-outside-toplevel
    header = "# <image-stem> <class-index>\n"
    atomic_write_text(path, header + "".join(f"{stem} {index}\n" for stem, index in labels))


def read_label_file(path: str, num_classes: int = 0) -> Dict[str, int]:
    """``{stem: class_index}`` from a label file; DeployError on any malformed line.

    With ``num_classes`` > 0 every index must lie in ``[0, num_classes)``.
    """
    if not os.path.isfile(path):
        raise DeployError(f"label file {path!r} not found; make one with python preprocess.py "
                          f"(lines '<image-stem> <class-index>')")
    try:
        return _read_label_lines(path, num_classes)
    except ValueError as exc:  # not UTF-8 text, or an index of thousands of digits
        raise DeployError(f"label file {path!r} is not a text file of '<image-stem> "
                          f"<class-index>' lines ({str(exc)[:100]})") from None


def _read_label_lines(path: str, num_classes: int) -> Dict[str, int]:
    labels: Dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
                raise DeployError(f"{path}:{number}: bad label line {line!r}; expected "
                                  f"'<image-stem> <class-index>', e.g. 'ILSVRC2012_val_00000001 65'")
            stem, index = parts[0], int(parts[1])
            if index < 0 or (num_classes and index >= num_classes):
                raise DeployError(f"{path}:{number}: class index {index} for {stem!r} is outside "
                                  f"0..{num_classes - 1} (num_classes {num_classes})")
            if stem in labels:
                raise DeployError(f"{path}:{number}: stem {stem!r} appears twice")
            labels[stem] = index
    if not labels:
        raise DeployError(f"label file {path!r} holds no labels")
    return labels


# --------------------------------------------------------------------------- result files

def result_path(result_dir: str, stem: str, index: int) -> str:
    """``<result_dir>/<stem>_<index>.bin``."""
    return os.path.join(result_dir, f"{stem}_{index}.bin")


def prepare_output_dirs(output_dir: str) -> Tuple[str, str]:
    """Create ``result_Files/`` (emptied of old .bin files) and ``time_Result/``."""
    results = os.path.join(output_dir, RESULT_DIR)
    timing = os.path.join(output_dir, TIME_DIR)
    try:
        os.makedirs(results, exist_ok=True)
        os.makedirs(timing, exist_ok=True)
        # Stale results of another model or data set would be counted by postprocess.
        for name in os.listdir(results):
            if name.endswith(".bin"):
                os.remove(os.path.join(results, name))
    except OSError as exc:
        raise DeployError(f"cannot prepare {output_dir!r} for results ({exc.strerror})") from None
    return results, timing


def scan_result_files(result_dir: str) -> Dict[str, Dict[int, str]]:
    """``{stem: {output_index: path}}`` of the result files in ``result_dir``."""
    if not os.path.isdir(result_dir):
        raise DeployError(f"result folder {result_dir!r} not found; run the inference first")
    found: Dict[str, Dict[int, str]] = {}
    for name in sorted(os.listdir(result_dir)):
        if not name.endswith(".bin"):
            continue
        match = RESULT_NAME.match(name)
        if not match:
            raise DeployError(f"unexpected file {name!r} in {result_dir!r}; result files are "
                              f"named <image-stem>_<output-index>.bin")
        found.setdefault(match["stem"], {})[int(match["index"])] = os.path.join(result_dir, name)
    if not found:
        raise DeployError(f"no result files (<stem>_<i>.bin) in {result_dir!r}")
    return found


def timing_line(average_ms: float, count: int) -> str:
    """The upstream timing summary line."""
    return f"NN inference cost average time: {average_ms:.3f} ms of infer_count {count}"


def write_timing(time_dir: str, average_ms: float, count: int) -> str:
    """Write ``time_Result/test_perform_static.txt``; return its path."""
    from src.utils.io import atomic_write_text  # pylint: disable=import-outside-toplevel
    path = os.path.join(time_dir, TIME_FILE)
    atomic_write_text(path, timing_line(average_ms, count) + "\n")
    return path


def iter_bin_inputs(folder: str) -> Iterator[Tuple[str, str]]:
    """``(stem, path)`` of the preprocessed ``.bin`` tensors in ``folder`` (sorted)."""
    for stem, path, _ in list_input_files(folder, (".bin",)):
        yield stem, path

"""Fuzz every reader of untrusted files: random and mutated inputs, bounded in time.

Each reader gets random bytes and mutations of a valid file. The only allowed
outcomes are success or one of the project's own errors (``ZooError``
subclasses: DataError, ConfigError, CheckpointError, RankTableError ...): no
other exception, and no hang (every example runs under a wall-clock alarm).
Examples are derandomized so CI is reproducible; the whole module is sized to
take about a minute on 2 CPU cores.

Readers covered: CIFAR-10 binary (training reader and dataset check),
ImageNet folders and COCO through ``src.datasets.check``, the COCO training
reader and its image decoder, the rank-table validator, the config loader
(YAML files and command-line flags) and the checkpoint reader. The Ascend 310
``postprocess.py`` result reader is fuzzed when the file exists.
"""
import contextlib
import io
import json
import os
import signal
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import src  # noqa: F401  (must precede mindspore)
from src.checkpoint import find_resume_checkpoint, read_checkpoint
from src.config import Config, load_config
from src.datasets.check import inspect_dataset
from src.datasets.classification import read_cifar10_binary
from src.errors import ZooError

# Hypothesis caches Unicode tables under ./.hypothesis; keep the checkout clean.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "zoo-hypothesis"))

EXAMPLE_TIMEOUT_S = 10  # far above any reader's time on these small inputs: only a hang trips it


def fuzz_settings(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class Hang(BaseException):
    """Raised by the alarm: a reader ran for EXAMPLE_TIMEOUT_S on a tiny input."""


@contextlib.contextmanager
def time_limit(seconds=EXAMPLE_TIMEOUT_S):
    def on_alarm(_signum, _frame):
        raise Hang(f"reader still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def only_zoo_errors(call, *args, **kwargs):
    """Run a reader: return its result, or the ZooError it raised; anything else fails."""
    with time_limit():
        try:
            return call(*args, **kwargs)
        except ZooError as exc:
            assert str(exc).strip(), "a ZooError must carry a message"
            return exc


# ---------------------------------------------------------------- shared strategies

def mutate(data: bytes, draw_ops) -> bytes:
    """Apply (kind, position, value) edits: flip, insert, delete, truncate, duplicate."""
    buf = bytearray(data)
    for kind, pos, value in draw_ops:
        if not buf and kind != "insert":
            continue
        at = pos % (len(buf) + 1)
        if kind == "flip" and at < len(buf):
            buf[at] ^= (value % 255) + 1
        elif kind == "insert":
            buf[at:at] = bytes([value % 256]) * (1 + value % 7)
        elif kind == "delete":
            del buf[at:at + 1 + value % 64]
        elif kind == "truncate":
            del buf[at:]
        elif kind == "duplicate":
            buf[at:at] = buf[at:at + 1 + value % 256]
    return bytes(buf)


edit_ops = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]),
                              st.integers(0, 2 ** 20), st.integers(0, 2 ** 16)),
                    min_size=1, max_size=6)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)


def mutate_json(doc, paths_and_values):
    """Replace the values at some (random) paths of a JSON document."""
    doc = json.loads(json.dumps(doc))
    for path, value in paths_and_values:
        node = doc
        for step in path[:-1]:
            if isinstance(node, dict) and node:
                node = node[sorted(node)[step % len(node)]]
            elif isinstance(node, list) and node:
                node = node[step % len(node)]
        last = path[-1]
        if isinstance(node, dict) and node:
            node[sorted(node)[last % len(node)]] = value
        elif isinstance(node, list) and node:
            node[last % len(node)] = value
    return doc


json_edits = st.lists(st.tuples(st.lists(st.integers(0, 50), min_size=1, max_size=5), json_values),
                      min_size=1, max_size=4)


def tiny_png(width=3, height=2, mode="RGB") -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new(mode, (width, height), 120).save(out, format="PNG")
    return out.getvalue()


def tiny_jpeg() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(out, format="JPEG")
    return out.getvalue()


def png_with_size(width, height) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb when large)."""
    def chunk(kind, body):
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


IMAGE_SEEDS = {"png": tiny_png, "png_gray16": lambda: tiny_png(mode="I;16"),
               "png_rgba": lambda: tiny_png(mode="RGBA"), "jpeg": tiny_jpeg,
               "bomb": lambda: png_with_size(30000, 30000)}

image_bytes = st.one_of(
    st.binary(max_size=256),
    st.builds(lambda seed, ops: mutate(IMAGE_SEEDS[seed](), ops),
              st.sampled_from(sorted(IMAGE_SEEDS)), edit_ops),
    st.sampled_from(sorted(IMAGE_SEEDS)).map(lambda seed: IMAGE_SEEDS[seed]()))


# ---------------------------------------------------------------- CIFAR-10 binary

CIFAR_RECORD = 3073


def valid_cifar_records(count, seed=0):
    rng = np.random.default_rng(seed)
    rec = rng.integers(0, 256, size=(count, CIFAR_RECORD), dtype=np.uint8)
    rec[:, 0] = rng.integers(0, 10, size=count)
    return rec.tobytes()


cifar_bytes = st.one_of(
    st.binary(max_size=4 * CIFAR_RECORD),
    st.integers(0, 3).map(lambda n: bytes(n * CIFAR_RECORD)),
    st.builds(lambda n, ops: mutate(valid_cifar_records(n), ops), st.integers(1, 3), edit_ops),
    st.builds(lambda n, label: bytes([label]) + valid_cifar_records(n)[1:],
              st.integers(1, 2), st.integers(0, 255)))


@fuzz_settings(180)
@given(files=st.lists(cifar_bytes, min_size=1, max_size=2))
def test_fuzz_cifar10_binary_reader(files):
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "cifar-10-batches-bin"
        folder.mkdir()
        for i, data in enumerate(files, start=1):
            (folder / f"data_batch_{i}.bin").write_bytes(data)
        result = only_zoo_errors(read_cifar10_binary, str(folder), "train")
        if not isinstance(result, ZooError):
            images, labels = result
            assert images.shape == (len(labels), 32, 32, 3) and images.dtype == np.uint8
            assert labels.size and labels.min() >= 0 and labels.max() <= 9
        report = only_zoo_errors(inspect_dataset, "cifar10", root, 10, "train")
        if not isinstance(report, ZooError) and isinstance(result, ZooError):
            assert report.problems, "the check passed a file the reader refuses"
        if not isinstance(report, ZooError) and not isinstance(result, ZooError):
            assert report.ok, f"the check refused a file the reader reads: {report.problems}"


# ---------------------------------------------------------------- ImageNet folders (dataset check)

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@fuzz_settings(120)
@given(entries=st.lists(st.tuples(st.sampled_from(["train", "val"]), names,
                                  st.sampled_from(["a.JPEG", "b.png", "c.jpg", "notes.txt", "d.bmp"]),
                                  image_bytes), min_size=1, max_size=5),
       num_classes=st.one_of(st.none(), st.integers(1, 5)))
def test_fuzz_imagenet_folder_check(entries, num_classes):
    with tempfile.TemporaryDirectory() as root:
        for split, cls, fname, data in entries:
            try:
                folder = Path(root) / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                (folder / fname).write_bytes(data)
            except OSError:  # a name this filesystem refuses (too long in bytes ...)
                continue
        report = only_zoo_errors(inspect_dataset, "imagenet", root, num_classes, max_decode=20)
        assert not isinstance(report, ZooError) or "num_classes" in str(report)


@fuzz_settings(180)
@given(data=image_bytes, suffix=st.sampled_from([".jpg", ".png", ".bmp", ".gif"]))
def test_fuzz_image_decoder(data, suffix):
    read_rgb = coco_module().read_rgb

    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "img" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        result = only_zoo_errors(read_rgb, path)
        if not isinstance(result, ZooError):
            assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3


# ---------------------------------------------------------------- COCO annotations

def coco_module():
    import src.datasets.coco as coco  # pylint: disable=import-outside-toplevel
    return coco


def valid_coco():
    return {"images": [{"id": 1, "file_name": "a.png", "width": 3, "height": 2},
                       {"id": 2, "file_name": "b.png", "width": 3, "height": 2}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2.5, 1.5],
                             "area": 3.75, "iscrowd": 0},
                            {"id": 11, "image_id": 2, "category_id": 9, "bbox": [0.5, 0, 2, 2],
                             "area": 4.0, "iscrowd": 0}],
            "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}]}


coco_text = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_edits.map(lambda edits: json.dumps(mutate_json(valid_coco(), edits)).encode()),
    edit_ops.map(lambda ops: mutate(json.dumps(valid_coco()).encode(), ops)),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.just(b'{"images": [], "annotations": [], "categories": [' + b"1" * 5000 + b"]}"))


def write_coco(root, ann: bytes, image: bytes):
    img_dir = Path(root) / "train2017"
    img_dir.mkdir()
    for name in ("a.png", "b.png"):
        (img_dir / name).write_bytes(image)
    (Path(root) / "annotations").mkdir()
    ann_file = Path(root) / "annotations" / "instances_train2017.json"
    ann_file.write_bytes(ann)
    return str(img_dir), str(ann_file)


@fuzz_settings(240)
@given(ann=coco_text, training=st.booleans(), num_classes=st.one_of(st.none(), st.just(2)))
def test_fuzz_coco_reader(ann, training, num_classes):
    CocoDetectionReader = coco_module().CocoDetectionReader  # noqa: N806

    with tempfile.TemporaryDirectory() as root:
        img_dir, ann_file = write_coco(root, ann, tiny_png())
        reader = only_zoo_errors(CocoDetectionReader, img_dir, ann_file, training, num_classes)
        # The reader refuses exactly what its own validate() calls an error, with that message.
        found = [p for p in only_zoo_errors(CocoDetectionReader(
            img_dir, ann_file, training, num_classes, strict=False).validate) if p.is_error]
        assert isinstance(reader, ZooError) == bool(found), (reader, found)
        if found:
            assert str(reader).startswith(found[0].sentence())
        if not isinstance(reader, ZooError):
            assert len(reader) > 0
            for k in range(len(reader)):
                record = reader.records[k]
                assert os.path.dirname(os.path.abspath(record.path)) == os.path.abspath(img_dir)
                image, boxes = only_zoo_errors(reader.load, k)
                assert boxes.ndim == 2 and boxes.shape[1] == 5 and np.isfinite(boxes).all()


@fuzz_settings(150)
@given(ann=coco_text, image=image_bytes)
def test_fuzz_coco_dataset_check(ann, image):
    with tempfile.TemporaryDirectory() as root:
        write_coco(root, ann, image)
        report = only_zoo_errors(inspect_dataset, "coco", root, None, "train", max_decode=4)
        if not isinstance(report, ZooError):
            # Every problem is one printable line naming a path and a fix.
            assert report.ok == (not report.problems)
            for problem in report.problems:
                line = str(problem)
                assert "\n" not in line and line.startswith("problem: ") and "-> fix:" in line


# ---------------------------------------------------------------- rank table

def valid_rank_table():
    return {"version": "1.0", "server_count": "1",
            "server_list": [{"server_id": "10.0.0.1", "host_nic_ip": "reserve",
                             "device": [{"device_id": str(d), "device_ip": f"192.98.92.{100 + d}",
                                         "rank_id": str(d)} for d in range(4)]}],
            "status": "completed"}


rank_table_text = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_edits.map(lambda edits: json.dumps(mutate_json(valid_rank_table(), edits)).encode()),
    edit_ops.map(lambda ops: mutate(json.dumps(valid_rank_table()).encode(), ops)),
    st.sampled_from(["\u00b2", "\u0663", "9" * 5000, "-1", " 7 ", "1e3"]).map(
        lambda v: json.dumps(mutate_json(valid_rank_table(), [([2, 0, 0, 1], v)])).encode()),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.just(b'{"server_count": ' + b"9" * 5000 + b"}"))


@fuzz_settings(360)
@given(table=rank_table_text, host=st.sampled_from(["10.0.0.1", "10.0.0.2"]))
def test_fuzz_rank_table_validator(table, host):
    import src.distributed.rank_table as rank_table  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "rank_table.json")
        with open(path, "wb") as f:
            f.write(table)
        result = only_zoo_errors(rank_table.plan_local_ranks, path, host)
        if not isinstance(result, ZooError):
            plan, problems, _warnings = result
            assert (plan is None) == bool(problems)
            if plan is not None:
                assert sorted(r for _, r in plan.devices) == sorted({r for _, r in plan.devices})
                assert all(0 <= r < plan.rank_size for _, r in plan.devices)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = only_zoo_errors(rank_table.main, ["validate", path, "--host_ip", host,
                                                     "--format", "shell"])
            assert code in (0, 1)
            merged = os.path.join(root, "merged.json")
            code = only_zoo_errors(rank_table.main, ["merge", path, "--output", merged])
            assert code in (0, 1)


# ---------------------------------------------------------------- config loader

VALID_CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo.yaml"

yaml_text = st.one_of(
    st.text(max_size=200),
    edit_ops.map(lambda ops: mutate(VALID_CONFIG.read_bytes(), ops).decode("utf-8", "replace")),
    st.builds(lambda key, value: f"{key}: {value}\n",
              st.sampled_from(["model", "image_size", "lr", "lr.base_lr", "net", "data",
                               "loss.loss_scale", "amp_level", "epochs", "checkpoint", "1", "[a]"]),
              st.sampled_from(["[1, [2]]", "{a: 1}", "!!python/object/apply:os.system ['true']",
                               "&a [*a]", "1e999", ".nan", "-.inf", "'x'", "{CPU: 1, TPU: 2}",
                               "[" * 2000 + "]" * 2000, "9" * 5000, "null", "~", "yes"])),
    st.just("a: &a [" + ", ".join(["*a"] * 9) + "]\n"),
    st.builds(lambda width, depth, key: alias_bomb(width, depth, key),
              st.integers(2, 12), st.integers(2, 9),
              st.sampled_from(["model", "image_size", "net", "lr", "data.dir", "detection"])),
    st.builds(lambda key, a, b: f"{key}: {a}\nepochs: 2\n{key}: {b}\n",
              st.sampled_from(["model", "epochs", "lr", "image_size", "net"]),
              st.sampled_from(["vgg16", "1", "{base_lr: 1}", "[1, 2]"]),
              st.sampled_from(["tinydarknet", "2", "{gamma: 2}", "[3]"])),
    st.builds(lambda key, number: f"model: vgg16\n{key}: {number}\n",
              st.sampled_from(["epochs", "batch_size", "num_classes", "image_size",
                               "data: {num_workers", "export: {batch_size", "export: {tolerance",
                               "lr: {base_lr", "checkpoint: {keep_max", "data: {cutout"]),
              st.sampled_from(["0", "-1", "-3", "1e23", "100000000", "1.0e+23", "-0.5",
                               "99999999999", "2"]).map(str)).map(
        lambda text: text.replace("\n", "}\n") if ": {" in text.splitlines()[1] else text))

def alias_bomb(width: int, depth: int, key: str) -> str:
    """YAML whose anchors repeat earlier anchors: width**depth values from a few lines."""
    lines = ["l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, depth):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + f"\n{key}: *l{depth - 1}\n"


cli_values = st.one_of(st.text(max_size=30),
                       st.sampled_from(["0", "1e23", "100000000", "-5", "1e11", "33", "100000"]),
                       st.sampled_from(["[", "[[1]]", "{", "nan", "inf", "1e999", "-1", "1,2,3",
                                        "[" * 2000, "9" * 5000, "!!python/name:os.system",
                                        "{a: [b: c]}", "", ",", "[1,"]))
cli_keys = st.sampled_from(["epochs", "image_size", "lr.base_lr", "net.dropout", "lr.milestones",
                            "amp_level", "data.num_workers", "loss.loss_scale", "model",
                            "batch_size", "seed", "detection.anchors", "net", "lr"])


@fuzz_settings(450)
@given(text=yaml_text, args=st.lists(st.tuples(cli_keys, cli_values), max_size=3))
def test_fuzz_config_loader(text, args):
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "c.yaml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        result = only_zoo_errors(load_config, path)
        assert isinstance(result, (Config, ZooError))
        assert_short_message(result)
        result = only_zoo_errors(load_config, str(VALID_CONFIG),
                                 cli_args=[f"--{k}={v}" for k, v in args])
        assert isinstance(result, (Config, ZooError))
        assert_short_message(result)
        if isinstance(result, Config):
            result.dump()  # a loaded config can always be written back


def assert_short_message(result):
    """A config error is one line of bounded length, whatever the input expanded to."""
    if isinstance(result, ZooError):
        message = str(result)
        assert "\n" not in message and len(message) < 600, message[:300]


# ---------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def small_checkpoint_bytes(tmp_path_factory):
    import mindspore as ms

    path = str(tmp_path_factory.mktemp("ckpt") / "seed.ckpt")
    ms.save_checkpoint([{"name": "conv.weight", "data": ms.Tensor(np.ones((2, 3), np.float32))},
                        {"name": "moments.conv.weight", "data": ms.Tensor(np.zeros((2, 3), np.float32))},
                        {"name": "global_step", "data": ms.Tensor(np.array([5], np.int32))}],
                       path, append_dict={"epoch": 2, "model": "tinydarknet", "image_size": "[32, 32]"})
    return Path(path).read_bytes()


def test_fuzz_checkpoint_reader(small_checkpoint_bytes):
    @fuzz_settings(240)
    @given(data=st.one_of(st.binary(max_size=300),
                          edit_ops.map(lambda ops: mutate(small_checkpoint_bytes, ops))))
    def check(data):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "m-1_5.ckpt")
            with open(path, "wb") as f:
                f.write(data)
            result = only_zoo_errors(read_checkpoint, path)
            if not isinstance(result, ZooError):
                tensors, meta = result
                assert isinstance(tensors, dict) and isinstance(meta, dict)
            only_zoo_errors(find_resume_checkpoint, root, warn=lambda _line: None)

    check()


# ---------------------------------------------------------------- Ascend 310 result files

label_text = st.one_of(
    st.binary(max_size=120),
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "a b", "", "#x"]),
                       st.sampled_from(["0", "1", "2", "-1", "9", "x", "1.5", "9" * 5000, "\u0663"])),
             max_size=4).map(lambda rows: "".join(f"{s} {i}\n" for s, i in rows).encode()))

result_files = st.dictionaries(
    st.sampled_from(["a_0.bin", "b_0.bin", "c_0.bin", "a_1.bin", "x.bin", "a_0.txt", "_0.bin"]),
    st.one_of(st.binary(max_size=40),
              st.sampled_from([np.arange(3, dtype=np.float32).tobytes(),
                               np.array([np.nan, np.inf, -np.inf], np.float32).tobytes()])),
    max_size=4)


@fuzz_settings(150)
@given(labels=label_text, results=result_files, num_classes=st.integers(-1, 4))
def test_fuzz_classification_result_reader(labels, results, num_classes):
    """The postprocess.py reader: a label file and <stem>_<i>.bin result files."""
    import src.deploy.postprocess_classification as post  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory() as root:
        label_file = os.path.join(root, "label.txt")
        with open(label_file, "wb") as f:
            f.write(labels)
        result_dir = os.path.join(root, "result_Files")
        os.mkdir(result_dir)
        for name, data in results.items():
            with open(os.path.join(result_dir, name), "wb") as f:
                f.write(data)
        metrics = only_zoo_errors(post.classification_accuracy, result_dir, label_file, num_classes)
        if not isinstance(metrics, ZooError):
            assert 0 <= metrics["top_1_accuracy"] <= metrics["top_5_accuracy"] <= 1

"""The CIFAR-10 binary format: layout, validation and the reader.

``cifar-10-batches-bin/data_batch_{1..5}.bin`` (train) and
``cifar-10-verify-bin/test_batch.bin`` (test); each record is 1 label byte
then the R, G and B planes of a row-major 32x32 image. Read with numpy
rather than ``Cifar10Dataset``, which only accepts files of exactly 10,000
records and gives no useful message for a truncated file.
"""
import fnmatch
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from src.datasets.common import CHECK_HINT, DEMO_HINT, Problem, Problems, list_dir, raise_first

TRAIN_FOLDER = "cifar-10-batches-bin"
EVAL_FOLDER = "cifar-10-verify-bin"
TRAIN_GLOB = "data_batch_*.bin"
EVAL_GLOB = "test_batch*.bin"
NUM_CLASSES = 10
IMAGE_SIDE = 32
RECORD_BYTES = 1 + IMAGE_SIDE * IMAGE_SIDE * 3
RECORDS_PER_FILE = 10000           # what real files hold and MindSpore's reader expects
MAX_FILE_BYTES = 512 * 2 ** 20     # a real batch file is 30 MB
_BLANK_CHUNK = 4096                # records scanned at a time for blank images
DOWNLOAD_FIX = "re-download and re-extract the CIFAR-10 binary version (cifar-10-binary.tar.gz)"


def split_glob(split: str) -> str:
    """File pattern of ``split`` ('train', or 'eval'/'test'/'val')."""
    return TRAIN_GLOB if split == "train" else EVAL_GLOB


def _split_name(split: str) -> str:
    return "train" if split == "train" else "test"


class Cifar10Split:
    """The batch files of one CIFAR-10 split in ``folder``.

    :meth:`validate` checks sizes, labels and blank records without loading
    the images; :meth:`read` returns them and raises the first problem.
    """

    def __init__(self, folder, split: str):
        self.folder, self.split = Path(folder), split
        self.records = 0
        self.label_counts = np.zeros(NUM_CLASSES, np.int64)
        self.files: List[Path] = []
        self.record_counts: List[int] = []

    def validate(self, full: bool = False) -> List[Problem]:
        """Problems of this split (``full`` changes nothing: the check reads every label)."""
        del full
        problems = Problems()
        self.records, self.label_counts = 0, np.zeros(NUM_CLASSES, np.int64)
        self.record_counts = []
        if not self.folder.is_dir():
            problems.error(self.folder, f"CIFAR-10 {_split_name(self.split)} folder not found",
                           f"point --data_dir at the folder holding {TRAIN_FOLDER}/ and "
                           f"{EVAL_FOLDER}/ (demo data: {DEMO_HINT})")
            return problems
        entries = list_dir(problems, self.folder, "folder")
        if entries is None:
            return problems
        pattern = split_glob(self.split)
        self.files = [Path(e.path) for e in entries if fnmatch.fnmatchcase(e.name, pattern)]
        if not self.files:
            self._no_files(problems, [e.name for e in entries], pattern)
            return problems
        for path in self.files:
            self._check_file(problems, path)
        return problems

    def _no_files(self, problems, names, pattern):
        stem = pattern.split("*")[0].rstrip("_")
        pickled = [n for n in names if n.startswith(stem) and "." not in n]
        if pickled:
            problems.error(self.folder, f"holds {pickled[0]} without .bin: that is the CIFAR-10 "
                                        f"python (pickle) version",
                           "download the binary version cifar-10-binary.tar.gz and extract it here")
        else:
            expected = ("data_batch_1.bin..data_batch_5.bin" if self.split == "train"
                        else "test_batch.bin")
            problems.error(self.folder, f"no {pattern} files for the {_split_name(self.split)} "
                                        f"split", f"put {expected} from the CIFAR-10 binary version "
                                                  f"(cifar-10-binary.tar.gz) in this folder "
                                                  f"({CHECK_HINT} explains the layout)")

    def _check_file(self, problems, path):
        try:
            if not path.is_file():
                problems.error(path, "is not a regular file",
                               "replace it with the CIFAR-10 batch file")
                return
            size = path.stat().st_size
        except OSError as exc:
            problems.error(path, f"cannot read ({exc.strerror or exc})", "check file permissions")
            return
        if size == 0:
            problems.error(path, "file is empty (0 bytes)", DOWNLOAD_FIX)
            return
        if size % RECORD_BYTES:
            problems.error(path, f"file is {size} bytes, not a multiple of {RECORD_BYTES} (1 label "
                                 f"byte + 3072 pixel bytes per record): truncated or not CIFAR-10 "
                                 f"binary", DOWNLOAD_FIX)
            return
        if size > MAX_FILE_BYTES:
            problems.error(path, f"file is {size} bytes, far larger than a CIFAR-10 batch "
                                 f"({RECORDS_PER_FILE * RECORD_BYTES} bytes)", DOWNLOAD_FIX)
            return
        try:
            records = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, RECORD_BYTES)
            labels = np.array(records[:, 0])
            blank = sum(int((~records[start:start + _BLANK_CHUNK, 1:].any(axis=1)).sum())
                        for start in range(0, len(records), _BLANK_CHUNK))
            del records
        except (OSError, ValueError) as exc:
            problems.error(path, f"cannot read ({exc})", "check file permissions")
            return
        bad = np.flatnonzero(labels >= NUM_CLASSES)
        if bad.size:
            problems.error(path, f"{bad.size} of {labels.size} records have labels outside 0..9 "
                                 f"(first: record {int(bad[0])} has label {int(labels[bad[0]])}); "
                                 f"this is not CIFAR-10 binary data (CIFAR-100 uses 2 label bytes)",
                           DOWNLOAD_FIX)
            return
        if blank == labels.size:
            problems.error(path, f"all {blank} records are blank images (every pixel 0): the file "
                                 f"is zero-filled, not CIFAR-10 data", DOWNLOAD_FIX)
            return
        if blank:
            problems.warn(path, f"{blank} of {labels.size} records are blank images (every "
                                f"pixel 0)")
        self.records += labels.size
        self.label_counts += np.bincount(labels, minlength=NUM_CLASSES)
        self.record_counts.append(int(labels.size))

    def summary(self) -> str:
        """What :meth:`validate` found, e.g. ``train 500 records in 5 files (folder/)``."""
        n = len(self.files)
        text = (f"{_split_name(self.split)} {self.records} records in {n} "
                f"file{'s' * (n != 1)} ({self.folder.name}/)")
        used = int((self.label_counts > 0).sum())
        if self.records and used < NUM_CLASSES:
            text += f", only {used} of {NUM_CLASSES} labels used"
        return text

    def read(self) -> Tuple[np.ndarray, np.ndarray]:
        """All records: images ``(N, 32, 32, 3)`` uint8 RGB and labels ``(N,)`` int32."""
        raise_first(self.validate(), f"{CHECK_HINT} --dataset cifar10 --data_dir <root>")
        records = []
        for path in self.files:
            try:
                records.append(np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES))
            except (OSError, ValueError) as exc:
                raise_first([Problem.make(path, f"cannot read ({exc})", "check file permissions")])
        data = np.concatenate(records)
        labels = data[:, 0].astype(np.int32)
        images = data[:, 1:].reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(images), labels


def read_cifar10_binary(folder: str, split: str):
    """All records of the CIFAR-10 binary ``split`` in ``folder``: (N,32,32,3) uint8, (N,) int32."""
    return Cifar10Split(folder, split).read()


def class_count_problem(path, num_classes: Optional[int]) -> List[Problem]:
    """A problem when the model's ``num_classes`` is not CIFAR-10's 10."""
    if num_classes is None or num_classes == NUM_CLASSES:
        return []
    return [Problem.make(path, f"num_classes is {num_classes} but CIFAR-10 has {NUM_CLASSES} "
                               f"classes", f"set num_classes: {NUM_CLASSES} (--num_classes=10)")]


def validate_root(root, num_classes=None, splits=("train", "eval")):
    """Problems and summary of a CIFAR-10 ``root``: the two split folders, or one split folder.

    Returns ``(problems, summary parts, split readers)``.
    """
    root = Path(root)
    problems = Problems(class_count_problem(root, num_classes))
    entries = list_dir(problems, root, "data_dir")
    if entries is None:
        return problems, [], []
    names = {e.name for e in entries}
    want_train, want_eval = "train" in splits, "eval" in splits
    readers, where = [], ""
    if TRAIN_FOLDER in names or EVAL_FOLDER in names:
        train_dir, eval_dir = root / TRAIN_FOLDER, root / EVAL_FOLDER
        if want_train:
            if train_dir.is_dir():
                readers.append(Cifar10Split(train_dir, "train"))
            else:
                problems.error(train_dir, "train split folder is missing (or not a folder)",
                               "create it and put data_batch_1.bin..data_batch_5.bin from "
                               "cifar-10-binary.tar.gz in it")
        if want_eval:
            if eval_dir.is_dir():
                readers.append(Cifar10Split(eval_dir, "eval"))
            elif (train_dir / "test_batch.bin").is_file():
                problems.error(eval_dir, f"test split folder is missing (test_batch.bin is still "
                                         f"in {TRAIN_FOLDER}/)",
                               f"mkdir {EVAL_FOLDER} and move {TRAIN_FOLDER}/test_batch.bin into it")
            else:
                problems.error(eval_dir, "test split folder is missing (or not a folder)",
                               "create it and put test_batch.bin from cifar-10-binary.tar.gz in it")
        where = f"layout {TRAIN_FOLDER} + {EVAL_FOLDER}"
    else:
        has_train = any(fnmatch.fnmatchcase(n, TRAIN_GLOB) for n in names)
        has_eval = any(fnmatch.fnmatchcase(n, EVAL_GLOB) for n in names)
        if not (has_train or has_eval):
            if "cifar-10-batches-py" in names or any(n.startswith("data_batch") for n in names):
                problems.error(root, "this is the CIFAR-10 python (pickle) version, not the "
                                     "binary one", "download cifar-10-binary.tar.gz and point "
                                                   "--data_dir at its folder")
            else:
                problems.error(root, f"no CIFAR-10 binary data: expected {TRAIN_FOLDER}/ and "
                                     f"{EVAL_FOLDER}/ folders or data_batch_*.bin / test_batch.bin "
                                     f"files", f"point --data_dir at the folder holding "
                                               f"{TRAIN_FOLDER} and {EVAL_FOLDER} (demo data: "
                                               f"{DEMO_HINT})")
            return problems, [], []
        found = [s for s, ok in (("train", has_train), ("test", has_eval)) if ok]
        where = f"data_dir is a split folder itself; found the {' and '.join(found)} split"
        if want_train and has_train:
            readers.append(Cifar10Split(root, "train"))
        if want_eval and has_eval:
            readers.append(Cifar10Split(root, "eval"))
        if want_train and not want_eval and not has_train:
            problems.error(root, "no data_batch_*.bin files for the train split (only "
                                 "test_batch.bin)", f"point --data_dir at {TRAIN_FOLDER} or its "
                                                    f"parent")
        if want_eval and not want_train and not has_eval:
            problems.error(root, "no test_batch.bin for the test split (only data_batch_*.bin)",
                           f"point --data_dir at {EVAL_FOLDER} or its parent")
        if want_train and want_eval and len(found) == 1:
            other = EVAL_FOLDER if has_train else TRAIN_FOLDER
            problems.note(root, f"only the {found[0]} split was checked; the other one lives in "
                                f"{other}/")
    for reader in readers:
        problems += reader.validate()
    counts = [c for r in readers for c in r.record_counts]
    fewer = sum(c < RECORDS_PER_FILE for c in counts)
    more = sum(c > RECORDS_PER_FILE for c in counts)
    if fewer or more:
        held = " and ".join(t for t in (f"{fewer} hold fewer" * bool(fewer),
                                        f"{more} hold more" * bool(more)) if t)
        problems.note(root, f"of {len(counts)} batch file(s), {held} than {RECORDS_PER_FILE} "
                            f"records: fine for the zoo's numpy reader, but "
                            f"mindspore.dataset.Cifar10Dataset (2.10) only reads files of exactly "
                            f"{RECORDS_PER_FILE} records")
    parts = [r.summary() for r in readers if r.files and r.records]
    return problems, [f"{where}; " + ", ".join(parts) if parts else where], readers

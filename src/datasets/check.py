"""Check a dataset folder before a long run.

Finds the mistakes that otherwise surface hours into training: missing
splits, truncated CIFAR-10 batch files, class folders that differ between
train and val, a flat (unsorted) ImageNet val folder, corrupt images, COCO
annotation files that are not JSON or that point at missing images, and a
``num_classes`` that does not match the data.

Library use::

    problems = check_dataset("imagenet", "/data/imagenet", num_classes=1001)
    for p in problems:
        print(p)          # problem: <path>: <message> -> fix: <fix>

Command line (exit status 1 when there is any problem)::

    python -m src.datasets.check --dataset {cifar10,imagenet,coco} --data_dir DIR [--num_classes N]

The check never raises on malformed input: unreadable, truncated, oversized
or binary-junk files are reported as problems.
"""
import argparse
import fnmatch
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from src.errors import DataError, ZooError

DATASETS = ("cifar10", "imagenet", "coco")
SPLITS = ("both", "train", "val")
_SPLIT_ALIASES = {"both": "both", "all": "both", "train": "train",
                  "val": "val", "eval": "val", "test": "val", "validation": "val"}

CIFAR_RECORD_BYTES = 3073
CIFAR_TRAIN_DIR = "cifar-10-batches-bin"
CIFAR_TEST_DIR = "cifar-10-verify-bin"
CIFAR_TRAIN_GLOB = "data_batch_*.bin"     # the files the zoo's CIFAR reader loads
CIFAR_TEST_GLOB = "test_batch*.bin"
CIFAR_RECORDS_PER_FILE = 10000       # what real files hold and MindSpore's reader expects
CIFAR_MAX_FILE_BYTES = 512 * 2 ** 20

from src.datasets.common import IMAGE_SUFFIXES as IMAGE_EXTENSIONS  # noqa: E402
MAX_IMAGE_BYTES = 256 * 2 ** 20
MAX_JSON_BYTES = 2 * 2 ** 30         # instances_train2017.json is about 450 MB
MAX_LISTED = 5                       # individual problems shown per kind before a count
MAX_LISTED_IMAGES = 20               # undecodable images listed before a count
IMAGENET_VAL_DIRS = ("val", "validation_preprocess")

DEMO_HINT = "python -m src.datasets.demo --root demo_data"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where, what, and how to fix it."""

    path: str
    message: str
    fix: str

    def __str__(self):
        return f"problem: {self.path}: {self.message} -> fix: {self.fix}"


@dataclass
class CheckReport:
    """Result of :func:`inspect_dataset`: problems plus a one-line summary."""

    dataset: str
    data_dir: str
    problems: list = field(default_factory=list)
    summary: str = ""
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def ok_line(self):
        line = f"OK: {self.summary}"
        if self.notes:
            line += "; note: " + "; ".join(self.notes)
        return line


def _one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Report:
    def __init__(self, dataset, data_dir):
        self.result = CheckReport(dataset, str(data_dir))
        self.parts = []
        self.short_files = 0

    def problem(self, path, message, fix):
        self.result.problems.append(Problem(_one_line(path, 500), _one_line(message), _one_line(fix)))

    def note(self, text):
        self.result.notes.append(_one_line(text))

    def listed(self, items, limit, make, rest_path, rest_message, rest_fix):
        """Report the first ``limit`` items one by one, the rest as one counted problem."""
        for item in items[:limit]:
            self.problem(*make(item))
        if len(items) > limit:
            self.problem(rest_path, f"{len(items) - limit} more like this ({rest_message})", rest_fix)


def _normalize_split(split):
    key = str(split).lower()
    if key not in _SPLIT_ALIASES:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return _SPLIT_ALIASES[key]


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _decode_error(path, expected_size=None):
    """Return None when the image decodes, else a one-line reason."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if size == 0:
        return "zero-byte image file"
    if size > MAX_IMAGE_BYTES:
        return f"{size} bytes is too large for one image (limit {MAX_IMAGE_BYTES})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                actual = im.size
                im.load()
    except Exception as exc:  # Pillow raises many types on junk input
        return f"cannot decode image ({type(exc).__name__}: {exc})"
    if expected_size is not None and tuple(actual) != tuple(expected_size):
        return (f"image is {actual[0]}x{actual[1]} but the annotation file says "
                f"{expected_size[0]}x{expected_size[1]}")
    return None


def _decode_images(rep, paths, max_decode, fix, expected=None):
    """Decode up to ``max_decode`` images; report failures. Returns the count decoded."""
    todo = paths if max_decode is None else paths[:max(0, int(max_decode))]
    bad = []
    for p in todo:
        reason = _decode_error(p, None if expected is None else expected.get(p))
        if reason is not None:
            bad.append((p, reason))
    # Always catch zero-byte files, even past the decode budget (cheap stat).
    for p in paths[len(todo):]:
        try:
            if os.stat(p).st_size == 0:
                bad.append((p, "zero-byte image file"))
        except OSError as exc:
            bad.append((p, f"cannot read ({exc.strerror or exc})"))
    rep.listed(bad, MAX_LISTED_IMAGES, lambda b: (b[0], b[1], fix),
               os.path.dirname(bad[-1][0]) if bad else "", "undecodable images", fix)
    return len(todo)


def _listdir(rep, path, what):
    """Sorted os.DirEntry list, or None after reporting why it cannot be listed."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        rep.problem(path, f"cannot list {what} ({exc.strerror or exc})",
                    "check the path and its permissions")
        return None


# ---------------------------------------------------------------- cifar10

_CIFAR_FIX = "re-download and re-extract the CIFAR-10 binary version (cifar-10-binary.tar.gz)"


def _cifar_files(rep, folder, pattern):
    entries = _listdir(rep, folder, "folder")
    if entries is None:
        return None
    return [Path(e.path) for e in entries if fnmatch.fnmatchcase(e.name, pattern)]


def _check_cifar_file(rep, path):
    """Return (records, label counts) for a good file, None after reporting a problem."""
    try:
        if not path.is_file():
            rep.problem(path, "is not a regular file", "replace it with the CIFAR-10 batch file")
            return None
        size = path.stat().st_size
    except OSError as exc:
        rep.problem(path, f"cannot read ({exc.strerror or exc})", "check file permissions")
        return None
    if size == 0:
        rep.problem(path, "file is empty (0 bytes)", _CIFAR_FIX)
        return None
    if size % CIFAR_RECORD_BYTES:
        rep.problem(path, f"file is {size} bytes, not a multiple of {CIFAR_RECORD_BYTES} "
                          f"(1 label byte + 3072 pixel bytes per record): truncated or not "
                          f"CIFAR-10 binary", _CIFAR_FIX)
        return None
    if size > CIFAR_MAX_FILE_BYTES:
        rep.problem(path, f"file is {size} bytes, far larger than a CIFAR-10 batch "
                          f"({CIFAR_RECORDS_PER_FILE * CIFAR_RECORD_BYTES} bytes)", _CIFAR_FIX)
        return None
    try:
        records = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, CIFAR_RECORD_BYTES)
        labels = np.array(records[:, 0])
        del records
    except (OSError, ValueError) as exc:
        rep.problem(path, f"cannot read ({exc})", "check file permissions")
        return None
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        rep.problem(path, f"{bad.size} of {labels.size} records have labels outside 0..9 "
                          f"(first: record {int(bad[0])} has label {int(labels[bad[0]])}); this is "
                          f"not CIFAR-10 binary data (CIFAR-100 uses 2 label bytes)", _CIFAR_FIX)
        return None
    return labels.size, np.bincount(labels, minlength=10)


def _check_cifar_split(rep, folder, pattern, split_name, expected):
    files = _cifar_files(rep, folder, pattern)
    if files is None:
        return None
    if not files:
        stem = pattern.split("*")[0].rstrip("_")
        try:
            python_version = [n for n in os.listdir(folder) if n.startswith(stem) and "." not in n]
        except OSError:
            python_version = []
        if python_version:
            rep.problem(folder, f"holds {python_version[0]} without .bin: that is the CIFAR-10 "
                                f"python (pickle) version", "download the binary version "
                                "cifar-10-binary.tar.gz and extract it here")
        else:
            rep.problem(folder, f"no {expected} found for the {split_name} split",
                        f"put {expected} from the CIFAR-10 binary version (cifar-10-binary.tar.gz) "
                        f"in this folder")
        return None
    total, counts, short = 0, np.zeros(10, np.int64), 0
    for f in files:
        res = _check_cifar_file(rep, f)
        if res is not None:
            total += res[0]
            counts += res[1]
            short += res[0] < CIFAR_RECORDS_PER_FILE
    classes = int((counts > 0).sum())
    text = f"{split_name} {total} records in {len(files)} file{'s' * (len(files) != 1)} ({folder.name}/)"
    if total and classes < 10:
        text += f", only {classes} of 10 labels used"
    rep.short_files += short
    return text


def _check_cifar10(rep, root, num_classes, split):
    if num_classes is not None and num_classes != 10:
        rep.problem(root, f"num_classes is {num_classes} but CIFAR-10 has 10 classes",
                    "set num_classes: 10")
    entries = _listdir(rep, root, "data_dir")
    if entries is None:
        return
    names = {e.name for e in entries}
    want_train, want_val = split in ("both", "train"), split in ("both", "val")
    train_pattern, test_pattern = CIFAR_TRAIN_GLOB, CIFAR_TEST_GLOB
    parts = []
    if CIFAR_TRAIN_DIR in names or CIFAR_TEST_DIR in names:
        train_dir, test_dir = root / CIFAR_TRAIN_DIR, root / CIFAR_TEST_DIR
        if want_train:
            if train_dir.is_dir():
                parts.append(_check_cifar_split(rep, train_dir, train_pattern, "train",
                                                "data_batch_1.bin..data_batch_5.bin"))
            else:
                rep.problem(train_dir, "train split folder is missing (or not a folder)",
                            "create it and put data_batch_1.bin..data_batch_5.bin from "
                            "cifar-10-binary.tar.gz in it")
        if want_val:
            if test_dir.is_dir():
                parts.append(_check_cifar_split(rep, test_dir, test_pattern, "test", "test_batch.bin"))
            elif (train_dir / "test_batch.bin").is_file():
                rep.problem(test_dir, "test split folder is missing (test_batch.bin is still in "
                                      f"{CIFAR_TRAIN_DIR}/)",
                            f"mkdir {CIFAR_TEST_DIR} and move {CIFAR_TRAIN_DIR}/test_batch.bin into it")
            else:
                rep.problem(test_dir, "test split folder is missing (or not a folder)",
                            "create it and put test_batch.bin from cifar-10-binary.tar.gz in it")
        where = "layout cifar-10-batches-bin + cifar-10-verify-bin"
    else:
        has_train = any(fnmatch.fnmatchcase(n, train_pattern) for n in names)
        has_test = any(fnmatch.fnmatchcase(n, test_pattern) for n in names)
        if not (has_train or has_test):
            if "cifar-10-batches-py" in names or any(n.startswith("data_batch") for n in names):
                rep.problem(root, "this is the CIFAR-10 python (pickle) version, not the binary one",
                            "download cifar-10-binary.tar.gz and point --data_dir at its folder")
            else:
                rep.problem(root, f"no CIFAR-10 binary data: expected {CIFAR_TRAIN_DIR}/ and "
                                  f"{CIFAR_TEST_DIR}/ folders or data_batch_*.bin / test_batch.bin files",
                            f"point --data_dir at the folder holding {CIFAR_TRAIN_DIR} and "
                            f"{CIFAR_TEST_DIR} (demo data: {DEMO_HINT})")
            return
        found = [s for s, ok in (("train", has_train), ("test", has_test)) if ok]
        where = f"data_dir is a split folder itself; found the {' and '.join(found)} split"
        if want_train and has_train:
            parts.append(_check_cifar_split(rep, root, train_pattern, "train", "data_batch_*.bin"))
        if want_val and has_test:
            parts.append(_check_cifar_split(rep, root, test_pattern, "test", "test_batch.bin"))
        if split == "train" and not has_train:
            rep.problem(root, "no data_batch_*.bin files for the train split (only test_batch.bin)",
                        f"point --data_dir at {CIFAR_TRAIN_DIR} or its parent")
        if split == "val" and not has_test:
            rep.problem(root, "no test_batch.bin for the test split (only data_batch_*.bin)",
                        f"point --data_dir at {CIFAR_TEST_DIR} or its parent")
        if split == "both" and len(found) == 1:
            other = CIFAR_TEST_DIR if has_train else CIFAR_TRAIN_DIR
            rep.note(f"only the {found[0]} split was checked; the other one lives in {other}/")
    parts = [p for p in parts if p]
    if rep.short_files:
        rep.note(f"{rep.short_files} file(s) hold fewer than {CIFAR_RECORDS_PER_FILE} records: fine "
                 f"for the zoo's numpy reader, but mindspore.dataset.Cifar10Dataset (2.10) only "
                 f"reads files of exactly {CIFAR_RECORDS_PER_FILE} records")
    rep.parts.append(f"{where}; " + ", ".join(parts) if parts else where)


# ---------------------------------------------------------------- imagenet

def _scan_image_split(rep, folder):
    """Return dict with classes {name: [image paths]}, loose images, non-image count."""
    entries = _listdir(rep, folder, "split folder")
    if entries is None:
        return None
    out = {"classes": {}, "loose": [], "other": 0, "nested": 0}
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            sub = _listdir(rep, e.path, "class folder")
            if sub is None:
                out["classes"][e.name] = []
                continue
            images = []
            for f in sub:
                if f.name.startswith("."):
                    continue
                try:
                    if f.is_dir() and not _is_image_name(f.name):
                        out["nested"] += 1
                        continue
                except OSError:
                    pass
                if _is_image_name(f.name):
                    images.append(f.path)
                else:
                    out["other"] += 1
            out["classes"][e.name] = images
        elif _is_image_name(e.name):
            out["loose"].append(e.path)
        else:
            out["other"] += 1
    return out


def _check_imagenet(rep, root, num_classes, split, max_decode):
    want = [s for s in ("train", "val") if split in ("both", s)]
    dirs = {"train": root / "train"}
    dirs["val"] = next((root / n for n in IMAGENET_VAL_DIRS if (root / n).is_dir()), root / "val")
    scans = {}
    if not any(dirs[s].is_dir() for s in want) and _looks_like_split(root):
        rep.problem(root, "has class folders but no " + " or ".join(f"{s}/" for s in want) +
                    ": it looks like a single split folder",
                    "point --data_dir at the folder that holds train/ and val/ (one subfolder per "
                    "class in each)")
        return
    for s in want:
        d = dirs[s]
        if not d.is_dir():
            rep.problem(d, f"{s} split folder is missing (or not a folder)",
                        f"create {d.name}/ with one subfolder of images per class")
            continue
        scans[s] = _scan_image_split(rep, d)
    fix_img = "delete or replace the file (re-extract it from the original archive)"
    total_decoded, total_other, parts = 0, 0, []
    for s, scan in scans.items():
        if scan is None:
            continue
        d = dirs[s]
        classes, loose = scan["classes"], scan["loose"]
        total_other += scan["other"] + scan["nested"]
        if not classes:
            if loose:
                rep.problem(d, f"holds {len(loose)} images directly and no class folders; "
                               f"ImageFolderDataset needs one subfolder per class",
                            "sort the images into class folders named like train/ (for ILSVRC2012 "
                            "val use the devkit labels, e.g. the common valprep.sh script)")
            else:
                rep.problem(d, "has no class folders", "add one subfolder of images per class")
            continue
        if loose:
            rep.problem(d, f"{len(loose)} images sit directly in {d.name}/ outside any class folder "
                           f"and are ignored (first: {os.path.basename(loose[0])})",
                        "move them into their class folders")
        empty = [c for c, imgs in classes.items() if not imgs]
        rep.listed(empty, MAX_LISTED,
                   lambda c, d=d: (d / c, "class folder has no images (it still takes a label)",
                                   "add the class's images or delete the folder from train/ and val/"),
                   d, "empty class folders", "add images or delete the folders")
        paths = [p for imgs in classes.values() for p in imgs]
        budget = None if max_decode is None else max(0, max_decode - total_decoded)
        total_decoded += _decode_images(rep, paths, budget, fix_img)
        parts.append(f"{s} {len(paths)} images in {len(classes)} classes ({d.name}/)")
    tr = scans.get("train") or {}
    va = scans.get("val") or {}
    if tr.get("classes") and va.get("classes"):
        tset, vset = set(tr["classes"]), set(va["classes"])
        why = "labels come from sorted folder names, so train and val must hold the same classes"
        rep.listed(sorted(tset - vset), MAX_LISTED,
                   lambda c: (dirs["val"] / c, f"class folder missing from {dirs['val'].name}/ "
                                               f"(it exists in train/); {why}",
                              f"add {dirs['val'].name}/{c} with that class's validation images"),
                   dirs["val"], "class folders missing from val", "add them")
        rep.listed(sorted(vset - tset), MAX_LISTED,
                   lambda c: (dirs["val"] / c, f"class folder is not in train/; {why}",
                              f"remove {dirs['val'].name}/{c} or add train/{c}"),
                   dirs["val"], "val class folders not in train", "remove them")
    counted = tr.get("classes") or va.get("classes")
    if counted and num_classes is not None:
        n = len(counted)
        source = dirs["train"] if tr.get("classes") else dirs["val"]
        if n == num_classes - 1:
            rep.note(f"num_classes {num_classes} = {n} class folders + 1, as in MobileNetV1's "
                     f"1001-class recipe (label {num_classes - 1} is never used)")
        elif n != num_classes:
            rep.problem(source, f"has {n} class folders but num_classes is {num_classes}",
                        f"set num_classes: {n} (or {n + 1} for the MobileNetV1 1001-class recipe)")
    if total_other:
        rep.note(f"{total_other} non-image entries in class folders ignored here; "
                 f"mindspore.dataset.ImageFolderDataset reads every entry unless extensions= is set")
    decoded = f"{total_decoded} images decoded"
    rep.parts.append(", ".join(parts + [decoded]) if parts else decoded)


def _looks_like_split(path):
    """True when ``path`` holds a subfolder that directly contains image files."""
    try:
        with os.scandir(path) as it:
            subdirs = [e.path for _, e in zip(range(2000), it) if e.is_dir()]
        for sub in subdirs[:20]:
            with os.scandir(sub) as it:
                if any(_is_image_name(e.name) for _, e in zip(range(200), it)):
                    return True
    except OSError:
        pass
    return False


# ---------------------------------------------------------------- coco

def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _load_json(rep, path):
    fix = "re-download annotations_trainval2017.zip and extract it into this folder"
    try:
        size = path.stat().st_size
    except OSError as exc:
        rep.problem(path, f"cannot read ({exc.strerror or exc})", "check the path and permissions")
        return None
    if size == 0:
        rep.problem(path, "annotation file is empty (0 bytes)", fix)
        return None
    if size > MAX_JSON_BYTES:
        rep.problem(path, f"{size} bytes is too large for a COCO annotation file (limit {MAX_JSON_BYTES})",
                    fix)
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
            if not head.startswith(b"{"):
                rep.problem(path, f"not a JSON object (starts with {head[:12]!r})", fix)
                return None
            f.seek(0)
            doc = json.loads(f.read(size + 1).decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        rep.problem(path, f"not UTF-8 text (byte {exc.start}): not a JSON file", fix)
        return None
    except json.JSONDecodeError as exc:
        rep.problem(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", fix)
        return None
    except (OSError, MemoryError, RecursionError, ValueError) as exc:
        rep.problem(path, f"cannot read ({type(exc).__name__}: {exc})", fix)
        return None
    if not isinstance(doc, dict):
        rep.problem(path, f"top level is a {type(doc).__name__}, not a COCO object", fix)
        return None
    bad = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if bad:
        rep.problem(path, "missing or non-list key(s): " + ", ".join(bad) +
                    " (a COCO instances file needs images, annotations and categories lists)", fix)
        return None
    return doc


def _image_entry_error(i, e):
    if not isinstance(e, dict):
        return f"images[{i}] is a {type(e).__name__}, not an object"
    if not _is_int(e.get("id")):
        return f"images[{i}]: 'id' must be an int, got {type(e.get('id')).__name__}"
    name = e.get("file_name")
    if not isinstance(name, str) or not name or "\0" in name:
        return f"images[{i}] (id {e['id']}): 'file_name' must be a non-empty string"
    for k in ("width", "height"):
        if not _is_int(e.get(k)) or e[k] <= 0:
            return f"images[{i}] (id {e['id']}): '{k}' must be a positive int, got {e.get(k)!r:.40}"
    return None


def _ann_entry_error(i, a):
    if not isinstance(a, dict):
        return f"annotations[{i}] is a {type(a).__name__}, not an object"
    for k in ("image_id", "category_id"):
        if not _is_int(a.get(k)):
            return f"annotations[{i}]: '{k}' must be an int, got {type(a.get(k)).__name__}"
    bbox = a.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
        return f"annotations[{i}] (image_id {a['image_id']}): 'bbox' must be 4 numbers [x, y, w, h]"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"annotations[{i}] (image_id {a['image_id']}): negative box size {bbox}"
    if a.get("iscrowd", 0) not in (0, 1):
        return f"annotations[{i}]: 'iscrowd' must be 0 or 1"
    return None


def _check_coco_split(rep, root, s, max_decode, decoded_so_far):
    ann_path = root / "annotations" / f"instances_{s}2017.json"
    img_dir = root / f"{s}2017"
    if not ann_path.is_file():
        rep.problem(ann_path, "annotation file is missing",
                    "extract annotations_trainval2017.zip so that annotations/instances_"
                    f"{s}2017.json exists (demo data: {DEMO_HINT})")
    if not img_dir.is_dir():
        rep.problem(img_dir, "image folder is missing (or not a folder)", f"extract {s}2017.zip into {root}")
    if not ann_path.is_file():
        return None
    doc = _load_json(rep, ann_path)
    if doc is None:
        return None
    fix_json = f"fix or regenerate {ann_path.name}"

    cats, bad_cats = {}, []
    for i, c in enumerate(doc["categories"]):
        if isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str):
            if c["id"] in cats:
                bad_cats.append(f"categories[{i}]: duplicate id {c['id']}")
            cats[c["id"]] = c["name"]
        else:
            bad_cats.append(f"categories[{i}] needs an int 'id' and a string 'name'")
    if bad_cats:
        rep.problem(ann_path, f"{len(bad_cats)} malformed category entries (first: {bad_cats[0]})", fix_json)
    if not cats:
        rep.problem(ann_path, "lists no categories", fix_json)

    images, bad_imgs, dup_imgs, listed_ids = {}, [], [], set()
    for i, e in enumerate(doc["images"]):
        if isinstance(e, dict) and _is_int(e.get("id")):
            listed_ids.add(e["id"])
        err = _image_entry_error(i, e)
        if err:
            bad_imgs.append(err)
        elif e["id"] in images:
            dup_imgs.append(e["id"])
        else:
            images[e["id"]] = e
    if bad_imgs:
        rep.problem(ann_path, f"{len(bad_imgs)} of {len(doc['images'])} image entries are malformed "
                              f"(first: {bad_imgs[0]})", fix_json)
    if dup_imgs:
        rep.problem(ann_path, f"{len(dup_imgs)} duplicate image ids (first: {dup_imgs[0]})", fix_json)
    if not doc["images"]:
        rep.problem(ann_path, "lists no images", fix_json)

    anns = doc["annotations"]
    bad_anns, orphan, unknown_cat = [], [], []
    crowd = degenerate = outside = 0
    usable_images = set()
    annotated = set()
    for i, a in enumerate(anns):
        err = _ann_entry_error(i, a)
        if err:
            bad_anns.append(err)
            continue
        if a["image_id"] not in images:
            if a["image_id"] not in listed_ids:  # else its image entry is malformed (reported)
                orphan.append(a)
            continue
        annotated.add(a["image_id"])
        if cats and a["category_id"] not in cats:
            unknown_cat.append(a)
        x, y, w, h = a["bbox"]
        img = images[a["image_id"]]
        if x < -1 or y < -1 or x + w > img["width"] + 1 or y + h > img["height"] + 1:
            outside += 1
        if a.get("iscrowd", 0) == 1:
            crowd += 1
        elif w <= 1 or h <= 1:
            degenerate += 1
        else:
            usable_images.add(a["image_id"])
    if not anns:
        rep.problem(ann_path, "has no annotations (empty 'annotations' list)",
                    "use the instances_*.json file, not image_info_*.json or captions_*.json")
    if bad_anns:
        rep.problem(ann_path, f"{len(bad_anns)} of {len(anns)} annotation entries are malformed "
                              f"(first: {bad_anns[0]})", fix_json)
    if orphan:
        rep.problem(ann_path, f"{len(orphan)} annotations refer to image ids that are not in 'images' "
                              f"(first: annotation id {orphan[0].get('id')!r:.20} -> image_id "
                              f"{orphan[0]['image_id']})", fix_json)
    if unknown_cat:
        rep.problem(ann_path, f"{len(unknown_cat)} annotations use category ids not in 'categories' "
                              f"(first: {unknown_cat[0]['category_id']})", fix_json)
    if s == "train" and anns and images and not usable_images and not bad_anns:
        rep.problem(ann_path, "no image has a usable box (all are crowd or at most 1 px wide/high), "
                              "so training has nothing to learn from", fix_json)
    if outside:
        rep.note(f"{outside} {s} boxes extend more than 1 px outside their image")

    # Image files.
    missing, present, expected = [], [], {}
    if img_dir.is_dir():
        for e in images.values():
            p = os.path.join(img_dir, e["file_name"])
            if os.path.isfile(p):
                present.append(p)
                expected[p] = (e["width"], e["height"])
            else:
                missing.append(p)
        rep.listed(missing, MAX_LISTED,
                   lambda p: (p, f"image listed in {ann_path.name} does not exist",
                              f"restore it from {s}2017.zip or remove its entry from the JSON"),
                   img_dir, f"missing images, {len(missing)} in all",
                   f"restore the {s}2017 images or regenerate {ann_path.name}")
    budget = None if max_decode is None else max(0, max_decode - decoded_so_far)
    decoded = _decode_images(rep, present, budget,
                             f"replace it from {s}2017.zip or fix its width/height in {ann_path.name}",
                             expected)
    extras = []
    if crowd:
        extras.append(f"{crowd} crowd")
    if degenerate:
        extras.append(f"{degenerate} degenerate box{'es' * (degenerate != 1)}")
    text = f"{s} {len(images)} images / {len(anns)} annotations"
    if extras:
        text += f" ({', '.join(extras)})"
    return {"text": text, "cats": cats, "decoded": decoded, "path": ann_path}


def _check_coco(rep, root, num_classes, split, max_decode):
    results, decoded = [], 0
    for s in ("train", "val"):
        if split in ("both", s):
            r = _check_coco_split(rep, root, s, max_decode, decoded)
            if r is not None:
                results.append(r)
                decoded += r["decoded"]
    if len(results) == 2 and results[0]["cats"] and results[1]["cats"] \
            and results[0]["cats"] != results[1]["cats"]:
        rep.problem(results[1]["path"], "categories differ from instances_train2017.json, so "
                                        "class indices would not match between train and eval",
                    "use annotation files from the same COCO release")
    cats = next((r["cats"] for r in results if r["cats"]), None)
    if cats and num_classes is not None and len(cats) != num_classes:
        rep.problem(results[0]["path"], f"lists {len(cats)} categories but num_classes is {num_classes}",
                    f"set num_classes: {len(cats)}")
    parts = [r["text"] for r in results]
    if cats:
        parts.append(f"{len(cats)} categories")
    parts.append(f"{decoded} images decoded")
    rep.parts.append(", ".join(parts))


# ---------------------------------------------------------------- entry points

def inspect_dataset(dataset, data_dir, num_classes=None, split="both", *, max_decode=None):
    """Check ``data_dir`` and return a :class:`CheckReport` (problems, summary, notes).

    ``max_decode`` caps how many images are fully decoded (``None``: all);
    zero-byte images are always found.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    split = _normalize_split(split)
    if num_classes is not None and (not _is_int(num_classes) or num_classes <= 0):
        raise DataError(f"num_classes must be a positive integer, got {num_classes!r}")
    root = Path(data_dir)
    rep = _Report(dataset, root)
    if not root.exists():
        rep.problem(root, "data_dir does not exist",
                    f"pass --data_dir pointing at the {dataset} folder (demo data: {DEMO_HINT})")
    elif not root.is_dir():
        rep.problem(root, "data_dir is a file, not a folder",
                    f"pass --data_dir pointing at the {dataset} folder")
    elif dataset == "cifar10":
        _check_cifar10(rep, root, num_classes, split)
    elif dataset == "imagenet":
        _check_imagenet(rep, root, num_classes, split, max_decode)
    else:
        _check_coco(rep, root, num_classes, split, max_decode)
    detail = "; ".join(p for p in rep.parts if p)
    rep.result.summary = f"{dataset} at {root}" + (f": {detail}" if detail else "")
    return rep.result


def check_dataset(dataset, data_dir, num_classes=None, split="both", *, max_decode=None):
    """Return the list of :class:`Problem` found in ``data_dir`` (empty when it looks fine)."""
    return inspect_dataset(dataset, data_dir, num_classes, split, max_decode=max_decode).problems


def require_valid_dataset(dataset, data_dir, num_classes=None, split="both", *, max_decode=None):
    """Like :func:`inspect_dataset` but raise :class:`DataError` on the first problem."""
    report = inspect_dataset(dataset, data_dir, num_classes, split, max_decode=max_decode)
    if report.problems:
        p = report.problems[0]
        more = len(report.problems) - 1
        tail = (f" ({more} more; run python -m src.datasets.check --dataset {dataset} "
                f"--data_dir {data_dir} to list them)") if more else ""
        raise DataError(f"{p.path}: {p.message}; fix: {p.fix}{tail}")
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m src.datasets.check",
        description="Check a dataset folder before training; prints OK or one line per problem "
                    "and exits 1 when there is any problem.")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data_dir", required=True, help="dataset folder")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="number of classes the model will be built with")
    parser.add_argument("--split", default="both", choices=SPLITS, help="which split(s) to check")
    parser.add_argument("--max_decode", type=int, default=None,
                        help="decode at most this many images (default: all)")
    args = parser.parse_args(argv)
    try:
        report = inspect_dataset(args.dataset, args.data_dir, args.num_classes, args.split,
                                 max_decode=args.max_decode)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if report.ok:
        print(report.ok_line())
        return 0
    for p in report.problems:
        print(p)
    return 1


if __name__ == "__main__":
    sys.exit(main())

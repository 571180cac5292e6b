"""COCO 2017 detection data: format validation, reader, multi-scale batches, eval pipeline.

Layout (``data.dir``)::

    train2017/*.jpg  val2017/*.jpg  annotations/instances_{train,val}2017.json

``data.train_dir`` / ``data.eval_dir`` / ``data.train_ann_file`` /
``data.eval_ann_file`` override the derived paths (e.g. a fine-tuning set).

Reader rules (as upstream): category ids are mapped to contiguous classes in
sorted id order (and back for results); crowd boxes and degenerate boxes
(w <= 1 or h <= 1 px) are dropped, and so are boxes lying wholly outside
their image; training skips images left without boxes; evaluation keeps
every image. Images are decoded with PIL and converted to RGB (grayscale
replicated, transparency composited over white, 16-bit scaled).
:meth:`CocoDetectionReader.validate` lists every problem of a split (JSON
structure, ids, boxes, image files) without decoding; ``full=True`` decodes.

Training batches are built whole, by batch index, in :class:`TrainBatchSource`:
the input size is chosen per block of ``size_interval`` batches from a
seeded RNG (the same on every rank), every image goes through the model's
per-sample transform (its augmentation), then the model's target function.
Evaluation resizes to ``image_size`` without letterbox (as upstream) and
yields ``(image, [orig_w, orig_h], image_id)``.
"""
import contextlib
import dataclasses
import io
import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from src.datasets.coco_categories import COCO_CATEGORY_IDS, COCO_CLASS_NAMES  # noqa: F401
from src.datasets.common import (CHECK_HINT, DEMO_HINT, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB,
                                 MAX_LISTED, Problem, Problems, check_images, clamp_workers,
                                 decode_pixel_limit, file_size_problem, one_line, raise_first)
from src.datasets.letterbox import letterbox
from src.errors import DataError

SPLIT_FOLDERS = {"train": "train2017", "eval": "val2017"}
MAX_JSON_BYTES = 2 * 2 ** 30         # instances_train2017.json is about 450 MB
DOWNLOAD_FIX = "re-download annotations_trainval2017.zip and extract it into this folder"
_MEAN = np.asarray(IMAGENET_MEAN_RGB, np.float32)
_STD = np.asarray(IMAGENET_STD_RGB, np.float32)

# MindSpore's dataset package and pycocotools are imported where used, so that
# python -m src.datasets.check does not load them.
# Data workers run their own processes; OpenCV's thread pool on top would oversubscribe the cores.
cv2.setNumThreads(0)


# ---------------------------------------------------------------- paths and annotations

def coco_split_paths(cfg, split: str) -> Tuple[str, str]:
    """``(image folder, annotation file)`` of ``split`` ('train' or 'eval') from the config."""
    training = split == "train"
    image_dir = cfg.data.train_dir if training else cfg.data.eval_dir
    ann_file = cfg.data.train_ann_file if training else cfg.data.eval_ann_file
    folder = SPLIT_FOLDERS[split]
    if not (image_dir and ann_file) and not cfg.data.dir:
        raise DataError(f"no COCO path given; pass --data_dir=<COCO root holding {folder}/ and "
                        f"annotations/> (or --data.{split}_dir and --data.{split}_ann_file)")
    image_dir = image_dir or os.path.join(cfg.data.dir, folder)
    ann_file = ann_file or os.path.join(cfg.data.dir, "annotations", f"instances_{folder}.json")
    return image_dir, ann_file


def load_coco_annotations(ann_file: str):
    """A pycocotools COCO object (its progress prints silenced); DataError when unusable."""
    from pycocotools.coco import COCO  # pylint: disable=import-outside-toplevel
    if not ann_file or not os.path.isfile(ann_file):
        raise DataError(f"COCO annotation file {ann_file!r} not found; pass --data_dir=<COCO root> "
                        f"(with annotations/instances_*.json) or the file itself with "
                        f"--data.train_ann_file / --data.eval_ann_file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(ann_file)
    except (ValueError, KeyError, TypeError, AssertionError, OSError, RecursionError,
            AttributeError, IndexError) as exc:
        raise DataError(f"COCO annotation file {ann_file!r} cannot be read ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); it must be COCO instances JSON") from None


def read_annotation_json(path, problems: Problems):
    """The annotation file as a dict with images/annotations/categories lists, or None
    after adding why it is unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        problems.error(path, f"cannot read ({exc.strerror or exc})",
                       "check the path and permissions")
        return None
    if size == 0:
        problems.error(path, "annotation file is empty (0 bytes)", DOWNLOAD_FIX)
        return None
    if size > MAX_JSON_BYTES:
        problems.error(path, f"{size} bytes is too large for a COCO annotation file (limit "
                             f"{MAX_JSON_BYTES})", DOWNLOAD_FIX)
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
            if not head.startswith(b"{"):
                problems.error(path, f"not a JSON object (starts with {head[:12]!r})",
                               DOWNLOAD_FIX)
                return None
            f.seek(0)
            doc = json.loads(f.read(size + 1).decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        problems.error(path, f"not UTF-8 text (byte {exc.start}): not a JSON file", DOWNLOAD_FIX)
        return None
    except json.JSONDecodeError as exc:
        problems.error(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column "
                             f"{exc.colno})", DOWNLOAD_FIX)
        return None
    except (OSError, MemoryError, RecursionError, ValueError) as exc:
        problems.error(path, f"cannot read ({type(exc).__name__}: {exc})", DOWNLOAD_FIX)
        return None
    if not isinstance(doc, dict):
        problems.error(path, f"top level is a {type(doc).__name__}, not a COCO object",
                       DOWNLOAD_FIX)
        return None
    bad = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if bad:
        problems.error(path, "missing or non-list key(s): " + ", ".join(bad) + " (a COCO "
                             "instances file needs images, annotations and categories lists)",
                       DOWNLOAD_FIX)
        return None
    return doc


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _image_entry_error(i, e):
    if not isinstance(e, dict):
        return f"images[{i}] is a {type(e).__name__}, not an object"
    if not _is_int(e.get("id")):
        return f"images[{i}]: 'id' must be an int, got {type(e.get('id')).__name__}"
    name = e.get("file_name")
    if not isinstance(name, str) or not name or "\0" in name:
        return f"images[{i}] (id {e['id']}): 'file_name' must be a non-empty string"
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        return (f"images[{i}] (id {e['id']}): file_name {name!r:.80} must be a relative path "
                f"inside the image folder")
    for k in ("width", "height"):
        if not _is_int(e.get(k)) or e[k] <= 0:
            return f"images[{i}] (id {e['id']}): '{k}' must be a positive int, got {e.get(k)!r:.40}"
    return None


_NUMBER_TYPES = (int, float)  # bool excluded: type(True) is bool


def _ann_entry_error(i, a):
    if type(a) is dict:  # the common, well-formed entry: decided without the checks below
        bbox = a.get("bbox")
        if (type(a.get("image_id")) is int and type(a.get("category_id")) is int
                and type(bbox) is list and len(bbox) == 4
                and all(type(v) in _NUMBER_TYPES for v in bbox) and bbox[2] >= 0 <= bbox[3]
                and a.get("iscrowd", 0) in (0, 1) and math.isfinite(sum(bbox))):
            return None
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


def _box_outside(bbox, image) -> bool:
    """True when the box does not overlap its image at all."""
    x, y, w, h = bbox
    return x >= image["width"] or y >= image["height"] or x + w <= 0 or y + h <= 0


def read_rgb(path: str) -> np.ndarray:
    """Decode an image file to ``uint8 (H, W, 3)`` RGB, whatever its mode.

    Grayscale is replicated to three channels, palette images are expanded,
    transparency (RGBA, LA, palette with transparency) is composited over
    white, 16-bit images are scaled to 8 bits, CMYK/YCbCr are converted.
    """
    reason = file_size_problem(path)
    if reason:
        raise DataError(f"{path}: {reason}; fix: re-download or remove it")
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb_array(img)
    except Image.DecompressionBombError:
        raise DataError(f"{path}: image is larger than the decoder's limit of "
                        f"{decode_pixel_limit()} pixels (Pillow's decompression-bomb guard); "
                        f"fix: downscale it or remove it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image {path!r} ({one_line(exc, 150)}); re-download or "
                        f"remove it") from None


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(img, np.float64) * (255.0 / 65535.0)
        return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))




def parse_categories(doc, ann_path, problems: Problems) -> Dict[int, str]:
    """``{category id: name}`` of an annotation dict; malformed, duplicated or missing
    categories are added to ``problems``."""
    cats, malformed, first_index, duplicated = {}, [], {}, []
    for i, c in enumerate(doc["categories"]):
        if isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str):
            if c["id"] in cats:
                duplicated.append((c["id"], first_index[c["id"]], i))
            else:
                first_index[c["id"]] = i
            cats[c["id"]] = c["name"]
        else:
            malformed.append(f"categories[{i}] needs an int 'id' and a string 'name'")
    name = os.path.basename(str(ann_path))
    if malformed:
        problems.error(ann_path, f"{len(malformed)} malformed category entries (first: "
                                 f"{malformed[0]})", f"fix or regenerate {name}")
    if duplicated:
        cat_id, first, again = duplicated[0]
        problems.error(ann_path, f"{len(duplicated)} duplicated category id(s) (first: id "
                                 f"{cat_id} in categories[{first}] and categories[{again}]); "
                                 f"class indices would be ambiguous",
                       f"give every category its own id in {name}")
    if not cats:
        problems.error(ann_path, "lists no categories", f"fix or regenerate {name}")
    return cats


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of the split: id, file, size, and boxes ``(n, 5)`` x1, y1, x2, y2, class."""

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray


class CocoDetectionReader:
    """The images and usable boxes of one COCO split, held as compact records.

    :meth:`validate` lists the split's problems; ``records`` (and so every
    data method) raises the first one. With ``strict=False`` the constructor
    only stores the paths, for a check that wants the whole list.

    Args:
        image_dir: folder holding the images named in the JSON.
        ann_file: COCO instances JSON.
        training: drop images without usable boxes (evaluation keeps all).
        num_classes: expected number of categories (checked), or None.
    """

    def __init__(self, image_dir: str, ann_file: str, training: bool,
                 num_classes: Optional[int] = None, *, strict: bool = True):
        self.image_dir, self.ann_file, self.training = image_dir, ann_file, training
        self.num_classes = num_classes
        self.category_ids: Tuple[int, ...] = ()
        self.class_names: Tuple[str, ...] = ()
        self.decoded = 0
        self._kept_ids: list = []
        self._kept_boxes = None
        self._cheap: Optional[List[Problem]] = None
        self._images: Dict[int, dict] = {}
        self._present: List[str] = []
        self._records: Optional[List[ImageRecord]] = None
        self.categories: Dict[int, str] = {}
        self._listed_ids: set = set()
        self._present_by_id: Dict[int, str] = {}
        self._summary = ""
        if strict:
            _ = self.records

    @property
    def split_name(self) -> str:
        return "train" if self.training else "val"

    # ------------------------------------------------------------ validation

    def validate(self, full: bool = False, max_decode: Optional[int] = None) -> List[Problem]:
        """Problems of this split; ``full`` also decodes up to ``max_decode`` images (None: all)."""
        if self._cheap is None:
            self._cheap = self._validate_layout()
        problems = Problems(self._cheap)
        self.decoded = 0
        if full and self._present:
            expected = {p: (self._images[i]["width"], self._images[i]["height"])
                        for i, p in self._present_by_id.items()}
            fix = (f"replace it from {self._folder_name()}.zip or fix its width/height in "
                   f"{os.path.basename(self.ann_file)}")
            self.decoded = check_images(problems, self._present, max_decode, fix, expected)
        return problems

    def _folder_name(self) -> str:
        return os.path.basename(os.path.normpath(self.image_dir)) or "the image"

    def _validate_layout(self) -> List[Problem]:
        problems = Problems()
        ann_path, img_dir = Path(self.ann_file), Path(self.image_dir)
        name = ann_path.name
        if not ann_path.is_file():
            problems.error(ann_path, "annotation file not found (missing or not a file)",
                           f"extract annotations_trainval2017.zip so that annotations/{name} "
                           f"exists under --data_dir, or name the file with "
                           f"--data.{'train' if self.training else 'eval'}_ann_file "
                           f"(demo data: {DEMO_HINT})")
        if not img_dir.is_dir():
            problems.error(img_dir, "image folder not found (missing or not a folder)",
                           f"extract {self._folder_name()}.zip under --data_dir, or name the "
                           f"folder with --data.{'train' if self.training else 'eval'}_dir")
        if not ann_path.is_file():
            return problems
        doc = read_annotation_json(ann_path, problems)
        if doc is None:
            return problems
        fix_json = f"fix or regenerate {name}"
        self._check_categories(problems, doc, ann_path, fix_json)
        self._check_images(problems, doc, ann_path, fix_json)
        self._check_annotations(problems, doc, ann_path, fix_json)
        if img_dir.is_dir():
            self._check_files(problems, img_dir, name)
        return problems

    def _check_categories(self, problems, doc, ann_path, fix_json):
        cats = parse_categories(doc, ann_path, problems)
        self.categories = cats
        self.category_ids = tuple(sorted(cats))
        self.class_names = tuple(cats[c] for c in self.category_ids)
        if cats and self.num_classes is not None and len(cats) != self.num_classes:
            problems.error(ann_path, f"lists {len(cats)} categories but num_classes is "
                                     f"{self.num_classes}",
                           f"set num_classes: {len(cats)} (--num_classes={len(cats)})")

    def _check_images(self, problems, doc, ann_path, fix_json):
        images, bad, dup, self._listed_ids = {}, [], [], set()
        for i, e in enumerate(doc["images"]):
            if isinstance(e, dict) and _is_int(e.get("id")):
                self._listed_ids.add(e["id"])
            err = _image_entry_error(i, e)
            if err:
                bad.append(err)
            elif e["id"] in images:
                dup.append(e["id"])
            else:
                images[e["id"]] = e
        if bad:
            problems.error(ann_path, f"{len(bad)} of {len(doc['images'])} image entries are "
                                     f"malformed (first: {bad[0]})", fix_json)
        if dup:
            problems.error(ann_path, f"{len(dup)} duplicate image ids (first: {dup[0]})", fix_json)
        if not doc["images"]:
            problems.error(ann_path, "lists no images; a detection split needs annotated images",
                           fix_json)
        self._images = images

    def _check_annotations(self, problems, doc, ann_path, fix_json):
        images, cats, anns = self._images, self.categories, doc["annotations"]
        bad, orphan, unknown = [], [], []
        crowd = degenerate = sticking_out = usable = 0
        outside, usable_images, kept = [], set(), []
        class_of = {cat: k for k, cat in enumerate(self.category_ids)}
        for i, a in enumerate(anns):
            err = _ann_entry_error(i, a)
            if err:
                bad.append(err)
                continue
            if a["image_id"] not in images:
                if a["image_id"] not in self._listed_ids:  # else its entry is malformed (reported)
                    orphan.append(a)
                continue
            if a["category_id"] not in cats:
                if cats:  # with no categories at all, that one problem is reported
                    unknown.append(a)
                continue
            x, y, w, h = a["bbox"]
            img = images[a["image_id"]]
            if x < -1 or y < -1 or x + w > img["width"] + 1 or y + h > img["height"] + 1:
                sticking_out += 1
            if a.get("iscrowd", 0) == 1:
                crowd += 1
            elif w <= 1 or h <= 1:
                degenerate += 1
            elif _box_outside(a["bbox"], img):
                outside.append(a)
            else:
                usable += 1
                usable_images.add(a["image_id"])
                kept.append((a["image_id"], x, y, x + w, y + h, class_of[a["category_id"]]))
        if not anns:
            problems.error(ann_path, "has no annotations (empty 'annotations' list)",
                           "use the instances_*.json file, not image_info_*.json or captions_*.json")
        if bad:
            problems.error(ann_path, f"{len(bad)} of {len(anns)} annotation entries are malformed "
                                     f"(first: {bad[0]})", fix_json)
        if orphan:
            problems.error(ann_path, f"{len(orphan)} annotations refer to image ids that are not "
                                     f"in 'images' (first: annotation id "
                                     f"{orphan[0].get('id')!r:.20} -> image_id "
                                     f"{orphan[0]['image_id']})", fix_json)
        if unknown:
            problems.error(ann_path, f"{len(unknown)} annotations use category ids not in "
                                     f"'categories' (first: {unknown[0]['category_id']})",
                           f"add the missing categories to {ann_path.name} or fix the "
                           f"annotations' category_id")
        if outside:
            first = outside[0]
            text = (f"{len(outside)} of {len(outside) + usable} boxes lie wholly outside their "
                    f"image (first: annotation id {first.get('id')!r:.20} of image "
                    f"{first['image_id']}, bbox {first['bbox']} on "
                    f"{images[first['image_id']]['width']}x"
                    f"{images[first['image_id']]['height']})")
            if usable:
                problems.warn(ann_path, text + "; they are ignored",
                              f"fix their bbox or the image's width/height in {ann_path.name}")
            else:
                problems.error(ann_path, text + ": there is nothing to learn from or score",
                               f"fix the boxes (COCO bbox is [x, y, width, height] in pixels) or "
                               f"the images' width/height in {ann_path.name}")
        elif (self.training and anns and images and not usable and not bad and not unknown):
            problems.error(ann_path, "no image has a usable box (all are crowd or at most 1 px "
                                     "wide/high), so training has nothing to learn from", fix_json)
        if sticking_out:
            problems.note(ann_path, f"{sticking_out} {self.split_name} boxes extend more than "
                                    f"1 px outside their image")
        extras = []
        if crowd:
            extras.append(f"{crowd} crowd")
        if degenerate:
            extras.append(f"{degenerate} degenerate box{'es' * (degenerate != 1)}")
        with np.errstate(over="ignore"):
            boxes = np.asarray([row[1:] for row in kept], np.float32).reshape(-1, 5)
        huge = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
        if huge.size:
            problems.error(ann_path, f"{huge.size} boxes have coordinates too large for float32 "
                                     f"(first: one of image {kept[huge[0]][0]})", fix_json)
        self._kept_ids, self._kept_boxes = [row[0] for row in kept], boxes
        self._summary = (f"{self.split_name} {len(images)} images / {len(anns)} annotations"
                         + (f" ({', '.join(extras)})" if extras else ""))

    def _check_files(self, problems, img_dir, ann_name):
        try:
            on_disk = set(os.listdir(img_dir))
        except OSError as exc:
            problems.error(img_dir, f"cannot list the image folder ({exc.strerror or exc})",
                           "check the path and its permissions")
            return
        missing, unusable, self._present_by_id = [], [], {}
        for image_id in sorted(self._images):
            path = os.path.join(img_dir, self._images[image_id]["file_name"])
            if self._images[image_id]["file_name"] not in on_disk and not os.path.isfile(path):
                missing.append(path)
                continue
            reason = file_size_problem(path)
            if reason:
                unusable.append((path, reason))
            self._present_by_id[image_id] = path
        self._present = list(self._present_by_id.values())
        folder = self._folder_name()
        problems.listed(missing, MAX_LISTED,
                        lambda p: (p, f"image listed in {ann_name} does not exist",
                                   f"restore it from {folder}.zip or remove its entry from the "
                                   f"JSON"),
                        img_dir, f"missing images, {len(missing)} in all",
                        f"restore the {folder} images or regenerate {ann_name}")
        problems.listed(unusable, MAX_LISTED,
                        lambda u: (u[0], u[1], f"replace it from {folder}.zip or remove its entry "
                                               f"from {ann_name}"),
                        img_dir, "unreadable image files", f"replace them from {folder}.zip")

    def summary(self) -> str:
        """What :meth:`validate` found, e.g. ``train 48 images / 129 annotations``."""
        return self._summary

    # ------------------------------------------------------------ data

    @property
    def records(self) -> List[ImageRecord]:
        """Usable images in id order (raises the first problem of :meth:`validate`)."""
        if self._records is None:
            raise_first(self.validate(), f"{CHECK_HINT} --dataset coco --data_dir <COCO root>")
            try:
                self._records = self._index()
            except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                    OverflowError) as exc:
                raise DataError(f"COCO annotation file {self.ann_file!r} is malformed "
                                f"({type(exc).__name__}: {str(exc)[:200]}); list its problems "
                                f"with {CHECK_HINT} --dataset coco --data_dir <COCO root>") from None
        return self._records

    def _index(self) -> List[ImageRecord]:
        # The usable boxes were collected while validating, as one array.
        rows_of: Dict[int, List[int]] = {}
        for row, image_id in enumerate(self._kept_ids):
            rows_of.setdefault(image_id, []).append(row)
        records = []
        for image_id in sorted(self._images):
            rows = rows_of.get(image_id, [])
            if self.training and not rows:
                continue
            info = self._images[image_id]
            records.append(ImageRecord(int(image_id), self._present_by_id[image_id],
                                       int(info["width"]), int(info["height"]),
                                       self._kept_boxes[rows]))
        if not records:
            raise DataError(f"no usable annotated images in {self.ann_file!r} (crowd boxes, boxes "
                            f"of 1 px or less and boxes outside their image are ignored)")
        self._kept_ids, self._kept_boxes = [], None
        return records

    def __len__(self):
        return len(self.records)

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(RGB uint8 image, boxes (n, 5) float32 copy)`` of record ``index``."""
        record = self.records[index]
        return read_rgb(record.path), record.boxes.copy()


_READERS: Dict[Tuple, CocoDetectionReader] = {}


def cached_reader(image_dir: str, ann_file: str, training: bool,
                  num_classes: Optional[int]) -> CocoDetectionReader:
    """A reader shared by the check and every epoch (parsing the train JSON takes tens of
    seconds); not yet validated."""
    stamp = os.path.getmtime(ann_file) if os.path.isfile(ann_file) else None
    key = (os.path.abspath(image_dir), os.path.abspath(ann_file), stamp, training, num_classes)
    if key not in _READERS:
        _READERS[key] = CocoDetectionReader(image_dir, ann_file, training, num_classes,
                                            strict=False)
    return _READERS[key]


def reader_for(cfg, split: str) -> CocoDetectionReader:
    """The (cached) validated reader of ``split`` for this config."""
    image_dir, ann_file = coco_split_paths(cfg, split)
    reader = cached_reader(image_dir, ann_file, split == "train", cfg.num_classes)
    _ = reader.records
    return reader


def category_problems(train: CocoDetectionReader, other: CocoDetectionReader) -> List[Problem]:
    """A problem when the two splits' category tables differ (class indices would not match)."""
    if train.categories and other.categories and train.categories != other.categories:
        return [Problem.make(other.ann_file, f"categories differ from "
                                             f"{os.path.basename(train.ann_file)}, so class "
                                             f"indices would not match between train and eval",
                             "use annotation files from the same COCO release")]
    return []


def validate_for_config(cfg, splits=("train",)) -> List[Problem]:
    """Cheap problems of the config's ``splits`` (and their category tables agree)."""
    readers = {}
    for split in splits:
        image_dir, ann_file = coco_split_paths(cfg, split)
        readers[split] = cached_reader(image_dir, ann_file, split == "train", cfg.num_classes)
    problems = [p for r in readers.values() for p in r.validate()]
    if len(readers) == 2 and not any(p.is_error for p in problems):
        problems += category_problems(readers["train"], readers["eval"])
    return problems


def validate_root(root, num_classes=None, splits=("train", "eval"), full=False, max_decode=None):
    """Problems and summary of a COCO ``root``; ``(problems, summary parts, readers)``."""
    root = Path(root)
    problems, readers, decoded = Problems(), [], 0
    for split in ("train", "eval"):
        if split not in splits:
            continue
        folder = SPLIT_FOLDERS[split]
        reader = CocoDetectionReader(str(root / folder),
                                     str(root / "annotations" / f"instances_{folder}.json"),
                                     split == "train", strict=False)
        budget = None if max_decode is None else max(0, max_decode - decoded)
        problems += reader.validate(full, budget)
        decoded += reader.decoded
        readers.append(reader)
    parsed = [r for r in readers if r.summary()]
    if len(parsed) == 2:
        problems += category_problems(*parsed)
    cats = next((r for r in parsed if r.categories), None)
    if cats is not None and num_classes is not None and len(cats.categories) != num_classes:
        problems.error(cats.ann_file, f"lists {len(cats.categories)} categories but num_classes "
                                      f"is {num_classes}", f"set num_classes: "
                                                           f"{len(cats.categories)} "
                                                           f"(--num_classes="
                                                           f"{len(cats.categories)})")
    parts = [r.summary() for r in parsed]
    if cats is not None:
        parts.append(f"{len(cats.categories)} categories")
    if full:
        parts.append(f"{decoded} images decoded")
    return problems, [", ".join(parts)] if parts else [], readers


def class_catalog(cfg) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """``(class names, category ids)`` for display and results without a reader.

    From the evaluation annotation file when the config names one that exists
    (and its category count matches), else COCO's 80, else ``class_k`` / ``k``;
    a DataError when that file is unusable.
    """
    try:
        _, ann_file = coco_split_paths(cfg, "eval")
    except DataError:
        ann_file = ""
    if ann_file and os.path.isfile(ann_file):
        problems = Problems()
        doc = read_annotation_json(ann_file, problems)
        cats = parse_categories(doc, ann_file, problems) if doc is not None else {}
        raise_first(problems)
        if len(cats) == cfg.num_classes:
            ids = tuple(sorted(cats))
            return tuple(cats[c] for c in ids), ids
    if cfg.num_classes == len(COCO_CLASS_NAMES):
        return COCO_CLASS_NAMES, COCO_CATEGORY_IDS
    return (tuple(f"class_{k}" for k in range(cfg.num_classes)), tuple(range(cfg.num_classes)))


# ---------------------------------------------------------------- image operations

def to_network_input(image: np.ndarray, pre=None) -> np.ndarray:
    """RGB ``(H, W, 3)`` -> float32 ``(3, H, W)`` normalised by ``pre``'s mean/std (else ImageNet's)."""
    mean = _MEAN if pre is None or pre.mean is None else np.asarray(pre.mean, np.float32)
    std = _STD if pre is None or pre.std is None else np.asarray(pre.std, np.float32)
    return ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1).copy()


def preprocess_for_inference(image: np.ndarray, input_hw: Sequence[int],
                             pre=None) -> np.ndarray:
    """Evaluation/deploy preprocessing of an RGB uint8 image: resize to ``(H, W)``, normalise.

    ``pre`` (:func:`src.preprocessing.eval_preprocessing`) chooses a letterbox
    instead of the plain resize, and its mean/std replace ImageNet's.
    """
    if pre is not None and pre.resize_mode == "letterbox":
        return to_network_input(letterbox(image.astype(np.float32), input_hw,
                                          pre.letterbox_fill * 255.0)[0], pre)
    size = (int(input_hw[1]), int(input_hw[0]))  # cv2 wants (width, height)
    return to_network_input(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), pre)


# ---------------------------------------------------------------- training batches

def resize_sample(image: np.ndarray, boxes: np.ndarray, out_hw: Sequence[int], rng=None
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """The transform without augmentation: plain resize to ``out_hw``, boxes scaled with it."""
    del rng
    in_h, in_w = image.shape[:2]
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    resized = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] * (out_w / in_w), 0, out_w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * (out_h / in_h), 0, out_h)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 1) & ((boxes[:, 3] - boxes[:, 1]) > 1)
    return resized, boxes[keep]


def batch_input_size(batch_index: int, sizes: Sequence[Tuple[int, int]], interval: int,
                     seed: int) -> Tuple[int, int]:
    """Input size of a batch: a random size per block of ``interval`` batches, same on all ranks."""
    if len(sizes) == 1:
        return tuple(sizes[0])
    block = batch_index // max(1, int(interval))
    return tuple(sizes[int(np.random.default_rng([int(seed), block]).integers(len(sizes)))])


class TrainBatchSource:
    """Random-access source whose item ``k`` is the whole training batch ``k`` of this rank.

    Building batches whole lets every image of a batch share the batch's input
    size (multi-scale) and keeps augmentation deterministic for a seed,
    whatever the number of workers. Images are shuffled per epoch (the seed)
    and split across ranks; the last partial batch is dropped.

    Args:
        reader: the training split.
        batch_size: images per batch on this rank.
        sizes, size_interval: multi-scale input sizes and batches per size.
        transform: ``f(image, boxes, input_hw, rng) -> (image, boxes)``, the model's
            per-sample augmentation.
        make_targets: ``f(boxes (n, 5), input_hw) -> tuple of arrays`` (the model's targets).
        rank, group_size: this process's place in data-parallel training.
        seed: epoch seed (order, sizes and augmentation).
    """

    def __init__(self, reader: CocoDetectionReader, batch_size: int,
                 sizes: Sequence[Tuple[int, int]], size_interval: int, transform: Callable,
                 make_targets: Callable, rank: int = 0, group_size: int = 1, seed: int = 0,
                 pre=None):
        self.reader, self.batch_size = reader, int(batch_size)
        self.pre = pre  # its mean/std normalise (training resizes by the transform)
        self.sizes, self.size_interval = list(sizes), int(size_interval)
        self.transform, self.make_targets = transform, make_targets
        self.rank, self.seed = int(rank), int(seed)
        order = np.random.default_rng([self.seed, 0]).permutation(len(reader))
        # Pad by wrapping around so every rank gets the same number of images.
        per_rank = -(-len(order) // max(1, group_size))
        order = np.resize(order, per_rank * max(1, group_size))
        self.indices = order[self.rank::max(1, group_size)]
        self.num_batches = len(self.indices) // self.batch_size

    def __len__(self):
        return self.num_batches

    def input_size(self, batch_index: int) -> Tuple[int, int]:
        """``(H, W)`` of batch ``batch_index``."""
        return batch_input_size(batch_index, self.sizes, self.size_interval, self.seed)

    def __getitem__(self, batch_index: int):
        if not 0 <= batch_index < self.num_batches:
            raise IndexError(batch_index)
        input_hw = self.input_size(batch_index)
        rng = np.random.default_rng([self.seed, self.rank, int(batch_index), 1])
        columns = None
        start = batch_index * self.batch_size
        for index in self.indices[start:start + self.batch_size]:
            image, boxes = self.reader.load(int(index))
            image, boxes = self.transform(image, boxes, input_hw, rng)
            sample = ((to_network_input(image, self.pre),)
                      + tuple(self.make_targets(boxes, input_hw)))
            columns = [[] for _ in sample] if columns is None else columns
            for column, value in zip(columns, sample):
                column.append(value)
        return tuple(np.stack(column) for column in columns)


def build_train_dataset(cfg, make_targets: Callable, target_columns: Sequence[str], rank: int = 0,
                        group_size: int = 1, seed: int = 0,
                        transform: Optional[Callable] = None,
                        sizes: Optional[Sequence[Tuple[int, int]]] = None, size_interval: int = 1):
    """Batched training pipeline: ``(image, *target_columns)``, one batch per row.

    ``sizes`` are the (height, width) input sizes to draw from, a new one every
    ``size_interval`` batches (the model's multi-scale schedule); None: ``image_size``.

    ``transform(image, boxes, input_hw, rng) -> (image, boxes)`` is the model's
    per-sample augmentation (default: :func:`resize_sample`, none);
    ``make_targets(boxes, input_hw)`` its training targets. Both must pickle
    (module-level functions, partials or dataclass instances) for data workers.
    """
    import mindspore.dataset as ds  # pylint: disable=import-outside-toplevel
    from src.preprocessing import eval_preprocessing  # pylint: disable=C0415
    reader = reader_for(cfg, "train")
    sizes = sizes or [(int(cfg.image_size[0]), int(cfg.image_size[1]))]
    source = TrainBatchSource(reader, cfg.batch_size, sizes, size_interval,
                              transform or resize_sample,
                              make_targets, rank, group_size, seed, pre=eval_preprocessing(cfg))
    if len(source) == 0:
        raise DataError(f"the training split has {len(reader)} usable image(s) per "
                        f"{group_size} process(es): fewer than one batch of {cfg.batch_size}; "
                        f"lower --batch_size")
    workers = clamp_workers(cfg.data.num_workers, group_size)
    return ds.GeneratorDataset(source, column_names=["image", *target_columns], shuffle=False,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1)


# ---------------------------------------------------------------- evaluation

class EvalSource:
    """Random-access source of ``(image (3,H,W), [orig_w, orig_h], image_id)`` in image-id order."""

    def __init__(self, reader: CocoDetectionReader, input_hw: Sequence[int], pre=None):
        self.reader, self.input_hw = reader, tuple(int(v) for v in input_hw)
        self.pre = pre

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, index: int):
        record = self.reader.records[index]
        image = read_rgb(record.path)
        height, width = image.shape[:2]
        return (preprocess_for_inference(image, self.input_hw, self.pre),
                np.array([width, height], np.int32), np.array(record.image_id, np.int64))


def build_eval_dataset(cfg, batch_size: Optional[int] = None):
    """Every evaluation image in order, batched without dropping the remainder.

    The returned dataset carries the reader as ``coco_reader`` (ids, category map).
    """
    import mindspore.dataset as ds  # pylint: disable=import-outside-toplevel
    reader = reader_for(cfg, "eval")
    workers = clamp_workers(cfg.data.num_workers)
    from src.preprocessing import eval_preprocessing  # pylint: disable=C0415
    data = ds.GeneratorDataset(EvalSource(reader, cfg.image_size, eval_preprocessing(cfg)),
                               column_names=["image", "image_size", "image_id"], shuffle=False,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1)
    size = batch_size or cfg.data.eval_batch_size or cfg.batch_size
    data = data.batch(size, drop_remainder=False)
    data.coco_reader = reader
    return data

"""COCO 2017 detection data: reader, training augmentation, multi-scale batches, eval pipeline.

Layout (``data.dir``)::

    train2017/*.jpg  val2017/*.jpg  annotations/instances_{train,val}2017.json

``data.train_dir`` / ``data.eval_dir`` / ``data.train_ann_file`` /
``data.eval_ann_file`` override the derived paths (e.g. a fine-tuning set).

Reader rules (as upstream): category ids are mapped to contiguous classes in
sorted id order (and back for results); crowd boxes and degenerate boxes
(w <= 1 or h <= 1 px) are dropped; training skips images left without boxes;
evaluation keeps every image. Images are decoded with PIL and converted to RGB
(grayscale replicated, transparency composited over white, 16-bit scaled).

Training batches are built whole, by batch index, in :class:`TrainBatchSource`:
the input size is chosen per block of ``detection.multi_scale_interval``
batches from a seeded RNG (the same on every rank), every image gets the
upstream augmentation (random scale/aspect crop placed on a gray canvas,
horizontal flip, HSV jitter), then boxes are clipped/filtered and turned into
training targets by the model's target function. Evaluation resizes to
``image_size`` without letterbox (as upstream) and yields
``(image, [orig_w, orig_h], image_id)``.
"""
import contextlib
import dataclasses
import io
import json
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import mindspore.dataset as ds
import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from src.datasets.common import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, clamp_workers
from src.datasets.demo import COCO_CATEGORIES as _COCO_CATEGORY_TABLE
from src.errors import ConfigError, DataError

# The 80 COCO 2017 categories: contiguous class k <-> COCO id COCO_CATEGORY_IDS[k].
COCO_CATEGORY_IDS = tuple(cat_id for cat_id, _, _ in _COCO_CATEGORY_TABLE)
COCO_CLASS_NAMES = tuple(name for _, name, _ in _COCO_CATEGORY_TABLE)

SPLIT_FOLDERS = {"train": "train2017", "eval": "val2017"}
GRAY_FILL = 128                # canvas colour around the training crop (upstream)
FLIP_PROBABILITY = 0.5
TRAIN_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                        cv2.INTER_LANCZOS4)
_MEAN = np.asarray(IMAGENET_MEAN_RGB, np.float32)
_STD = np.asarray(IMAGENET_STD_RGB, np.float32)

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


def load_coco_annotations(ann_file: str) -> COCO:
    """A pycocotools COCO object (its progress prints silenced); DataError when unusable."""
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


def read_rgb(path: str) -> np.ndarray:
    """Decode an image file to ``uint8 (H, W, 3)`` RGB, whatever its mode.

    Grayscale is replicated to three channels, palette images are expanded,
    transparency (RGBA, LA, palette with transparency) is composited over
    white, 16-bit images are scaled to 8 bits, CMYK/YCbCr are converted.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb_array(img)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path!r} ({exc}); re-download or remove it") from None


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

    Args:
        image_dir: folder holding the images named in the JSON.
        ann_file: COCO instances JSON.
        training: drop images without usable boxes (evaluation keeps all).
        num_classes: expected number of categories (checked), or None.
    """

    def __init__(self, image_dir: str, ann_file: str, training: bool,
                 num_classes: Optional[int] = None):
        self.image_dir, self.ann_file, self.training = image_dir, ann_file, training
        coco = load_coco_annotations(ann_file)
        if not os.path.isdir(image_dir):
            raise DataError(f"COCO image folder {image_dir!r} not found; pass "
                            f"--data_dir=<COCO root> or "
                            f"--data.{'train' if training else 'eval'}_dir=<folder>")
        try:
            records = self._index(coco, image_dir, ann_file, training, num_classes)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            # A malformed entry (missing key, wrong type, bad box): name it, no traceback.
            raise DataError(f"COCO annotation file {ann_file!r} is malformed ({type(exc).__name__}: "
                            f"{str(exc)[:200]}); list its problems with python -m "
                            f"src.datasets.check --dataset coco --data_dir <COCO root>") from None
        self.records: List[ImageRecord] = records

    def _index(self, coco, image_dir, ann_file, training, num_classes) -> List[ImageRecord]:
        self.category_ids = tuple(sorted(coco.getCatIds()))
        if not self.category_ids:
            raise DataError(f"{ann_file!r} lists no categories; it must be COCO instances JSON")
        if num_classes is not None and len(self.category_ids) != num_classes:
            raise DataError(f"{ann_file!r} has {len(self.category_ids)} categories but the config "
                            f"says num_classes={num_classes}; pass "
                            f"--num_classes={len(self.category_ids)}")
        self.class_names = tuple(coco.cats[c].get("name", str(c)) for c in self.category_ids)
        if not coco.imgs or not coco.anns:
            what = "images" if not coco.imgs else "annotations"
            raise DataError(f"{ann_file!r} has no {what}; a detection split needs annotated images")
        class_of = {cat: k for k, cat in enumerate(self.category_ids)}
        on_disk = set(os.listdir(image_dir))
        records, missing = [], []
        for image_id in sorted(coco.getImgIds()):
            info = coco.imgs[image_id]
            name = info["file_name"]
            if (not isinstance(name, str) or not name or "\0" in name or os.path.isabs(name)
                    or ".." in name.replace("\\", "/").split("/")):
                raise DataError(f"{ann_file!r}: image id {image_id!r} has file_name {name!r:.80}; "
                                f"it must be a relative path inside the image folder")
            if name not in on_disk and not os.path.isfile(os.path.join(image_dir, name)):
                missing.append(name)
                continue
            boxes = usable_boxes(coco.imgToAnns.get(image_id, []), class_of)
            if training and len(boxes) == 0:
                continue
            records.append(ImageRecord(int(image_id), os.path.join(image_dir, name),
                                       int(info.get("width", 0)), int(info.get("height", 0)),
                                       boxes))
        if missing:
            raise DataError(f"{len(missing)} image(s) listed in {ann_file!r} are missing from "
                            f"{image_dir!r} (first: {missing[0]!r}); point the image folder and "
                            f"the annotation file at the same split")
        if not records:
            raise DataError(f"no usable annotated images in {ann_file!r} (crowd and boxes of "
                            f"1 px or less are ignored)")
        return records

    def __len__(self):
        return len(self.records)

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(RGB uint8 image, boxes (n, 5) float32 copy)`` of record ``index``."""
        record = self.records[index]
        return read_rgb(record.path), record.boxes.copy()


def usable_boxes(annotations: Sequence[Dict], class_of: Dict[int, int]) -> np.ndarray:
    """``(n, 5)`` float32 ``x1, y1, x2, y2, class`` of non-crowd boxes larger than 1 px."""
    rows = []
    for ann in annotations:
        bbox = ann["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        for v in bbox)):
            raise ValueError(f"annotation {ann.get('id')!r:.20} of image {ann.get('image_id')!r:.20} "
                             f"has bbox {bbox!r:.60}; expected 4 finite numbers [x, y, w, h]")
        x, y, w, h = bbox
        if ann.get("iscrowd", 0) or w <= 1 or h <= 1 or ann["category_id"] not in class_of:
            continue
        rows.append((x, y, x + w, y + h, class_of[ann["category_id"]]))
    with np.errstate(over="ignore"):
        boxes = np.asarray(rows, np.float32).reshape(-1, 5)
    if not np.isfinite(boxes).all():
        raise ValueError("a bbox has coordinates too large for float32")
    return boxes


_READERS: Dict[Tuple, CocoDetectionReader] = {}


def cached_reader(image_dir: str, ann_file: str, training: bool,
                  num_classes: Optional[int]) -> CocoDetectionReader:
    """A reader shared by every epoch (parsing the train JSON takes tens of seconds)."""
    stamp = os.path.getmtime(ann_file) if os.path.isfile(ann_file) else None
    key = (os.path.abspath(image_dir), os.path.abspath(ann_file), stamp, training, num_classes)
    if key not in _READERS:
        _READERS[key] = CocoDetectionReader(image_dir, ann_file, training, num_classes)
    return _READERS[key]


def reader_for(cfg, split: str) -> CocoDetectionReader:
    """The (cached) reader of ``split`` for this config."""
    image_dir, ann_file = coco_split_paths(cfg, split)
    return cached_reader(image_dir, ann_file, split == "train", cfg.num_classes)


def class_catalog(cfg) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """``(class names, category ids)`` for display and results without a reader.

    From the evaluation annotation file when the config names one that exists
    (and its category count matches), else COCO's 80, else ``class_k`` / ``k``.
    """
    try:
        _, ann_file = coco_split_paths(cfg, "eval")
    except DataError:
        ann_file = ""
    if ann_file and os.path.isfile(ann_file):
        with open(ann_file, encoding="utf-8") as f:
            categories = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
        if len(categories) == cfg.num_classes:
            return (tuple(c.get("name", str(c["id"])) for c in categories),
                    tuple(int(c["id"]) for c in categories))
    if cfg.num_classes == len(COCO_CLASS_NAMES):
        return COCO_CLASS_NAMES, COCO_CATEGORY_IDS
    return (tuple(f"class_{k}" for k in range(cfg.num_classes)), tuple(range(cfg.num_classes)))


# ---------------------------------------------------------------- image operations

def to_network_input(image: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> ImageNet-normalised float32 ``(3, H, W)``."""
    return ((image.astype(np.float32) - _MEAN) / _STD).transpose(2, 0, 1).copy()


def preprocess_for_inference(image: np.ndarray, input_hw: Sequence[int]) -> np.ndarray:
    """Evaluation/deploy preprocessing: plain resize to ``(H, W)`` (no letterbox), normalise."""
    size = (int(input_hw[1]), int(input_hw[0]))  # cv2 wants (width, height)
    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return to_network_input(resized)


def _between(rng, low: float, high: float) -> float:
    """Uniform in [low, high) or (high, low] (numpy's Generator.uniform refuses high < low)."""
    return low + (high - low) * rng.random()


def random_crop_on_canvas(image: np.ndarray, boxes: np.ndarray, out_hw: Sequence[int],
                          jitter: float, rng, scale_range: Sequence[float] = (0.25, 2.0)
                          ) -> Tuple[np.ndarray, np.ndarray]:
    """Resize to a random scale and aspect, place at a random offset on a gray canvas.

    Aspect = image aspect x U(1-j, 1+j) / U(1-j, 1+j); the longer side is
    U(scale_range) times the canvas side (upstream: 0.25 to 2). The image may
    stick out of the canvas (cropped) or leave gray borders. Boxes are moved
    with it (not yet clipped).
    """
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    in_h, in_w = image.shape[:2]
    stretch = _between(rng, 1 - jitter, 1 + jitter) / _between(rng, 1 - jitter, 1 + jitter)
    aspect = (in_w / in_h) * stretch
    scale = _between(rng, *scale_range)
    if aspect < 1:
        new_h = max(1, int(scale * out_h))
        new_w = max(1, int(new_h * aspect))
    else:
        new_w = max(1, int(scale * out_w))
        new_h = max(1, int(new_w / aspect))
    dx = int(_between(rng, 0, out_w - new_w))
    dy = int(_between(rng, 0, out_h - new_h))
    interpolation = TRAIN_INTERPOLATIONS[int(rng.integers(len(TRAIN_INTERPOLATIONS)))]
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.full((out_h, out_w, 3), GRAY_FILL, np.uint8)
    # Intersection of the placed image with the canvas, in both coordinate frames.
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + new_w, out_w), min(dy + new_h, out_h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = resized[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]] * (new_w / in_w) + dx
    boxes[:, [1, 3]] = boxes[:, [1, 3]] * (new_h / in_h) + dy
    return canvas, boxes


def horizontal_flip(image: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror the image and its boxes left-right."""
    width = image.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return np.ascontiguousarray(image[:, ::-1]), boxes


def hsv_jitter(image: np.ndarray, hue: float, saturation: float, value: float, rng) -> np.ndarray:
    """Random hue shift (+-hue turns) and saturation/value factors (U(1, s) or its inverse)."""
    hue_shift = _between(rng, -hue, hue)
    sat = _between(rng, 1, saturation) if rng.random() < 0.5 else 1 / _between(rng, 1, saturation)
    val = _between(rng, 1, value) if rng.random() < 0.5 else 1 / _between(rng, 1, value)
    if hue_shift == 0 and sat == 1 and val == 1:
        return image
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in [0, 360)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift * 360.0, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] * val, 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def clip_boxes(boxes: np.ndarray, out_hw: Sequence[int], max_boxes: int, rng) -> np.ndarray:
    """Clip boxes to the canvas, drop those 1 px or thinner, keep at most ``max_boxes`` (random)."""
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, out_hw[1])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, out_hw[0])
    boxes = boxes[((boxes[:, 2] - boxes[:, 0]) > 1) & ((boxes[:, 3] - boxes[:, 1]) > 1)]
    if len(boxes) > max_boxes:
        boxes = boxes[rng.permutation(len(boxes))[:max_boxes]]
    return boxes


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation strengths (the ``detection.*`` keys)."""

    jitter: float = 0.3
    crop_scale: Tuple[float, float] = (0.25, 2.0)
    hue: float = 0.015
    saturation: float = 1.5
    value: float = 0.4
    max_boxes: int = 90

    @classmethod
    def from_config(cls, cfg) -> "AugmentSettings":
        """Settings from the config; ConfigError for an unusable crop_scale."""
        d = cfg.detection
        if len(d.crop_scale) != 2 or not 0 < d.crop_scale[0] <= d.crop_scale[1]:
            raise ConfigError(f"detection.crop_scale must be [min, max] with 0 < min <= max, "
                              f"got {list(d.crop_scale)}")
        return cls(jitter=d.jitter, crop_scale=tuple(d.crop_scale), hue=d.hue,
                   saturation=d.saturation, value=d.value, max_boxes=d.max_boxes)


def augment(image: np.ndarray, boxes: np.ndarray, out_hw: Sequence[int],
            settings: AugmentSettings, rng) -> Tuple[np.ndarray, np.ndarray]:
    """The full training augmentation of one image at input size ``out_hw``."""
    image, boxes = random_crop_on_canvas(image, boxes, out_hw, settings.jitter, rng,
                                         settings.crop_scale)
    if rng.random() < FLIP_PROBABILITY:
        image, boxes = horizontal_flip(image, boxes)
    image = hsv_jitter(image, settings.hue, settings.saturation, settings.value, rng)
    return image, clip_boxes(boxes, out_hw, settings.max_boxes, rng)


# ---------------------------------------------------------------- training batches

def training_sizes(cfg) -> List[Tuple[int, int]]:
    """Input sizes to draw from: ``detection.multi_scale`` (square), else ``image_size``."""
    if cfg.detection.multi_scale:
        return [(int(s), int(s)) for s in cfg.detection.multi_scale]
    return [(int(cfg.image_size[0]), int(cfg.image_size[1]))]


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
        settings: augmentation strengths.
        make_targets: ``f(boxes (n, 5), input_hw) -> tuple of arrays`` (the model's targets).
        rank, group_size: this process's place in data-parallel training.
        seed: epoch seed (order, sizes and augmentation).
    """

    def __init__(self, reader: CocoDetectionReader, batch_size: int,
                 sizes: Sequence[Tuple[int, int]], size_interval: int, settings: AugmentSettings,
                 make_targets: Callable, rank: int = 0, group_size: int = 1, seed: int = 0):
        self.reader, self.batch_size = reader, int(batch_size)
        self.sizes, self.size_interval = list(sizes), int(size_interval)
        self.settings, self.make_targets = settings, make_targets
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
            image, boxes = augment(image, boxes, input_hw, self.settings, rng)
            sample = (to_network_input(image),) + tuple(self.make_targets(boxes, input_hw))
            columns = [[] for _ in sample] if columns is None else columns
            for column, value in zip(columns, sample):
                column.append(value)
        return tuple(np.stack(column) for column in columns)


def build_train_dataset(cfg, make_targets: Callable, target_columns: Sequence[str], rank: int = 0,
                        group_size: int = 1, seed: int = 0) -> ds.GeneratorDataset:
    """Batched training pipeline: ``(image, *target_columns)``, one batch per row."""
    reader = reader_for(cfg, "train")
    source = TrainBatchSource(reader, cfg.batch_size, training_sizes(cfg),
                              cfg.detection.multi_scale_interval, AugmentSettings.from_config(cfg),
                              make_targets, rank, group_size, seed)
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

    def __init__(self, reader: CocoDetectionReader, input_hw: Sequence[int]):
        self.reader, self.input_hw = reader, tuple(int(v) for v in input_hw)

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, index: int):
        record = self.reader.records[index]
        image = read_rgb(record.path)
        height, width = image.shape[:2]
        return (preprocess_for_inference(image, self.input_hw),
                np.array([width, height], np.int32), np.array(record.image_id, np.int64))


def build_eval_dataset(cfg, batch_size: Optional[int] = None):
    """Every evaluation image in order, batched without dropping the remainder.

    The returned dataset carries the reader as ``coco_reader`` (ids, category map).
    """
    reader = reader_for(cfg, "eval")
    workers = clamp_workers(cfg.data.num_workers)
    data = ds.GeneratorDataset(EvalSource(reader, cfg.image_size),
                               column_names=["image", "image_size", "image_id"], shuffle=False,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1)
    size = batch_size or cfg.data.eval_batch_size or cfg.batch_size
    data = data.batch(size, drop_remainder=False)
    data.coco_reader = reader
    return data

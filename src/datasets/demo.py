"""Small synthetic datasets in the real on-disk formats, for demos and tests.

Three kinds, each a few hundred small images that a small CNN learns quickly:

* ``cifar10``: the CIFAR-10 *binary* version, split the way the model zoo
  expects it: ``cifar10/cifar-10-batches-bin/data_batch_{1..5}.bin`` (train)
  and ``cifar10/cifar-10-verify-bin/test_batch.bin`` (test), each record
  1 label byte + 3072 bytes (R, G, B planes of a row-major 32x32 image).
* ``imagenet``: ImageFolder layout ``imagenet/{train,val}/<wnid>/*.JPEG``
  with 10 classes; the label is the index of the folder name in sorted order.
* ``coco``: COCO 2017 instances layout ``coco/{train2017,val2017}/*.jpg`` and
  ``coco/annotations/instances_{train,val}2017.json`` with the 80 real COCO
  categories (non-contiguous ids); objects use 4 of them (person, car, dog,
  bottle). The train JSON holds one ``iscrowd=1`` annotation and one image
  whose only box is degenerate (1 px wide), so a reader's filtering is
  exercised: readers that follow upstream drop the crowd box and that image.

Every image is a class-specific coloured shape on a noisy background, with
random position, scale and colour jitter. Output is deterministic for a given
seed. Each kind is built in a hidden temporary folder next to its target and
renamed into place when complete, so an interrupted run never leaves a
half-written dataset that looks complete.

Command line::

    python -m src.datasets.demo --root demo_data [--kinds cifar10 imagenet coco] [--overwrite]
"""
import argparse
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from src.datasets.cifar10 import EVAL_FOLDER as CIFAR_TEST_DIR
from src.datasets.cifar10 import RECORD_BYTES as CIFAR_RECORD_BYTES
from src.datasets.cifar10 import TRAIN_FOLDER as CIFAR_TRAIN_DIR
from src.datasets.coco_categories import COCO_CATEGORIES
from src.errors import DataError, ZooError

KINDS = ("cifar10", "imagenet", "coco")
MARKER = "SYNTHETIC_DEMO_DATA.txt"

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR_TRAIN_PER_CLASS = 50     # 500 train records, 100 per data_batch file
CIFAR_TEST_PER_CLASS = 20      # 200 test records
CIFAR_TRAIN_FILES = 5

# The first ten ImageNet-1k wnids (sorted order = label).
IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
                  "n01496331", "n01498041", "n01514668", "n01514859", "n01518878")
IMAGENET_TRAIN_PER_CLASS = 40
IMAGENET_VAL_PER_CLASS = 10
IMAGENET_SIZE_RANGE = (64, 120)

COCO_TRAIN_IMAGES = 48
COCO_VAL_IMAGES = 16
COCO_SIZE_RANGE = (160, 320)

# Objects drawn in the COCO demo: category id -> (shape, RGB colour, aspect
# range as height / width).
COCO_OBJECTS = {
    1: ("ellipse", (220, 30, 30), (1.6, 2.4)),     # person: tall red ellipse
    3: ("rect", (30, 60, 220), (0.4, 0.6)),        # car: wide blue rectangle
    18: ("ellipse", (235, 150, 20), (0.55, 0.75)),  # dog: wide orange ellipse
    44: ("rect", (30, 180, 60), (2.6, 3.4)),       # bottle: narrow tall green rectangle
}

# Classification classes: one colour and one shape each.
CLASS_COLORS = ((220, 40, 40), (240, 140, 20), (230, 220, 40), (40, 180, 60), (40, 200, 210),
                (40, 70, 220), (140, 50, 200), (220, 50, 170), (130, 80, 40), (245, 245, 245))
CLASS_SHAPES = ("disk", "square", "triangle", "hstripes", "vstripes",
                "dstripes", "ring", "cross", "checker", "diamond")


# ---------------------------------------------------------------- drawing

def _shape_mask(shape, h, w, cx, cy, radius):
    """Boolean HxW mask of a class shape centred at (cx, cy) with half-size radius."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs + 0.5 - cx) / radius
    v = (ys + 0.5 - cy) / radius
    box = np.maximum(np.abs(u), np.abs(v))
    if shape == "disk":
        return u * u + v * v <= 1.0
    if shape == "square":
        return box <= 0.8
    if shape == "triangle":
        return (v >= -0.9) & (v <= 0.8) & (np.abs(u) <= (v + 0.9) * 0.55)
    if shape == "hstripes":
        return (box <= 0.9) & (np.floor((v + 1.0) * 2.5) % 2 == 0)
    if shape == "vstripes":
        return (box <= 0.9) & (np.floor((u + 1.0) * 2.5) % 2 == 0)
    if shape == "dstripes":
        return (box <= 0.9) & (np.floor((u + v + 2.0) * 1.8) % 2 == 0)
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if shape == "checker":
        return (box <= 0.9) & ((np.floor((u + 1.0) * 2.0) + np.floor((v + 1.0) * 2.0)) % 2 == 0)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    raise ValueError(shape)


def _background(rng, h, w, noise=14.0):
    """Desaturated smooth random background plus Gaussian noise, float32 HxWx3."""
    gray = rng.uniform(70, 185)
    coarse = gray + rng.uniform(-30, 30, size=(3, 3, 1)) + rng.uniform(-12, 12, size=(3, 3, 3))
    small = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
    base = np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32)
    return base + rng.normal(0.0, noise, size=(h, w, 3)).astype(np.float32)


def class_image(rng, label, width, height):
    """A uint8 HxWx3 image of class ``label`` (0..9): its colour and shape, jittered."""
    img = _background(rng, height, width)
    size = min(width, height)
    radius = rng.uniform(0.25, 0.42) * size
    cx = rng.uniform(radius * 0.9, width - radius * 0.9)
    cy = rng.uniform(radius * 0.9, height - radius * 0.9)
    mask = _shape_mask(CLASS_SHAPES[label], height, width, cx, cy, radius)
    color = np.asarray(CLASS_COLORS[label], np.float32) + rng.uniform(-25, 25, size=3)
    img[mask] = color + rng.normal(0.0, 8.0, size=(int(mask.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg_bytes(array, quality=90):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# ---------------------------------------------------------------- cifar10

def _cifar_records(rng, per_class):
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
    labels = labels[rng.permutation(labels.size)]
    records = np.empty((labels.size, CIFAR_RECORD_BYTES), np.uint8)
    records[:, 0] = labels
    for i, label in enumerate(labels):
        img = class_image(rng, int(label), 32, 32)
        records[i, 1:] = img.transpose(2, 0, 1).reshape(-1)  # R plane, G plane, B plane
    return records


def _write_cifar10(out, rng):
    meta = "".join(name + "\n" for name in CIFAR10_CLASSES) + "\n"
    train_dir, test_dir = out / CIFAR_TRAIN_DIR, out / CIFAR_TEST_DIR
    train_dir.mkdir(parents=True)
    test_dir.mkdir(parents=True)
    train = _cifar_records(rng, CIFAR_TRAIN_PER_CLASS)
    for i, chunk in enumerate(np.array_split(train, CIFAR_TRAIN_FILES), start=1):
        (train_dir / f"data_batch_{i}.bin").write_bytes(chunk.tobytes())
    (train_dir / "batches.meta.txt").write_text(meta, encoding="ascii")
    (test_dir / "test_batch.bin").write_bytes(_cifar_records(rng, CIFAR_TEST_PER_CLASS).tobytes())
    (test_dir / "batches.meta.txt").write_text(meta, encoding="ascii")


# ---------------------------------------------------------------- imagenet

def _random_size(rng, lo, hi):
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _write_imagenet(out, rng):
    lo, hi = IMAGENET_SIZE_RANGE
    val_index = 0
    for label, wnid in enumerate(IMAGENET_WNIDS):
        train_dir, val_dir = out / "train" / wnid, out / "val" / wnid
        train_dir.mkdir(parents=True)
        val_dir.mkdir(parents=True)
        numbers = np.sort(rng.choice(np.arange(1, 20000), IMAGENET_TRAIN_PER_CLASS, replace=False))
        for n in numbers:
            w, h = _random_size(rng, lo, hi)
            (train_dir / f"{wnid}_{n}.JPEG").write_bytes(_jpeg_bytes(class_image(rng, label, w, h)))
        for _ in range(IMAGENET_VAL_PER_CLASS):
            val_index += 1
            w, h = _random_size(rng, lo, hi)
            name = f"ILSVRC2012_val_{val_index:08d}.JPEG"
            (val_dir / name).write_bytes(_jpeg_bytes(class_image(rng, label, w, h)))


# ---------------------------------------------------------------- coco

def _rle_counts(mask):
    """Uncompressed COCO RLE counts (column-major, starting with a run of zeros)."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return [int(c) for c in counts]


def _ellipse_polygon(x0, y0, w, h, points=16):
    cx, cy, rx, ry = x0 + w / 2.0, y0 + h / 2.0, w / 2.0, h / 2.0
    poly = []
    for k in range(points):
        t = 2.0 * np.pi * k / points
        poly += [round(cx + rx * float(np.cos(t)), 2), round(cy + ry * float(np.sin(t)), 2)]
    return poly


def _object_mask(shape, h, w, x0, y0, ow, oh):
    """Mask of a filled rectangle or ellipse inscribed in the box (x0, y0, ow, oh)."""
    mask = np.zeros((h, w), bool)
    if shape == "rect":
        mask[y0:y0 + oh, x0:x0 + ow] = True
        return mask
    ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float32)
    u = (xs + 0.5 - ow / 2.0) / (ow / 2.0)
    v = (ys + 0.5 - oh / 2.0) / (oh / 2.0)
    mask[y0:y0 + oh, x0:x0 + ow] = u * u + v * v <= 1.0
    return mask


def _place(rng, w, h, ow, oh, taken):
    for _ in range(60):
        x0 = int(rng.integers(0, w - ow + 1))
        y0 = int(rng.integers(0, h - oh + 1))
        if all(x0 + ow + 2 <= bx or bx + bw + 2 <= x0 or y0 + oh + 2 <= by or by + bh + 2 <= y0
               for bx, by, bw, bh in taken):
            return x0, y0
    return None


def _paint(img, mask, color, rng):
    img[mask] = np.asarray(color, np.float32) + rng.uniform(-15, 15, size=3)


def _bbox_of(mask):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def _coco_image(rng, image_id, w, h, special=None):
    """Draw one image; return (uint8 array, list of annotation dicts without ids)."""
    img = _background(rng, h, w, noise=12.0)
    anns, taken = [], []
    cat_ids = sorted(COCO_OBJECTS)
    if special == "degenerate":
        # Only a 1 px wide sliver: its box has w == 1, so readers drop the image.
        x0, y0, oh = int(rng.integers(10, w - 10)), int(rng.integers(5, h // 2)), h // 3
        mask = np.zeros((h, w), bool)
        mask[y0:y0 + oh, x0] = True
        _paint(img, mask, COCO_OBJECTS[44][1], rng)
        anns.append(dict(segmentation=[[x0, y0, x0 + 1, y0, x0 + 1, y0 + oh, x0, y0 + oh]],
                         area=float(mask.sum()), iscrowd=0, image_id=image_id,
                         bbox=[float(x0), float(y0), 1.0, float(oh)], category_id=44))
        return np.clip(img, 0, 255).astype(np.uint8), anns
    if special == "crowd":
        # A packed group of small persons annotated as one iscrowd=1 region (RLE).
        pw, ph = max(8, w // 14), max(16, h // 5)
        x0, y0 = int(rng.integers(0, w // 2 - 3 * pw)), int(rng.integers(0, h - ph))
        mask = np.zeros((h, w), bool)
        for k in range(4):
            mask |= _object_mask("ellipse", h, w, x0 + k * (pw * 3 // 4), y0, pw, ph)
        _paint(img, mask, COCO_OBJECTS[1][1], rng)
        bbox = _bbox_of(mask)
        anns.append(dict(segmentation={"counts": _rle_counts(mask), "size": [h, w]},
                         area=float(mask.sum()), iscrowd=1, image_id=image_id,
                         bbox=bbox, category_id=1))
        taken.append(tuple(int(b) for b in bbox))
    for _ in range(int(rng.integers(1, 5))):
        cat = cat_ids[int(rng.integers(len(cat_ids)))]
        shape, color, (alo, ahi) = COCO_OBJECTS[cat]
        side = rng.uniform(0.18, 0.42) * min(w, h)
        aspect = rng.uniform(alo, ahi)
        ow = int(max(8, min(w - 2, round(side / np.sqrt(aspect)))))
        oh = int(max(8, min(h - 2, round(side * np.sqrt(aspect)))))
        spot = _place(rng, w, h, ow, oh, taken)
        if spot is None:
            continue
        x0, y0 = spot
        taken.append((x0, y0, ow, oh))
        mask = _object_mask(shape, h, w, x0, y0, ow, oh)
        _paint(img, mask, color, rng)
        bbox = _bbox_of(mask)
        if shape == "rect":
            seg = [[float(x0), float(y0), float(x0 + ow), float(y0), float(x0 + ow),
                    float(y0 + oh), float(x0), float(y0 + oh)]]
        else:
            seg = [_ellipse_polygon(x0, y0, ow, oh)]
        anns.append(dict(segmentation=seg, area=float(mask.sum()), iscrowd=0,
                         image_id=image_id, bbox=bbox, category_id=cat))
    return np.clip(img, 0, 255).astype(np.uint8), anns


def _write_coco(out, rng):
    (out / "annotations").mkdir(parents=True)
    n_total = COCO_TRAIN_IMAGES + COCO_VAL_IMAGES
    ids = rng.choice(np.arange(1, 581930), n_total, replace=False)
    splits = {"train2017": np.sort(ids[:COCO_TRAIN_IMAGES]),
              "val2017": np.sort(ids[COCO_TRAIN_IMAGES:])}
    categories = [{"supercategory": s, "id": i, "name": n} for i, n, s in COCO_CATEGORIES]
    ann_id = 100000
    lo, hi = COCO_SIZE_RANGE
    for split, image_ids in splits.items():
        img_dir = out / split
        img_dir.mkdir()
        images, annotations = [], []
        for k, image_id in enumerate(image_ids):
            image_id = int(image_id)
            special = None
            if split == "train2017" and k == 5:
                special = "crowd"
            elif split == "train2017" and k == 11:
                special = "degenerate"
            w, h = _random_size(rng, lo, hi)
            while w == h:
                w = int(rng.integers(lo, hi + 1))
            array, anns = _coco_image(rng, image_id, w, h, special)
            name = f"{image_id:012d}.jpg"
            (img_dir / name).write_bytes(_jpeg_bytes(array, quality=92))
            images.append({"license": 1, "file_name": name,
                           "coco_url": f"http://images.cocodataset.org/{split}/{name}",
                           "height": h, "width": w, "date_captured": "2017-01-01 00:00:00",
                           "flickr_url": "", "id": image_id})
            for ann in anns:
                ann_id += int(rng.integers(1, 50))
                ann["id"] = ann_id
                annotations.append(ann)
        doc = {"info": {"description": "Synthetic COCO-format demo data (not real COCO images)",
                        "url": "", "version": "1.0", "year": 2017, "contributor": "model zoo demo",
                        "date_created": "2017/01/01"},
               "licenses": [{"url": "", "id": 1, "name": "synthetic demo data"}],
               "images": images, "annotations": annotations, "categories": categories}
        path = out / "annotations" / f"instances_{split}.json"
        path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")


# ---------------------------------------------------------------- driver

_WRITERS = {"cifar10": _write_cifar10, "imagenet": _write_imagenet, "coco": _write_coco}


def _kind_rng(seed, kind):
    return np.random.default_rng([int(seed), KINDS.index(kind)])


def _check_kinds(kinds):
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise DataError(f"unknown demo dataset kind {kind!r}; choose from {', '.join(KINDS)}")
    return kinds


def _prepare_root(root):
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"demo data root {root} is a file, not a folder; pass --root with a folder path")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create demo data root {root} ({exc.strerror}); "
                        f"pass --root with a writable folder") from None
    return root


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_partials(root, kind):
    """Delete leftovers of interrupted runs (their process is gone)."""
    for entry in root.glob(f".{kind}.partial-*"):
        try:
            pid = int(entry.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def _build(root, kind, seed, overwrite):
    target = root / kind
    _remove_stale_partials(root, kind)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}.partial-{os.getpid()}-", dir=root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset should not be
        _WRITERS[kind](tmp, _kind_rng(seed, kind))
        (tmp / MARKER).write_text(
            f"Synthetic {kind} demo data generated by src/datasets/demo.py with seed {int(seed)}.\n"
            "Not real data; regenerate with: python -m src.datasets.demo --root <root> --overwrite\n",
            encoding="ascii")
        if overwrite and (target.exists() or target.is_symlink()):
            old = Path(tempfile.mkdtemp(prefix=f".{kind}.partial-{os.getpid()}-old-", dir=root))
            os.replace(target, old / kind)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.exists():
                    raise
                # Another process finished the same dataset first: keep theirs.
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def make_demo_data(root, kinds=KINDS, seed=0, overwrite=False):
    """Write the demo datasets under ``root`` and return ``{kind: dataset folder}``.

    Kinds whose folder already exists are left alone unless ``overwrite``.
    The same seed always produces byte-identical files.
    """
    kinds = _check_kinds(kinds)
    root = _prepare_root(root)
    paths = {}
    for kind in kinds:
        target = root / kind
        if target.exists() and not overwrite:
            paths[kind] = target
            continue
        paths[kind] = _build(root, kind, seed, overwrite)
    return paths


def ensure_demo_data(root, kind):
    """Return ``root/kind``, generating the demo dataset first if it is missing."""
    return make_demo_data(root, kinds=(kind,))[kind]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m src.datasets.demo",
        description="Write small synthetic datasets in the real CIFAR-10 binary, "
                    "ImageNet folder and COCO 2017 formats.")
    parser.add_argument("--root", default="demo_data", help="output folder (default: demo_data)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS,
                        help="which datasets to write (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate datasets that already exist")
    args = parser.parse_args(argv)
    try:
        existed = {k: (Path(args.root) / k).exists() for k in args.kinds}
        paths = make_demo_data(args.root, args.kinds, seed=args.seed, overwrite=args.overwrite)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for kind, path in paths.items():
        state = "kept existing" if existed[kind] and not args.overwrite else "written"
        print(f"{kind}: {path} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

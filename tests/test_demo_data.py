"""Tests for src.datasets.demo: real on-disk formats, determinism, atomic writes."""
import filecmp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
from src.datasets import demo
from src.datasets.check import check_dataset
from src.datasets.demo import KINDS, ensure_demo_data, make_demo_data
from src.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _all_files(root):
    return sorted(p.relative_to(root) for p in Path(root).rglob("*") if p.is_file())


def _parse_cifar(path):
    raw = np.fromfile(path, dtype=np.uint8)
    assert raw.size % 3073 == 0
    return raw.reshape(-1, 3073)


def read_cifar10_bin(path):
    """(images NxHxWx3 uint8, labels) of one CIFAR-10 binary file, parsed by hand."""
    records = _parse_cifar(path)
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), records[:, 0].astype(np.int32)


# ---------------------------------------------------------------- cifar10

def test_cifar10_binary_format(demo_data):
    root = demo_data["cifar10"]
    train_dir = root / "cifar-10-batches-bin"
    test_dir = root / "cifar-10-verify-bin"
    train_files = sorted(p.name for p in train_dir.glob("*.bin"))
    assert train_files == [f"data_batch_{i}.bin" for i in range(1, 6)]
    assert sorted(p.name for p in test_dir.glob("*.bin")) == ["test_batch.bin"]
    for d in (train_dir, test_dir):
        names = (d / "batches.meta.txt").read_text().split()
        assert names == list(demo.CIFAR10_CLASSES)

    train = np.concatenate([_parse_cifar(train_dir / f) for f in train_files])
    test = _parse_cifar(test_dir / "test_batch.bin")
    assert train.shape == (500, 3073) and test.shape == (200, 3073)
    assert all(_parse_cifar(train_dir / f).shape[0] == 100 for f in train_files)
    assert np.bincount(train[:, 0], minlength=10).tolist() == [50] * 10
    assert np.bincount(test[:, 0], minlength=10).tolist() == [20] * 10
    assert train[:, 0].max() <= 9

    images, labels = read_cifar10_bin(train_dir / "data_batch_1.bin")
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
    # Record layout: R plane, G plane, B plane, each row-major 32x32.
    rec = _parse_cifar(train_dir / "data_batch_1.bin")[0]
    assert labels[0] == rec[0]
    assert np.array_equal(images[0][..., 0].ravel(), rec[1:1025])
    assert np.array_equal(images[0][..., 2].ravel(), rec[2049:])


def test_cifar10_read_by_mindspore(demo_data, tmp_path):
    """MindSpore's reader finds the files per usage and decodes records like our parser.

    MindSpore 2.10's Cifar10Dataset counts and reads exactly 10000 records per
    file, so the layout check uses a copy padded to 10000 records.
    """
    import mindspore.dataset as ds

    root = demo_data["cifar10"]
    train_dir, test_dir = root / "cifar-10-batches-bin", root / "cifar-10-verify-bin"
    assert ds.Cifar10Dataset(str(train_dir), usage="train").get_dataset_size() == 5 * 10000
    assert ds.Cifar10Dataset(str(test_dir), usage="test").get_dataset_size() == 10000
    assert ds.Cifar10Dataset(str(test_dir), usage="all").get_dataset_size() == 10000

    records = _parse_cifar(train_dir / "data_batch_2.bin")
    padded = tmp_path / "cifar-10-batches-bin"
    padded.mkdir()
    np.tile(records, (100, 1)).tofile(padded / "data_batch_1.bin")
    data = ds.Cifar10Dataset(str(padded), usage="train", shuffle=False, num_samples=5)
    images, labels = read_cifar10_bin(train_dir / "data_batch_2.bin")
    rows = list(data.create_dict_iterator(num_epochs=1, output_numpy=True))
    assert len(rows) == 5
    for i, row in enumerate(rows):
        assert row["image"].shape == (32, 32, 3)
        assert np.array_equal(row["image"], images[i])
        assert int(row["label"]) == labels[i]


def test_cifar10_classes_are_learnable(demo_data):
    """Nearest-centroid on the colour of saturated pixels separates the classes."""
    root = demo_data["cifar10"]

    def features(paths):
        imgs, labels = zip(*(read_cifar10_bin(p) for p in paths))
        x = np.concatenate(imgs).astype(np.float32)
        sat = x.max(-1) - x.min(-1)
        w = (sat > 60)[..., None] | (x.min(-1) > 200)[..., None]
        feat = (x * w).sum((1, 2)) / np.maximum(w.sum((1, 2)), 1)
        return feat, np.concatenate(labels)

    xtr, ytr = features(sorted((root / "cifar-10-batches-bin").glob("data_batch_*.bin")))
    xte, yte = features([root / "cifar-10-verify-bin" / "test_batch.bin"])
    centroids = np.stack([xtr[ytr == k].mean(0) for k in range(10)])
    pred = np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yte).mean() > 0.6


# ---------------------------------------------------------------- imagenet

def test_imagenet_folder_layout(demo_data):
    root = demo_data["imagenet"]
    for split, per_class in (("train", 40), ("val", 10)):
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        assert classes == list(demo.IMAGENET_WNIDS)
        assert all(len(c) == 9 and c.startswith("n") and c[1:].isdigit() for c in classes)
        for c in classes:
            files = list((root / split / c).iterdir())
            assert len(files) == per_class
            assert all(f.suffix == ".JPEG" for f in files)
    sizes = set()
    for f in sorted((root / "train").rglob("*.JPEG"))[::7]:
        with Image.open(f) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.add(im.size)
    assert all(64 <= w <= 120 and 64 <= h <= 120 for w, h in sizes)
    assert any(w != h for w, h in sizes) and len(sizes) > 10


def test_imagenet_read_by_mindspore(demo_data):
    import mindspore.dataset as ds
    import mindspore.dataset.vision as vision

    train = ds.ImageFolderDataset(str(demo_data["imagenet"] / "train"), shuffle=False)
    assert train.num_classes() == 10
    assert train.get_dataset_size() == 400
    assert train.get_class_indexing() == {w: i for i, w in enumerate(demo.IMAGENET_WNIDS)}
    val = ds.ImageFolderDataset(str(demo_data["imagenet"] / "val"), shuffle=False,
                                num_samples=12).map(vision.Decode(), input_columns="image")
    rows = list(val.create_dict_iterator(num_epochs=1, output_numpy=True))
    assert len(rows) == 12
    assert all(r["image"].ndim == 3 and r["image"].shape[2] == 3 for r in rows)
    assert sorted({int(r["label"]) for r in rows}) == [0, 1]


# ---------------------------------------------------------------- coco

def test_coco_instances_format(demo_data):
    from pycocotools.coco import COCO

    root = demo_data["coco"]
    stats = {}
    for split, n_images in (("train2017", 48), ("val2017", 16)):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
        cat_ids = coco.getCatIds()
        assert len(cat_ids) == 80 and cat_ids[-1] == 90 and cat_ids != list(range(1, 81))
        assert coco.loadCats([1, 3, 18, 44]) == [
            {"supercategory": s, "id": i, "name": n} for i, n, s in
            [(1, "person", "person"), (3, "car", "vehicle"), (18, "dog", "animal"),
             (44, "bottle", "kitchen")]]
        img_ids = sorted(coco.getImgIds())
        assert len(img_ids) == n_images
        assert img_ids != list(range(img_ids[0], img_ids[0] + n_images))
        for img in coco.loadImgs(img_ids):
            assert img["file_name"] == f"{img['id']:012d}.jpg"
            with Image.open(root / split / img["file_name"]) as im:
                assert im.format == "JPEG" and im.size == (img["width"], img["height"])
            assert img["width"] != img["height"]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            if split == "val2017":
                assert anns, "every val image has at least one object"
            for a in anns:
                x, y, w, h = a["bbox"]
                assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"]
                assert a["category_id"] in (1, 3, 18, 44)
                assert a["area"] > 0 and a["segmentation"]
        anns = coco.loadAnns(coco.getAnnIds())
        stats[split] = {"crowd": sum(a["iscrowd"] for a in anns),
                        "degenerate": sum(1 for a in anns if a["bbox"][2] <= 1 or a["bbox"][3] <= 1)}
        if split == "train2017":
            crowd = next(a for a in anns if a["iscrowd"])
            assert coco.annToMask(crowd).sum() == crowd["area"]
    assert stats["train2017"] == {"crowd": 1, "degenerate": 1}
    assert stats["val2017"] == {"crowd": 0, "degenerate": 0}


def test_coco_boxes_fit_the_drawn_objects(demo_data):
    """Each non-degenerate box is tight: its border pixels differ from the outside."""
    from pycocotools.coco import COCO

    root = demo_data["coco"]
    coco = COCO(str(root / "annotations" / "instances_val2017.json"))
    for img in coco.loadImgs(coco.getImgIds())[:6]:
        pixels = np.asarray(Image.open(root / "val2017" / img["file_name"]).convert("RGB"), np.int32)
        for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            x, y, w, h = (int(v) for v in a["bbox"])
            centre = pixels[y + h // 2, x + w // 2]
            color = np.asarray(demo.COCO_OBJECTS[a["category_id"]][1])
            assert np.abs(centre - color).max() < 60


# ---------------------------------------------------------------- behaviour

def test_same_seed_gives_identical_bytes(demo_data_root, tmp_path):
    again = make_demo_data(tmp_path / "again", seed=0)
    for kind in KINDS:
        files = _all_files(demo_data_root / kind)
        assert files == _all_files(again[kind]) and len(files) > 5
        match, mismatch, errors = filecmp.cmpfiles(demo_data_root / kind, again[kind],
                                                   [str(f) for f in files], shallow=False)
        assert not mismatch and not errors
    other = make_demo_data(tmp_path / "other", kinds=["cifar10"], seed=1)["cifar10"]
    rel = Path("cifar-10-batches-bin") / "data_batch_1.bin"
    assert (other / rel).read_bytes() != (demo_data_root / "cifar10" / rel).read_bytes()


def test_existing_kinds_are_skipped_unless_overwrite(tmp_path):
    paths = make_demo_data(tmp_path, kinds=("cifar10",))
    assert paths == {"cifar10": tmp_path / "cifar10"}
    marker = paths["cifar10"] / "user_file.txt"
    marker.write_text("keep me")
    assert make_demo_data(tmp_path, kinds="cifar10")["cifar10"] == paths["cifar10"]
    assert marker.exists()
    make_demo_data(tmp_path, kinds=["cifar10"], overwrite=True)
    assert not marker.exists()
    assert (paths["cifar10"] / "cifar-10-verify-bin" / "test_batch.bin").stat().st_size == 200 * 3073
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10"]
    assert oct(paths["cifar10"].stat().st_mode & 0o777) == oct(0o755)


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    def broken_writer(out, rng):
        (out / "train").mkdir()
        (out / "train" / "half.JPEG").write_bytes(b"\xff\xd8")
        raise KeyboardInterrupt

    monkeypatch.setitem(demo._WRITERS, "imagenet", broken_writer)
    with pytest.raises(KeyboardInterrupt):
        make_demo_data(tmp_path, kinds=["imagenet"])
    assert list(tmp_path.iterdir()) == []

    # A leftover from a killed process (dead pid) is cleaned up by the next run.
    stale = tmp_path / ".cifar10.partial-999999999-abc"
    (stale / "cifar-10-batches-bin").mkdir(parents=True)
    make_demo_data(tmp_path, kinds=["cifar10"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10"]


def test_ensure_demo_data_and_errors(tmp_path):
    path = ensure_demo_data(tmp_path / "root", "cifar10")
    assert path == tmp_path / "root" / "cifar10"
    assert check_dataset("cifar10", str(path)) == []
    assert ensure_demo_data(tmp_path / "root", "cifar10") == path
    with pytest.raises(DataError, match="unknown demo dataset kind 'mnist'"):
        make_demo_data(tmp_path, kinds=["mnist"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        make_demo_data(tmp_path / "afile", kinds=["cifar10"])


def test_cli(tmp_path):
    cmd = [sys.executable, "-m", "src.datasets.demo", "--root", str(tmp_path), "--kinds", "cifar10"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"cifar10: {tmp_path / 'cifar10'} (written)"
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert second.stdout.strip() == f"cifar10: {tmp_path / 'cifar10'} (kept existing)"
    bad = subprocess.run(cmd[:5] + ["--kinds", "mnist"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_demo_sets_pass_the_check(demo_data):
    for kind in KINDS:
        assert check_dataset(kind, str(demo_data[kind])) == [], kind

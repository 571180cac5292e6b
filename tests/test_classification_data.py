"""Classification dataset builders on the demo data: shapes, dtypes, ranges, sharding, eval size."""
import hashlib

import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401
from src.config import load_config
from src.datasets.check import inspect_dataset
from src.datasets.classification import (build_classification_dataset, classification_source,
                                         read_cifar10_binary)
from src.datasets.common import (CIFAR10_MEAN_RGB, CIFAR10_STD_RGB, IMAGENET_MEAN_RGB,
                                 IMAGENET_STD_RGB)
from src.errors import DataError


def _cfg(dataset, data_dir, **overrides):
    model = "mobilenetv1"
    values = [("model", model), ("dataset", dataset), ("data.dir", str(data_dir)),
              ("data.num_workers", 1), ("image_size", [64, 64] if dataset == "imagenet" else [32, 32]),
              ("batch_size", 16)]
    values += list(overrides.items())
    return load_config(None, overrides=values)


def _digest(array) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_batches_have_expected_shapes_dtypes_and_ranges(demo_data, dataset, split):
    cfg = _cfg(dataset, demo_data[dataset])
    data = build_classification_dataset(cfg, split, seed=3)
    image, label = next(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    size = cfg.image_size
    assert image.shape == (16, 3, size[0], size[1])
    assert image.dtype == np.float32 and label.dtype == np.int32
    assert label.min() >= 0 and label.max() < 10


def _solid_rgb_png(path, rgb):
    Image.fromarray(np.full((40, 48, 3), rgb, np.uint8)).save(path)


RGB = (200, 100, 30)  # a different value per channel: swapped channels give other numbers


def test_cifar_eval_normalisation_is_exact_per_channel(tmp_path):
    """Channel c of a solid record is (v_c / 255 - mean_c) / std_c, in R, G, B order."""
    folder = tmp_path / "cifar-10-verify-bin"
    folder.mkdir()
    record = np.zeros(3073, np.uint8)
    record[0] = 3
    for channel, value in enumerate(RGB):
        record[1 + 1024 * channel:1 + 1024 * (channel + 1)] = value
    record.tofile(folder / "test_batch.bin")
    cfg = _cfg("cifar10", tmp_path)
    image, label = next(build_classification_dataset(cfg, "eval", batch_size=1)
                        .create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert label.tolist() == [3] and image.shape == (1, 3, 32, 32)
    for channel, value in enumerate(RGB):
        want = (value / 255.0 - CIFAR10_MEAN_RGB[channel]) / CIFAR10_STD_RGB[channel]
        np.testing.assert_allclose(image[0, channel], want, rtol=0, atol=1e-5)


def test_imagenet_eval_normalisation_is_exact_per_channel(tmp_path):
    """Channel c of a solid image is (v_c - mean_c) / std_c on the 0..255 scale, R, G, B."""
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            _solid_rgb_png(tmp_path / split / name / "x.png", RGB)
    cfg = _cfg("imagenet", tmp_path)
    image, _ = next(build_classification_dataset(cfg, "eval", batch_size=1)
                    .create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert image.shape == (1, 3, 64, 64)
    for channel, value in enumerate(RGB):
        want = (value - IMAGENET_MEAN_RGB[channel]) / IMAGENET_STD_RGB[channel]
        np.testing.assert_allclose(image[0, channel], want, rtol=0, atol=1e-4)


def test_reader_reads_every_image_the_check_accepts(tmp_path):
    """Any letter case of the shared suffixes, hidden files, and a validation/ folder."""
    names = ["a.jpg", "b.Jpg", "c.JPEG", "d.png", "e.PNG", "f.bmp", "g.TIFF", "h.tif", ".i.jpg"]
    for split in ("train", "validation"):
        for cls in ("c0", "c1"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for name in names:
                fmt = {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF"}.get(
                    name.rsplit(".", 1)[1].lower(), name.rsplit(".", 1)[1].upper())
                Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / name, format=fmt)
            (folder / "notes.txt").write_text("not an image")
    report = inspect_dataset("imagenet", str(tmp_path), num_classes=2)
    assert report.ok, report.problems
    assert f"val {2 * len(names)} images in 2 classes (validation/)" in report.summary
    cfg = _cfg("imagenet", tmp_path)
    for split in ("train", "eval"):
        assert classification_source(cfg, split).get_dataset_size() == 2 * len(names)
    seen = sum(len(label) for _, label in build_classification_dataset(cfg, "eval", batch_size=5)
               .create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert seen == 2 * len(names)


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_two_rank_shards_are_disjoint_and_cover_every_training_sample(demo_data, dataset):
    cfg = _cfg(dataset, demo_data[dataset])
    everything = [_digest(img) for img, _ in
                  classification_source(cfg, "train", shuffle=False).create_tuple_iterator(
                      num_epochs=1, output_numpy=True)]
    shards = []
    for rank in (0, 1):
        source = classification_source(cfg, "train", rank=rank, group_size=2)
        shards.append([_digest(img) for img, _ in
                       source.create_tuple_iterator(num_epochs=1, output_numpy=True)])
    assert len(everything) % 2 == 0, "demo set size chosen so that 2 shards need no padding"
    assert len(set(everything)) == len(everything), "demo samples are distinct"
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(everything)


@pytest.mark.parametrize("dataset,batch", [("cifar10", 64), ("imagenet", 32)])
def test_evaluation_keeps_every_sample(demo_data, dataset, batch):
    cfg = _cfg(dataset, demo_data[dataset])
    expected = classification_source(cfg, "eval").get_dataset_size()
    assert expected % batch != 0, "pick a batch that does not divide the set"
    data = build_classification_dataset(cfg, "eval", batch_size=batch)
    seen = sum(label.shape[0] for _, label in data.create_tuple_iterator(num_epochs=1))
    assert seen == expected


def test_training_drops_only_the_last_partial_batch(demo_data):
    cfg = _cfg("cifar10", demo_data["cifar10"])
    total = classification_source(cfg, "train").get_dataset_size()
    assert build_classification_dataset(cfg, "train").get_dataset_size() == total // 16


def test_same_seed_gives_same_order_and_augmentation(demo_data):
    cfg = _cfg("cifar10", demo_data["cifar10"])
    first = [_digest(i) for i, _ in build_classification_dataset(cfg, "train", seed=5)
             .create_tuple_iterator(num_epochs=1, output_numpy=True)]
    second = [_digest(i) for i, _ in build_classification_dataset(cfg, "train", seed=5)
              .create_tuple_iterator(num_epochs=1, output_numpy=True)]
    other = [_digest(i) for i, _ in build_classification_dataset(cfg, "train", seed=6)
             .create_tuple_iterator(num_epochs=1, output_numpy=True)]
    assert first == second
    assert first != other


def test_cifar_reader_matches_the_binary_layout(tmp_path):
    record = np.zeros(3073, np.uint8)
    record[0] = 7
    record[1:1025] = 10       # red plane
    record[1025:2049] = 20    # green plane
    record[2049:] = 30        # blue plane
    record.tofile(tmp_path / "test_batch.bin")
    images, labels = read_cifar10_binary(str(tmp_path), "eval")
    assert labels.tolist() == [7]
    assert images.shape == (1, 32, 32, 3)
    assert images[0, 5, 5].tolist() == [10, 20, 30]  # HWC, RGB order


def test_truncated_cifar_file_is_a_clear_error(tmp_path):
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x01" * 3073 * 2 + b"\x00" * 10)
    with pytest.raises(DataError, match="data_batch_1.bin.*6156 bytes"):
        read_cifar10_binary(str(tmp_path), "train")


def test_missing_split_folder_names_the_fix(tmp_path):
    cfg = _cfg("imagenet", tmp_path)
    with pytest.raises(DataError, match="train"):
        build_classification_dataset(cfg, "train")
    cfg = _cfg("cifar10", tmp_path / "nope")
    with pytest.raises(DataError, match="not found"):
        build_classification_dataset(cfg, "eval")

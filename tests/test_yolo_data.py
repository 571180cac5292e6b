"""COCO reader, augmentation and the multi-scale training / evaluation pipelines."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401  (CPU setup before mindspore)
from src.config import load_config
from src.device import RunContext
from src.datasets.coco import (COCO_CATEGORY_IDS, COCO_CLASS_NAMES, CocoDetectionReader,
                               TrainBatchSource, build_eval_dataset, build_train_dataset, read_rgb)
from src.errors import ConfigError, DataError
from src.tasks import detection
from src.yolov3_tiny.augment import AugmentSettings, augment, horizontal_flip, random_crop_on_canvas
from src.yolov3_tiny.model import training_sizes
from src.yolov3_tiny.targets import target_function


def coco_cfg(coco_dir, **overrides):
    values = {"data.dir": str(coco_dir), "image_size": [64, 64], "batch_size": 4,
              "data.num_workers": 1, "detection.multi_scale": []}
    values.update(overrides)
    return load_config("config/yolov3_tiny_coco.yaml", overrides=list(values.items()))


def annotations(coco_dir, split="train2017"):
    with open(coco_dir / "annotations" / f"instances_{split}.json", encoding="utf-8") as f:
        return json.load(f)


def copy_coco(demo_data, tmp_path):
    target = tmp_path / "coco"
    shutil.copytree(demo_data["coco"], target)
    return target


# ---------------------------------------------------------------- reader

def test_reader_drops_crowd_and_degenerate_boxes(demo_data):
    coco = demo_data["coco"]
    doc = annotations(coco)
    usable = [a for a in doc["annotations"]
              if not a["iscrowd"] and a["bbox"][2] > 1 and a["bbox"][3] > 1]
    assert len(usable) < len(doc["annotations"])  # the demo has a crowd and a degenerate box
    reader = CocoDetectionReader(str(coco / "train2017"), str(coco / "annotations" /
                                                               "instances_train2017.json"),
                                 training=True, num_classes=80)
    assert len(reader) == len({a["image_id"] for a in usable}) < len(doc["images"])
    assert sum(len(r.boxes) for r in reader.records) == len(usable)
    # Contiguous classes follow the sorted COCO ids; boxes are x1, y1, x2, y2, class.
    assert reader.category_ids == COCO_CATEGORY_IDS and reader.class_names == COCO_CLASS_NAMES
    ann = usable[0]
    record = next(r for r in reader.records if r.image_id == ann["image_id"])
    x, y, w, h = ann["bbox"]
    assert [x, y, x + w, y + h, COCO_CATEGORY_IDS.index(ann["category_id"])] in record.boxes.tolist()


def test_evaluation_reader_keeps_every_image(demo_data):
    coco = demo_data["coco"]
    reader = CocoDetectionReader(str(coco / "val2017"),
                                 str(coco / "annotations" / "instances_val2017.json"),
                                 training=False)
    all_ids = sorted(image["id"] for image in annotations(coco, "val2017")["images"])
    assert [r.image_id for r in reader.records] == all_ids


def test_reader_errors_are_one_clear_line(demo_data, tmp_path):
    coco = copy_coco(demo_data, tmp_path)
    ann = coco / "annotations" / "instances_train2017.json"
    with pytest.raises(DataError, match="missing.json: annotation file not found"):
        CocoDetectionReader(str(coco / "train2017"), str(coco / "missing.json"), True)
    with pytest.raises(DataError, match="lists 80 categories but num_classes is 3.*--num_classes=80"):
        CocoDetectionReader(str(coco / "train2017"), str(ann), True, num_classes=3)
    victim = sorted((coco / "train2017").iterdir())[3]
    victim.unlink()
    with pytest.raises(DataError, match=f"{victim.name}: image listed in instances_train2017.json "
                                        f"does not exist"):
        CocoDetectionReader(str(coco / "train2017"), str(ann), True)
    doc = annotations(coco)
    doc["annotations"] = []
    empty = coco / "annotations" / "empty.json"
    empty.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="has no annotations"):
        CocoDetectionReader(str(coco / "val2017"), str(empty), False)
    (coco / "annotations" / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="broken.json: not valid JSON"):
        CocoDetectionReader(str(coco / "val2017"), str(coco / "annotations" / "broken.json"), False)


def test_missing_paths_in_the_config_are_data_errors(tmp_path):
    cfg = load_config("config/yolov3_tiny_coco.yaml", overrides=[("data.dir", "")])
    with pytest.raises(DataError, match="--data_dir"):
        detection.eval_dataset(cfg)
    cfg = coco_cfg(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not found"):
        detection.eval_dataset(cfg)


@pytest.mark.parametrize("mode,suffix", [("L", ".jpg"), ("L", ".png"), ("RGBA", ".png"),
                                         ("P", ".png"), ("I;16", ".png"), ("CMYK", ".jpg")])
def test_images_of_any_mode_become_rgb(tmp_path, mode, suffix):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[:, :5] = (200, 40, 40)
    rgb[:, 5:] = (40, 40, 200)
    base = Image.fromarray(rgb)
    if mode == "L":
        img = base.convert("L")
    elif mode == "RGBA":
        img = base.convert("RGBA")
        img.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent -> white after compositing
    elif mode == "P":
        img = base.convert("P", palette=Image.ADAPTIVE, colors=4)
    elif mode == "I;16":
        img = Image.fromarray(np.full((8, 10), 65535 // 2, np.uint16))
    else:
        img = base.convert("CMYK")
    path = tmp_path / f"img{suffix}"
    img.save(path)
    out = read_rgb(str(path))
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    elif mode == "RGBA":
        assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [200, 40, 40]
    elif mode == "P":
        assert np.abs(out[:, 7].astype(int) - [40, 40, 200]).max() <= 8
    elif mode == "I;16":
        assert np.abs(out.astype(int) - 127).max() <= 1
    else:
        assert np.abs(out[:, 2].astype(int) - [200, 40, 40]).max() <= 12


def test_undecodable_image_is_a_data_error(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image"):
        read_rgb(str(path))


# ---------------------------------------------------------------- augmentation

def test_flip_moves_pixels_and_boxes_together():
    image = np.zeros((20, 40, 3), np.uint8)
    image[5:10, 2:8] = 255
    flipped, boxes = horizontal_flip(image, np.array([[2, 5, 8, 10, 0]], np.float32))
    assert boxes.tolist() == [[32, 5, 38, 10, 0]]
    ys, xs = np.nonzero(flipped[..., 0])
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (32, 38, 5, 10)


def test_canvas_crop_without_jitter_scales_boxes_with_the_image():
    # scale fixed at 1, no aspect jitter: a 100x50 image fills the 64-wide canvas (32 high).
    image = np.full((50, 100, 3), 200, np.uint8)
    rng = np.random.default_rng(0)
    canvas, boxes = random_crop_on_canvas(image, np.array([[10, 10, 50, 40, 1]], np.float32),
                                          (64, 64), 0.0, rng, scale_range=(1.0, 1.0))
    assert canvas.shape == (64, 64, 3)
    rows = np.nonzero(canvas[:, 0, 0] == 200)[0]
    dy = rows.min()
    assert len(rows) == 32 and (canvas[:, :, 0] != 128).sum() == 64 * 32
    np.testing.assert_allclose(boxes, [[6.4, 6.4 + dy, 32, 25.6 + dy, 1]], rtol=1e-5)


def test_augmented_boxes_stay_inside_the_input(demo_data):
    cfg = coco_cfg(demo_data["coco"])
    reader = CocoDetectionReader(str(demo_data["coco"] / "train2017"),
                                 str(demo_data["coco"] / "annotations" / "instances_train2017.json"),
                                 True)
    rng = np.random.default_rng(3)
    settings = AugmentSettings.from_config(cfg)
    kept = 0
    for index in range(len(reader)):
        image, boxes = reader.load(index)
        out, out_boxes = augment(image, boxes, (96, 64), settings, rng)
        assert out.shape == (96, 64, 3) and out.dtype == np.uint8
        assert (out_boxes[:, [0, 2]] >= 0).all() and (out_boxes[:, [0, 2]] <= 64).all()
        assert (out_boxes[:, [1, 3]] >= 0).all() and (out_boxes[:, [1, 3]] <= 96).all()
        assert ((out_boxes[:, 2] - out_boxes[:, 0]) > 1).all()
        kept += len(out_boxes)
    assert kept > 0


def test_bad_crop_scale_is_a_config_error(demo_data):
    with pytest.raises(ConfigError, match="crop_scale"):
        AugmentSettings.from_config(coco_cfg(demo_data["coco"], **{"detection.crop_scale": [2.0, 1.0]}))


# ---------------------------------------------------------------- pipelines

def test_multi_scale_really_changes_the_input_size(demo_data):
    cfg = coco_cfg(demo_data["coco"], **{"detection.multi_scale": [64, 96, 128],
                                         "detection.multi_scale_interval": 2})
    augmentation = AugmentSettings.from_config(cfg)
    schedule = dict(zip(("sizes", "size_interval"), training_sizes(cfg)))
    assert schedule == {"sizes": [(64, 64), (96, 96), (128, 128)], "size_interval": 2}
    data = build_train_dataset(cfg, *target_function(cfg), seed=4, transform=augmentation,
                               **schedule)
    usable = len(CocoDetectionReader(str(demo_data["coco"] / "train2017"), str(
        demo_data["coco"] / "annotations" / "instances_train2017.json"), True))
    assert data.get_dataset_size() == usable // 4
    sizes = []
    for image, y32, y16, gt32, gt16 in data.create_tuple_iterator(num_epochs=1, output_numpy=True):
        size = image.shape[2]
        assert image.shape == (4, 3, size, size) and image.dtype == np.float32
        assert y32.shape == (4, size // 32, size // 32, 3, 85)
        assert y16.shape == (4, size // 16, size // 16, 3, 85)
        assert gt32.shape == gt16.shape == (4, 90, 4)
        sizes.append(size)
    assert len(set(sizes)) >= 2, sizes
    assert all(sizes[i] == sizes[i + 1] for i in range(0, len(sizes) - 1, 2)), sizes
    # The same seed gives the same sizes (and batches); the target counts are non-zero.
    again = [b[0].shape[2] for b in build_train_dataset(
        cfg, *target_function(cfg), seed=4, transform=augmentation,
        **schedule).create_tuple_iterator(num_epochs=1, output_numpy=True)]
    assert again == sizes


def test_single_scale_uses_image_size(demo_data):
    cfg = coco_cfg(demo_data["coco"], image_size=[96, 64])
    data = detection.train_dataset(cfg, RunContext("CPU", 0), seed=1)
    image, y32, y16, _, _ = next(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert image.shape == (4, 3, 96, 64)
    assert y32.shape[1:3] == (3, 2) and y16.shape[1:3] == (6, 4)
    assert y32[..., 4].sum() + y16[..., 4].sum() > 0


def test_ranks_get_disjoint_equal_shares(demo_data):
    cfg = coco_cfg(demo_data["coco"])
    reader = CocoDetectionReader(str(demo_data["coco"] / "train2017"),
                                 str(demo_data["coco"] / "annotations" / "instances_train2017.json"),
                                 True)
    shares = [TrainBatchSource(reader, 4, [(64, 64)], 10, AugmentSettings(), None, rank, 3, seed=2)
              for rank in range(3)]
    per_rank = -(-len(reader) // 3)  # padded by wrapping around
    assert [len(s.indices) for s in shares] == [per_rank] * 3
    assert [len(s) for s in shares] == [per_rank // 4] * 3
    first = [set(s.indices[:len(reader) // 3].tolist()) for s in shares]
    assert not (first[0] & first[1]) and not (first[1] & first[2]) and not (first[0] & first[2])
    assert set().union(*[set(s.indices.tolist()) for s in shares]) == set(range(len(reader)))


def test_eval_pipeline_keeps_every_image_with_original_sizes(demo_data):
    cfg = coco_cfg(demo_data["coco"], image_size=[64, 96])
    data = build_eval_dataset(cfg, batch_size=5)
    doc = annotations(demo_data["coco"], "val2017")
    sizes = {i["id"]: [i["width"], i["height"]] for i in doc["images"]}
    seen = []
    for image, image_size, image_id in data.create_tuple_iterator(num_epochs=1, output_numpy=True):
        assert image.shape[1:] == (3, 64, 96)
        for size, iid in zip(image_size.tolist(), image_id.tolist()):
            assert sizes[iid] == size
            seen.append(iid)
    assert seen == sorted(sizes) and len(seen) == 16  # 5 + 5 + 5 + 1: nothing dropped


def test_class_catalog_reads_the_eval_categories_through_the_reader_rules(demo_data, tmp_path):
    from src.datasets.coco import class_catalog

    coco = copy_coco(demo_data, tmp_path)
    names, ids = class_catalog(coco_cfg(coco))
    assert ids == COCO_CATEGORY_IDS and names == COCO_CLASS_NAMES
    ann = coco / "annotations" / "instances_val2017.json"
    doc = annotations(coco, "val2017")
    doc["categories"] = [{"id": 9, "name": "boat"}, {"id": 3, "name": "car"}]
    ann.write_text(json.dumps(doc))
    assert class_catalog(coco_cfg(coco, num_classes=2)) == (("car", "boat"), (3, 9))
    assert class_catalog(coco_cfg(coco, num_classes=3)) == (("class_0", "class_1", "class_2"),
                                                            (0, 1, 2))
    doc["categories"].append({"id": 3, "name": "truck"})
    ann.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="instances_val2017.json: 1 duplicated category id"):
        class_catalog(coco_cfg(coco, num_classes=2))


def test_training_batches_use_the_configs_normalisation(demo_data):
    """A converted Darknet checkpoint fine-tunes on RGB/255 inputs, as its config says."""
    from src.datasets.common import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

    def first_batch(**overrides):
        cfg = coco_cfg(demo_data["coco"], **overrides)
        data = detection.train_dataset(cfg, RunContext("CPU", 0), seed=1)
        return next(data.create_tuple_iterator(num_epochs=1, output_numpy=True))[0]

    imagenet = first_batch()
    unit = first_batch(**{"preprocess.mean": [0, 0, 0], "preprocess.std": [255, 255, 255]})
    mean = np.asarray(IMAGENET_MEAN_RGB, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD_RGB, np.float32)[:, None, None]
    np.testing.assert_allclose(unit * 255.0, imagenet * std + mean, atol=1e-3)
    assert unit.min() >= 0 and unit.max() <= 1 and imagenet.min() < 0

"""CIFAR-10 (binary) and ImageNet (class folders) pipelines for the classifiers.

Transforms follow the upstream recipes; which optional augmentations run is
chosen by config keys (``data.color_jitter``, ``data.cutout``, ...), not by
model name. Normalisation constants are in RGB order for every model.
Evaluation keeps every sample (no dropped last batch).
"""
import glob
import os

import mindspore as ms
import numpy as np
import mindspore.dataset as ds
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V

from src.datasets.common import (CIFAR10_MEAN_RGB, CIFAR10_STD_RGB, IMAGENET_MEAN_RGB,
                                 IMAGENET_STD_RGB, clamp_workers, require_dir, shard_kwargs)
from src.errors import DataError

CIFAR_TRAIN_FOLDER = "cifar-10-batches-bin"
CIFAR_EVAL_FOLDER = "cifar-10-verify-bin"


def resolve_split_dir(cfg, split: str) -> str:
    """Folder holding the ``split`` ('train' or 'eval') data of ``cfg.dataset``."""
    explicit = cfg.data.train_dir if split == "train" else cfg.data.eval_dir
    if explicit:
        return explicit
    root = cfg.data.dir
    if not root:
        raise DataError(f"no dataset path given; pass --data_dir=<dataset root> "
                        f"(or --data.{split}_dir=<folder>)")
    if cfg.dataset == "cifar10":
        sub = CIFAR_TRAIN_FOLDER if split == "train" else CIFAR_EVAL_FOLDER
        pattern = "data_batch_*.bin" if split == "train" else "test_batch*.bin"
        if os.path.isdir(os.path.join(root, sub)):
            return os.path.join(root, sub)
        if glob.glob(os.path.join(root, pattern)):
            return root  # the user pointed straight at the split folder
        return os.path.join(root, sub)
    if cfg.dataset == "imagenet":
        names = ("train",) if split == "train" else ("val", "validation_preprocess", "validation")
        for name in names:
            if os.path.isdir(os.path.join(root, name)):
                return os.path.join(root, name)
        return os.path.join(root, names[0])
    raise DataError(f"dataset {cfg.dataset!r} is not a classification dataset")


# Without a filter ImageFolderDataset tries to decode every file (README.txt, ...).
IMAGE_EXTENSIONS = [".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG", ".bmp"]
CIFAR_RECORD_BYTES = 1 + 32 * 32 * 3  # label byte, then the R, G and B planes
CIFAR_MAX_FILE_BYTES = 512 * 2 ** 20  # a real batch file is 30 MB; as src.datasets.check


def read_cifar10_binary(folder: str, split: str):
    """All records of the CIFAR-10 binary split in ``folder``: (N,32,32,3) uint8, (N,) int32.

    Read with numpy rather than ``Cifar10Dataset``, which only accepts files of
    exactly 10,000 records and gives no useful message for a truncated file.
    """
    pattern = "data_batch_*.bin" if split == "train" else "test_batch*.bin"
    require_dir(folder, f"CIFAR-10 {split} folder",
                f"point --data_dir at the folder holding {CIFAR_TRAIN_FOLDER}/ and "
                f"{CIFAR_EVAL_FOLDER}/ (python -m src.datasets.demo makes a small one)")
    files = sorted(glob.glob(os.path.join(folder, pattern)))
    if not files:
        raise DataError(f"no {pattern} files in {folder!r}; it should hold the CIFAR-10 "
                        f"binary version (check it with python -m src.datasets.check)")
    records = []
    for path in files:
        try:
            if not os.path.isfile(path):
                raise DataError(f"CIFAR-10 file {path!r} is not a regular file; replace it with "
                                f"the batch file from cifar-10-binary.tar.gz")
            size = os.path.getsize(path)
            if size == 0 or size % CIFAR_RECORD_BYTES or size > CIFAR_MAX_FILE_BYTES:
                raise DataError(f"CIFAR-10 file {path!r} has {size} bytes, not a whole number of "
                                f"{CIFAR_RECORD_BYTES}-byte records up to {CIFAR_MAX_FILE_BYTES} "
                                f"bytes (truncated, or not CIFAR-10 binary?); download it again")
            records.append(np.fromfile(path, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES))
        except OSError as exc:
            raise DataError(f"cannot read CIFAR-10 file {path!r} ({exc.strerror or exc})") from None
    data = np.concatenate(records)
    labels = data[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise DataError(f"CIFAR-10 labels in {folder!r} go up to {labels.max()}, expected 0..9; "
                        f"is this the CIFAR-100 binary version?")
    images = data[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _imagenet_present(folder: str, split: str) -> None:
    require_dir(folder, f"ImageNet {split} folder",
                "point --data_dir at the folder holding train/ and val/ with one sub-folder "
                "per class")
    if not any(os.path.isdir(os.path.join(folder, d)) for d in os.listdir(folder)):
        raise DataError(f"ImageNet {split} folder {folder!r} has no class sub-folders; sort the "
                        f"images into one folder per class (python -m src.datasets.check explains)")


def cifar10_transforms(cfg, training: bool):
    """Image transforms of the CIFAR-10 recipes (upsampled to ``image_size``)."""
    ops = []
    if training:
        ops += [V.RandomCrop((32, 32), (4, 4, 4, 4)), V.RandomHorizontalFlip(prob=0.5)]
        if cfg.data.color_jitter > 0:
            j = cfg.data.color_jitter
            ops.append(V.RandomColorAdjust(brightness=j, contrast=j, saturation=j))
    if list(cfg.image_size) != [32, 32]:
        ops.append(V.Resize(tuple(cfg.image_size)))
    ops += [V.Rescale(1.0 / 255.0, 0.0), V.Normalize(CIFAR10_MEAN_RGB, CIFAR10_STD_RGB)]
    if training and cfg.data.cutout > 0:
        ops.append(V.CutOut(cfg.data.cutout, is_hwc=True))
    ops.append(V.HWC2CHW())
    return ops


def imagenet_transforms(cfg, training: bool):
    """Image transforms of the ImageNet recipes (decode included)."""
    size = tuple(cfg.image_size)
    if training:
        ops = [V.RandomCropDecodeResize(size, scale=(0.08, 1.0), ratio=(0.75, 1.333)),
               V.RandomHorizontalFlip(prob=0.5)]
        if cfg.data.color_jitter > 0 or cfg.data.hue_jitter > 0:
            j = cfg.data.color_jitter
            ops.append(V.RandomColorAdjust(brightness=j, contrast=j, saturation=j,
                                           hue=cfg.data.hue_jitter))
    else:
        resize = cfg.data.resize_eval
        ops = [V.Decode(),
               V.Resize((resize, resize) if cfg.data.square_resize_eval else resize),
               V.CenterCrop(size)]
    # Decode may give grayscale/RGBA; ConvertColor is not needed since Decode yields RGB.
    ops += [V.Normalize(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB), V.HWC2CHW()]
    return ops


def check_split_present(cfg, split: str) -> str:
    """Fail fast (before any output is written) if ``split`` is missing; return its folder."""
    folder = resolve_split_dir(cfg, split)
    if cfg.dataset == "cifar10":
        pattern = "data_batch_*.bin" if split == "train" else "test_batch*.bin"
        require_dir(folder, f"CIFAR-10 {split} folder",
                    f"point --data_dir at the folder holding {CIFAR_TRAIN_FOLDER}/ and "
                    f"{CIFAR_EVAL_FOLDER}/ (python -m src.datasets.demo makes a small one)")
        if not glob.glob(os.path.join(folder, pattern)):
            raise DataError(f"no {pattern} files in {folder!r}; it should hold the CIFAR-10 "
                            f"binary version (check it with python -m src.datasets.check)")
    else:
        _imagenet_present(folder, split)
    return folder


def classification_source(cfg, split: str, rank: int = 0, group_size: int = 1,
                          shuffle: bool = None):
    """Unbatched, untransformed reader ``(image, label)`` of one rank's part of ``split``.

    Training data is sharded over ranks (every sample on exactly one rank when
    the count divides evenly; otherwise the reader pads by repeating a few);
    evaluation data is never sharded.
    """
    training = split == "train"
    folder = resolve_split_dir(cfg, split)
    shuffle = training if shuffle is None else shuffle
    shard = shard_kwargs(rank, group_size) if training else {}
    if cfg.dataset == "cifar10":
        images, labels = read_cifar10_binary(folder, split)
        return ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=shuffle,
                                     num_parallel_workers=1, **shard)
    if cfg.dataset == "imagenet":
        _imagenet_present(folder, split)
        return ds.ImageFolderDataset(folder, num_parallel_workers=clamp_workers(
            cfg.data.num_workers, group_size), shuffle=shuffle, decode=False,
            extensions=IMAGE_EXTENSIONS, **shard)
    raise DataError(f"dataset {cfg.dataset!r} is not a classification dataset")


def build_classification_dataset(cfg, split: str, rank: int = 0, group_size: int = 1,
                                 batch_size: int = None, shuffle: bool = None,
                                 seed: int = None):
    """Batched ``(image, label)`` pipeline for ``split`` in 'train' or 'eval'.

    Training shards by rank, shuffles and drops the last partial batch (static
    shapes); evaluation keeps every sample in order. ``seed`` fixes the order
    and the augmentation, so a resumed run sees the same data as an
    uninterrupted one.
    """
    training = split == "train"
    if seed is not None:
        ds.config.set_seed(seed)
    data = classification_source(cfg, split, rank, group_size, shuffle)
    workers = clamp_workers(cfg.data.num_workers, group_size)
    image_ops = (cifar10_transforms if cfg.dataset == "cifar10" else imagenet_transforms)(
        cfg, training)
    data = data.map(operations=T.TypeCast(ms.int32), input_columns="label",
                    num_parallel_workers=workers)
    data = data.map(operations=image_ops, input_columns="image", num_parallel_workers=workers)
    size = batch_size or (cfg.batch_size if training else (cfg.data.eval_batch_size or cfg.batch_size))
    return data.batch(size, drop_remainder=training)

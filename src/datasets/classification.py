"""CIFAR-10 (binary) and ImageNet (class folders) pipelines for the classifiers.

Transforms follow the upstream recipes; which optional augmentations run is
chosen by config keys (``data.color_jitter``, ``data.cutout``, ...), not by
model name. Normalisation constants are in RGB order for every model.
Evaluation keeps every sample (no dropped last batch).
"""
import fnmatch
import os

import mindspore as ms
import numpy as np
import mindspore.dataset as ds
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V

from src.datasets import cifar10, imagenet
from src.datasets.cifar10 import EVAL_FOLDER as CIFAR_EVAL_FOLDER
from src.datasets.cifar10 import TRAIN_FOLDER as CIFAR_TRAIN_FOLDER
from src.datasets.cifar10 import read_cifar10_binary  # noqa: F401  (the CIFAR reader's home)
from src.datasets.common import (CHECK_HINT, CIFAR10_MEAN_RGB, CIFAR10_STD_RGB, IMAGENET_MEAN_RGB,
                                 IMAGENET_STD_RGB, clamp_workers, image_suffix_spellings,
                                 raise_first, shard_kwargs)
from src.datasets.letterbox import letterbox
from src.errors import DataError
from src.preprocessing import eval_preprocessing

DATASETS = ("cifar10", "imagenet")


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
        if os.path.isdir(os.path.join(root, sub)):
            return os.path.join(root, sub)
        if fnmatch.filter(_names(root), cifar10.split_glob(split)):
            return root  # the user pointed straight at the split folder
        return os.path.join(root, sub)
    if cfg.dataset == "imagenet":
        return imagenet.split_folder(root, split)
    raise DataError(f"dataset {cfg.dataset!r} is not a classification dataset")


def _names(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return []


def split_reader(cfg, split: str):
    """The format reader of ``split`` for this config (a Cifar10Split or ImageFolderSplit)."""
    folder = resolve_split_dir(cfg, split)
    if cfg.dataset == "cifar10":
        return cifar10.Cifar10Split(folder, split)
    if cfg.dataset == "imagenet":
        return imagenet.ImageFolderSplit(folder, split)
    raise DataError(f"dataset {cfg.dataset!r} is not a classification dataset")


def _present_reader(cfg, split: str):
    """The reader of ``split`` when its folder exists (None otherwise)."""
    try:
        reader = split_reader(cfg, split)
    except DataError:
        return None
    return reader if reader.folder.is_dir() else None


def validate_for_config(cfg, splits=("train",)):
    """Cheap problems of the config's ``splits``: layout, sizes, class counts, class sets.

    ImageNet class folders of train and eval are compared whenever both
    folders exist, even if this run reads only one of them: a class missing
    from one shifts every later label.
    """
    readers = {split: split_reader(cfg, split) for split in splits}
    if cfg.dataset == "cifar10":
        folder = next(iter(readers.values())).folder if readers else cfg.data.dir
        problems = cifar10.class_count_problem(folder, cfg.num_classes)
        for reader in readers.values():
            problems += reader.validate()
        return problems
    train, evaluation = readers.get("train"), readers.get("eval")
    if train is None and evaluation is not None:
        # Evaluation only: the training folders (when usable) still define the labels.
        train = _present_reader(cfg, "train")
        if train is not None and any(p.is_error for p in train.validate()):
            train = None
        return imagenet.validate_splits(train, evaluation, cfg.num_classes)
    problems = imagenet.validate_splits(train, evaluation, cfg.num_classes)
    if evaluation is None and train is not None and not any(p.is_error for p in problems):
        other = _present_reader(cfg, "eval")
        if other is not None and not any(p.is_error for p in other.validate()):
            problems += imagenet.class_set_problems(train, other)
    return problems


class LetterboxOp:
    """Dataset op: RGB image -> float32 letterbox canvas of ``size`` (fill a fraction of 255)."""

    def __init__(self, size, fill: float):
        self.size, self.fill = tuple(int(v) for v in size), float(fill)

    def __call__(self, image):
        return letterbox(np.asarray(image, np.float32), self.size, self.fill * 255.0)[0]


def cifar10_transforms(cfg, training: bool):
    """Image transforms of the CIFAR-10 recipes (upsampled to ``image_size``)."""
    ops = []
    if training:
        ops += [V.RandomCrop((32, 32), (4, 4, 4, 4)), V.RandomHorizontalFlip(prob=0.5)]
        if cfg.data.color_jitter > 0:
            j = cfg.data.color_jitter
            ops.append(V.RandomColorAdjust(brightness=j, contrast=j, saturation=j))
    pre = eval_preprocessing(cfg)
    if pre.resize_mode == "letterbox" and not training:
        ops.append(LetterboxOp(cfg.image_size, pre.letterbox_fill))
    elif list(cfg.image_size) != [32, 32]:
        ops.append(V.Resize(tuple(cfg.image_size)))
    ops.append(V.Rescale(1.0 / 255.0, 0.0))
    if pre.mean is None and pre.std is None:
        ops.append(V.Normalize(CIFAR10_MEAN_RGB, CIFAR10_STD_RGB))
    else:  # preprocess.mean/std are on the 0-255 scale
        ops.append(V.Normalize([v / 255.0 for v in pre.mean or [m * 255.0 for m in CIFAR10_MEAN_RGB]],
                               [v / 255.0 for v in pre.std or [d * 255.0 for d in CIFAR10_STD_RGB]]))
    if training and cfg.data.cutout > 0:
        ops.append(V.CutOut(cfg.data.cutout, is_hwc=True))
    ops.append(V.HWC2CHW())
    return ops


def imagenet_transforms(cfg, training: bool):
    """Image transforms of the ImageNet recipes (decode included)."""
    size = tuple(cfg.image_size)
    pre = eval_preprocessing(cfg)
    if training:
        ops = [V.RandomCropDecodeResize(size, scale=(0.08, 1.0), ratio=(0.75, 1.333)),
               V.RandomHorizontalFlip(prob=0.5)]
        if cfg.data.color_jitter > 0 or cfg.data.hue_jitter > 0:
            j = cfg.data.color_jitter
            ops.append(V.RandomColorAdjust(brightness=j, contrast=j, saturation=j,
                                           hue=cfg.data.hue_jitter))
    else:
        resize = cfg.data.resize_eval
        if pre.resize_mode == "letterbox":
            ops = [V.Decode(), LetterboxOp(size, pre.letterbox_fill)]
        elif pre.resize_mode == "stretch":
            ops = [V.Decode(), V.Resize(size)]
        else:
            ops = [V.Decode(),
                   V.Resize((resize, resize) if cfg.data.square_resize_eval else resize),
                   V.CenterCrop(size)]
    # Decode may give grayscale/RGBA; ConvertColor is not needed since Decode yields RGB.
    ops += [V.Normalize(list(pre.mean or IMAGENET_MEAN_RGB), list(pre.std or IMAGENET_STD_RGB)),
            V.HWC2CHW()]
    return ops


def check_split_present(cfg, split: str) -> str:
    """Fail fast (before any output is written) if ``split`` is unusable; return its folder."""
    reader = split_reader(cfg, split)
    raise_first(reader.validate(), f"{CHECK_HINT} --dataset {cfg.dataset} --data_dir <root>")
    return str(reader.folder)


def classification_source(cfg, split: str, rank: int = 0, group_size: int = 1,
                          shuffle: bool = None):
    """Unbatched, untransformed reader ``(image, label)`` of one rank's part of ``split``.

    Training data is sharded over ranks (every sample on exactly one rank when
    the count divides evenly; otherwise the reader pads by repeating a few);
    evaluation data is never sharded.
    """
    training = split == "train"
    shuffle = training if shuffle is None else shuffle
    shard = shard_kwargs(rank, group_size) if training else {}
    reader = split_reader(cfg, split)
    if cfg.dataset == "cifar10":
        images, labels = reader.read()
        return ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=shuffle,
                                     num_parallel_workers=1, **shard)
    raise_first(reader.validate(), f"{CHECK_HINT} --dataset imagenet --data_dir <root>")
    # Without a filter ImageFolderDataset tries to decode every file (README.txt, ...); it
    # matches suffixes case-sensitively, so it gets every spelling of the shared list.
    # The labels are the reader's: class folders in sorted order, named explicitly.
    return ds.ImageFolderDataset(str(reader.folder), num_parallel_workers=clamp_workers(
        cfg.data.num_workers, group_size), shuffle=shuffle, decode=False,
        extensions=image_suffix_spellings(), **shard,
        class_indexing={name: label for label, name in enumerate(reader.class_names)})


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

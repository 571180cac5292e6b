"""Network inputs for the deploy path, built with the training code's eval transforms.

Nothing here re-implements preprocessing: CIFAR-10 and ImageNet images go
through :func:`src.datasets.classification.cifar10_transforms` /
:func:`~src.datasets.classification.imagenet_transforms` (the ops ``eval.py``
maps over its dataset, run eagerly on one image) and COCO images through
:func:`src.datasets.coco.preprocess_for_inference`.
"""
import glob
import os
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from src.deploy.common import DeployError, iter_bin_inputs, list_input_files
from src.deploy.spec import image_extensions, spec_config

CIFAR_STEM = "cifar10_test_{:05d}"


def cifar_stem(index: int) -> str:
    """Stem of the ``index``-th CIFAR-10 test record: ``cifar10_test_00000``."""
    return CIFAR_STEM.format(index)


def find_cifar_test_folder(data_path: str) -> Optional[str]:
    """The folder holding ``test_batch*.bin`` (``data_path`` or its cifar-10-verify-bin/)."""
    from src.datasets.classification import CIFAR_EVAL_FOLDER  # pylint: disable=C0415
    for folder in (data_path, os.path.join(data_path, CIFAR_EVAL_FOLDER)):
        if glob.glob(os.path.join(folder, "test_batch*.bin")):
            return folder
    return None


def iter_cifar_records(spec: Dict, data_path: str) -> Iterator[Tuple[str, np.ndarray, int]]:
    """``(stem, float32 CHW input, label)`` of every CIFAR-10 test record, in file order."""
    import mindspore.dataset.transforms as T  # pylint: disable=import-outside-toplevel
    from src.datasets.classification import cifar10_transforms, read_cifar10_binary  # noqa
    folder = find_cifar_test_folder(data_path)
    if folder is None:
        raise DeployError(f"no CIFAR-10 test_batch*.bin in {data_path!r} or its "
                          f"cifar-10-verify-bin/; point the data path at the CIFAR-10 root")
    images, labels = read_cifar10_binary(folder, "eval")
    transform = T.Compose(cifar10_transforms(spec_config(spec), training=False))
    for index, (image, label) in enumerate(zip(images, labels)):
        yield cifar_stem(index), np.ascontiguousarray(transform(image), np.float32), int(label)


def image_transform(spec: Dict) -> Callable[[str], np.ndarray]:
    """``path -> float32 CHW`` network input for an image file of the spec's dataset."""
    cfg = spec_config(spec)
    if spec["dataset"] == "coco":
        from src.datasets.coco import preprocess_for_inference, read_rgb  # noqa: C0415
        from src.preprocessing import eval_preprocessing  # noqa: C0415
        pre = eval_preprocessing(cfg)
        return lambda path: preprocess_for_inference(read_rgb(path), cfg.image_size, pre)
    if spec["dataset"] != "imagenet":
        raise DeployError(f"dataset {spec['dataset']!r} has no image-file inputs; run "
                          f"python preprocess.py and use its .bin files")
    import mindspore.dataset.transforms as T  # pylint: disable=import-outside-toplevel
    from src.datasets.classification import imagenet_transforms  # noqa: C0415
    compose = T.Compose(imagenet_transforms(cfg, training=False))

    def transform(path: str) -> np.ndarray:
        try:
            return np.ascontiguousarray(compose(np.fromfile(path, dtype=np.uint8)), np.float32)
        except RuntimeError as exc:
            raise DeployError(f"cannot preprocess image {path!r}: "
                              f"{str(exc).splitlines()[0]}") from None
    return transform


def iter_network_inputs(spec: Dict, data_path: str) -> Iterator[Tuple[str, np.ndarray]]:
    """``(stem, float32 CHW input)`` for every input under ``data_path``, in sorted order.

    ``data_path`` may be a CIFAR-10 root, a folder of images (flat or class
    sub-folders), or a folder of preprocessed float32 CHW ``.bin`` files (the
    output of preprocess.py, or the C++ app's --dump_inputs), used as they are.
    """
    shape = (3, *spec["image_size"])
    if spec["dataset"] == "cifar10" and find_cifar_test_folder(data_path):
        for stem, array, _ in iter_cifar_records(spec, data_path):
            yield stem, array
        return
    if spec["preprocess"]["input"] == "image":
        try:
            images = list_input_files(data_path, image_extensions())
        except DeployError as image_error:
            try:
                tensors = list(iter_bin_inputs(data_path))
            except DeployError:
                raise image_error from None
        else:
            transform = image_transform(spec)
            for stem, path, _ in images:
                yield stem, transform(path)
            return
    else:
        try:
            tensors = list(iter_bin_inputs(data_path))
        except DeployError as exc:
            raise DeployError(f"{exc}; for {spec['dataset']} give the dataset root (with "
                              f"test_batch*.bin) or the images/ folder preprocess.py writes") from None
    for stem, path in tensors:
        yield stem, read_input_bin(path, shape)


def read_input_bin(path: str, shape) -> np.ndarray:
    """A preprocessed float32 CHW tensor; DeployError if its size does not fit ``shape``."""
    expected = int(np.prod(shape)) * 4
    size = os.path.getsize(path)
    if size != expected:
        raise DeployError(f"input file {path!r} has {size} bytes; a float32 {'x'.join(map(str, shape))} "
                          f"tensor has {expected} (was it made for another image_size?)")
    return np.fromfile(path, dtype=np.float32).reshape(shape)

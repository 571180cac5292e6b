"""Helpers shared by every dataset builder: paths, worker counts, sharding."""
import os
from typing import Optional

from src.errors import DataError

IMAGENET_MEAN_RGB = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD_RGB = [0.229 * 255, 0.224 * 255, 0.225 * 255]
CIFAR10_MEAN_RGB = [0.4914, 0.4822, 0.4465]  # on the [0, 1] scale, after Rescale
CIFAR10_STD_RGB = [0.2023, 0.1994, 0.2010]
# Lower-case suffixes of the image files the readers, checks and tools accept.
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def clamp_workers(requested: int, group_size: int = 1) -> int:
    """Data workers for one process: at most the cores this process can count on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = max(1, (cores or 1) // max(1, group_size))
    return max(1, min(int(requested), per_process))


def first_existing(*candidates: str) -> Optional[str]:
    """The first candidate path that exists, or None."""
    for path in candidates:
        if path and os.path.exists(path):
            return path
    return None


def require_dir(path: str, what: str, fix: str) -> str:
    """Return ``path`` if it is a directory; a DataError saying how to fix it otherwise."""
    if not path or not os.path.isdir(path):
        raise DataError(f"{what} {path!r} not found; {fix}")
    return path


def shard_kwargs(rank: int, group_size: int) -> dict:
    """Reader arguments that give this rank its own part of the data."""
    if group_size > 1:
        return {"num_shards": group_size, "shard_id": rank}
    return {}

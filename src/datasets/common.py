"""Shared by every dataset reader: problems, image files, worker counts, sharding.

A reader's ``validate()`` returns :class:`Problem` objects instead of raising,
so ``python -m src.datasets.check`` can list every one of them; the reader's
data methods raise the first error with :func:`raise_first`.
"""
import itertools
import os
import warnings
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

from src.errors import DataError

IMAGENET_MEAN_RGB = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD_RGB = [0.229 * 255, 0.224 * 255, 0.225 * 255]
CIFAR10_MEAN_RGB = [0.4914, 0.4822, 0.4465]  # on the [0, 1] scale, after Rescale
CIFAR10_STD_RGB = [0.2023, 0.1994, 0.2010]

# Lower-case suffixes of the image files every reader, check and tool accepts (in
# any letter case): the formats MindSpore's Decode, OpenCV and Pillow all read.
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")
MAX_IMAGE_BYTES = 256 * 2 ** 20
MAX_LISTED = 5                       # individual problems shown per kind before a count
MAX_LISTED_IMAGES = 20               # undecodable images listed before a count
DEMO_HINT = "python -m src.datasets.demo --root demo_data"
CHECK_HINT = "python -m src.datasets.check"

ERROR, WARNING, NOTE = "error", "warning", "note"


def is_image_name(name: str) -> bool:
    """True when ``name`` ends in one of :data:`IMAGE_SUFFIXES`, in any letter case."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def image_suffix_spellings() -> List[str]:
    """Every letter-case spelling of :data:`IMAGE_SUFFIXES`, for case-sensitive matchers
    (MindSpore's ImageFolderDataset, the C++ inference app)."""
    spellings = []
    for suffix in IMAGE_SUFFIXES:
        choices = [(c.lower(), c.upper()) if c.isalpha() else (c,) for c in suffix]
        spellings += ["".join(p) for p in itertools.product(*choices)]
    return spellings


def one_line(text, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where, what, and how to fix it.

    ``severity`` is ``"error"`` (the data cannot be used as it is),
    ``"warning"`` (usable, but part of it is ignored: entry points print it) or
    ``"note"`` (worth knowing when checking a dataset; entry points stay quiet).
    """

    path: str
    message: str
    fix: str
    severity: str = ERROR

    @classmethod
    def make(cls, path, message, fix, severity=ERROR) -> "Problem":
        """A problem with every part on one line."""
        return cls(one_line(path, 500), one_line(message), one_line(fix), severity)

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self):
        kind = "problem" if self.is_error else self.severity
        return f"{kind}: {self.path}: {self.message} -> fix: {self.fix}"

    def sentence(self) -> str:
        """The problem as one error-message sentence."""
        return f"{self.path}: {self.message}; fix: {self.fix}"


class Problems(list):
    """A list of :class:`Problem` with helpers to add them."""

    def error(self, path, message, fix):
        self.append(Problem.make(path, message, fix))

    def warn(self, path, message, fix=""):
        self.append(Problem.make(path, message, fix or "none needed", WARNING))

    def note(self, path, message):
        self.append(Problem.make(path, message, "none needed", NOTE))

    def listed(self, items: Sequence, limit: int, make, rest_path, rest_message, rest_fix):
        """Add the first ``limit`` items one by one (``make(item) -> (path, message, fix)``),
        the rest as one counted problem."""
        for item in items[:limit]:
            self.error(*make(item))
        if len(items) > limit:
            self.error(rest_path, f"{len(items) - limit} more like this ({rest_message})", rest_fix)


def errors(problems: Iterable[Problem]) -> List[Problem]:
    """The problems that make the data unusable (warnings left out)."""
    return [p for p in problems if p.is_error]


def raise_first(problems: Iterable[Problem], hint: Optional[str] = None) -> None:
    """Raise a DataError for the first error in ``problems`` (nothing for warnings only).

    ``hint`` is the command that lists them all, named when there are more.
    """
    found = errors(problems)
    if not found:
        return
    more = len(found) - 1
    tail = f" ({more} more; {hint} lists them)" if more and hint else ""
    raise DataError(found[0].sentence() + tail)


def list_dir(problems: Problems, path, what: str):
    """Sorted ``os.DirEntry`` list of ``path``, or None after adding why it cannot be listed."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.error(path, f"cannot list {what} ({exc.strerror or exc})",
                       "check the path and its permissions")
        return None


def file_size_problem(path) -> Optional[str]:
    """Why the image file at ``path`` cannot be used, from its size alone (None when fine)."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if size == 0:
        return "zero-byte image file"
    if size > MAX_IMAGE_BYTES:
        return f"{size} bytes is too large for one image (limit {MAX_IMAGE_BYTES})"
    return None


def image_header_size(path):
    """``(width, height)`` read from the file header (no pixels decoded)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                return im.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def decode_pixel_limit() -> int:
    """Pixels above which Pillow refuses to decode (its decompression-bomb guard)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    return 2 * int(Image.MAX_IMAGE_PIXELS)


def decode_problem(path, expected_size=None) -> Optional[str]:
    """Why the image at ``path`` does not decode (None when it does).

    The header is read first, so an image too large for Pillow's
    decompression-bomb guard is called too large, not undecodable.
    """
    from PIL import Image  # pylint: disable=import-outside-toplevel
    reason = file_size_problem(path)
    if reason:
        return reason
    try:
        width, height = image_header_size(path)
    except Exception as exc:  # pylint: disable=broad-except  (Pillow raises many types on junk)
        return f"cannot decode image ({type(exc).__name__}: {one_line(exc, 150)})"
    if width * height > decode_pixel_limit():
        return (f"image is {width}x{height} = {width * height} pixels, more than the decoder's "
                f"limit of {decode_pixel_limit()} pixels (Pillow's decompression-bomb guard)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
    except Exception as exc:  # pylint: disable=broad-except
        return f"cannot decode image ({type(exc).__name__}: {one_line(exc, 150)})"
    if expected_size is not None and (width, height) != tuple(expected_size):
        return (f"image is {width}x{height} but the annotation file says "
                f"{expected_size[0]}x{expected_size[1]}")
    return None


def check_images(problems: Problems, paths: Sequence[str], max_decode: Optional[int], fix: str,
                 expected=None) -> int:
    """Decode up to ``max_decode`` of ``paths`` (None: all); size-check the rest.

    Adds a problem per unusable image (zero-byte files are found past the
    decode budget too). Returns how many were decoded.
    """
    todo = paths if max_decode is None else paths[:max(0, int(max_decode))]
    bad = []
    for p in todo:
        reason = decode_problem(p, None if expected is None else expected.get(p))
        if reason is not None:
            bad.append((p, reason))
    for p in paths[len(todo):]:
        reason = file_size_problem(p)
        if reason is not None:
            bad.append((p, reason))
    problems.listed(bad, MAX_LISTED_IMAGES, lambda b: (b[0], b[1], fix),
                    os.path.dirname(bad[-1][0]) if bad else "", "undecodable images", fix)
    return len(todo)


def clamp_workers(requested: int, group_size: int = 1) -> int:
    """Data workers for one process: at most the cores this process can count on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = max(1, (cores or 1) // max(1, group_size))
    return max(1, min(int(requested), per_process))


def shard_kwargs(rank: int, group_size: int) -> dict:
    """Reader arguments that give this rank its own part of the data."""
    if group_size > 1:
        return {"num_shards": group_size, "shard_id": rank}
    return {}

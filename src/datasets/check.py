"""Check a dataset folder before a long run, with the readers' own validation.

Each format module (``cifar10``, ``imagenet``, ``coco``) knows its layout and
lists its problems; this module runs them over a dataset root (command line)
or over the splits a config will read (:func:`check_data_or_raise`, called by
the tasks before any output is written). It finds the mistakes that otherwise
surface hours into training: missing splits, truncated or zero-filled CIFAR-10
batch files, class folders that differ between train and val, empty class
folders, corrupt images, COCO annotation files that are not JSON, that point
at missing images, that use undefined or duplicated category ids or boxes
outside their images, and a ``num_classes`` that does not match the data.

Library use::

    problems = check_dataset("imagenet", "/data/imagenet", num_classes=1001)
    for p in problems:
        print(p)          # problem: <path>: <message> -> fix: <fix>

Command line (exit status 1 when there is any problem)::

    python -m src.datasets.check --dataset {cifar10,imagenet,coco} --data_dir DIR [--num_classes N]

The check never raises on malformed input: unreadable, truncated, oversized
or binary-junk files are reported as problems.
"""
import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from src.datasets.common import (CHECK_HINT, DEMO_HINT, WARNING, Problem,  # noqa: F401
                                 Problems, errors, raise_first)
from src.errors import DataError, ZooError

DATASETS = ("cifar10", "imagenet", "coco")
SPLITS = ("both", "train", "val")
_SPLIT_ALIASES = {"both": ("train", "eval"), "all": ("train", "eval"), "train": ("train",),
                  "val": ("eval",), "eval": ("eval",), "test": ("eval",),
                  "validation": ("eval",)}


@dataclass
class CheckReport:
    """Result of :func:`inspect_dataset`: problems, warnings as notes, a one-line summary."""

    dataset: str
    data_dir: str
    problems: list = field(default_factory=list)
    summary: str = ""
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def ok_line(self):
        line = f"OK: {self.summary}"
        if self.notes:
            line += "; note: " + "; ".join(self.notes)
        return line


def _format_module(dataset):
    # Imported on use: the COCO module loads OpenCV and MindSpore's dataset package.
    if dataset == "cifar10":
        from src.datasets import cifar10 as module  # pylint: disable=import-outside-toplevel
    elif dataset == "imagenet":
        from src.datasets import imagenet as module  # pylint: disable=import-outside-toplevel
    else:
        from src.datasets import coco as module  # pylint: disable=import-outside-toplevel
    return module


def _splits(split):
    key = str(split).lower()
    if key not in _SPLIT_ALIASES:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return _SPLIT_ALIASES[key]


def inspect_dataset(dataset, data_dir, num_classes=None, split="both", *, max_decode=None,
                    full=True):
    """Check ``data_dir`` and return a :class:`CheckReport` (problems, summary, notes).

    ``full`` decodes images, at most ``max_decode`` of them (``None``: all);
    zero-byte images are always found.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    splits = _splits(split)
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(
            num_classes, bool) or num_classes <= 0):
        raise DataError(f"num_classes must be a positive integer, got {num_classes!r}")
    root = Path(data_dir)
    report = CheckReport(dataset, str(root))
    found, parts = Problems(), []
    if not root.exists():
        found.error(root, "data_dir does not exist",
                    f"pass --data_dir pointing at the {dataset} folder (demo data: {DEMO_HINT})")
    elif not root.is_dir():
        found.error(root, "data_dir is a file, not a folder",
                    f"pass --data_dir pointing at the {dataset} folder")
    elif dataset == "cifar10":
        found, parts, _ = _format_module(dataset).validate_root(root, num_classes, splits)
    else:
        found, parts, _ = _format_module(dataset).validate_root(root, num_classes, splits, full,
                                                                max_decode)
    report.problems = errors(found)
    report.notes = [p.message for p in found if not p.is_error]
    detail = "; ".join(p for p in parts if p)
    report.summary = f"{dataset} at {root}" + (f": {detail}" if detail else "")
    return report


def check_dataset(dataset, data_dir, num_classes=None, split="both", *, max_decode=None):
    """Return the list of :class:`Problem` found in ``data_dir`` (empty when it looks fine)."""
    return inspect_dataset(dataset, data_dir, num_classes, split, max_decode=max_decode).problems


def require_valid_dataset(dataset, data_dir, num_classes=None, split="both", *, max_decode=None):
    """Like :func:`inspect_dataset` but raise :class:`DataError` on the first problem."""
    report = inspect_dataset(dataset, data_dir, num_classes, split, max_decode=max_decode)
    raise_first(report.problems,
                f"python -m src.datasets.check --dataset {dataset} --data_dir {data_dir}")
    return report


def validate_for_config(cfg, splits=("train",)) -> List[Problem]:
    """The cheap problems (errors and warnings) of the ``splits`` ('train', 'eval') that
    ``cfg`` will read: layout, sizes, headers, record counts, class sets, ``num_classes``."""
    if cfg.dataset not in DATASETS:
        raise DataError(f"dataset {cfg.dataset!r} has no dataset check; use one of "
                        f"{', '.join(DATASETS)}")
    if cfg.dataset == "coco":
        from src.datasets import coco  # pylint: disable=import-outside-toplevel
        return coco.validate_for_config(cfg, splits)
    from src.datasets import classification  # pylint: disable=import-outside-toplevel
    return classification.validate_for_config(cfg, splits)


def _warn_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_data_or_raise(cfg, splits=("train",), warn: Optional[Callable[[str], None]] = None):
    """Before any work: raise a DataError for the first problem of ``splits``; print warnings.

    Warnings go to ``warn`` (default: stderr), one ``warning: ...`` line each; notes
    are left to ``python -m src.datasets.check``.
    """
    problems = validate_for_config(cfg, splits)
    hint = f"{CHECK_HINT} --dataset {cfg.dataset} --data_dir {cfg.data.dir or '<root>'}"
    raise_first(problems, hint)
    for problem in problems:
        if problem.severity == WARNING:
            (warn or _warn_on_stderr)(str(problem))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m src.datasets.check",
        description="Check a dataset folder before training; prints OK or one line per problem "
                    "and exits 1 when there is any problem.")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data_dir", required=True, help="dataset folder")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="number of classes the model will be built with")
    parser.add_argument("--split", default="both", choices=SPLITS, help="which split(s) to check")
    parser.add_argument("--max_decode", type=int, default=None,
                        help="decode at most this many images (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="layout, sizes and headers only, as train.py checks before it starts "
                             "(no image is decoded)")
    args = parser.parse_args(argv)
    try:
        report = inspect_dataset(args.dataset, args.data_dir, args.num_classes, args.split,
                                 max_decode=args.max_decode, full=not args.quick)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if report.ok:
        print(report.ok_line())
        return 0
    for p in report.problems:
        print(p)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""The ImageNet folder format: ``train/`` and ``val/`` with one sub-folder per class.

Labels are the indices of the class-folder names in sorted order (as
``mindspore.dataset.ImageFolderDataset`` assigns them), so train and val must
hold the same class folders. Image files are those named with one of
:data:`~src.datasets.common.IMAGE_SUFFIXES`, in any letter case.
"""
import os
from pathlib import Path
from typing import Dict, List, Optional

from src.datasets.common import (CHECK_HINT, IMAGE_SUFFIXES, MAX_LISTED, Problem, Problems, check_images,
                                 is_image_name, list_dir)

TRAIN_FOLDER = "train"
EVAL_FOLDERS = ("val", "validation_preprocess", "validation")  # the first that exists is used
SPLIT_FIX = ("point --data_dir at the folder holding train/ and val/ with one sub-folder per "
             "class")
IMAGE_FIX = "delete or replace the file (re-extract it from the original archive)"


def split_folder(root, split: str) -> str:
    """The folder of ``split`` ('train' or 'eval') under ``root``."""
    names = (TRAIN_FOLDER,) if split == "train" else EVAL_FOLDERS
    for name in names:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return os.path.join(root, names[0])


class ImageFolderSplit:
    """One split: class folders of image files.

    :meth:`validate` checks the layout from directory listings only;
    ``full=True`` also decodes the images (up to ``max_decode``).
    """

    def __init__(self, folder, split: str):
        self.folder, self.split = Path(folder), split
        self.classes: Dict[str, List[str]] = {}
        self.loose: List[str] = []
        self.ignored = 0
        self.hidden: List[str] = []
        self.decoded = 0

    @property
    def class_names(self) -> List[str]:
        """Class-folder names in label order."""
        return sorted(self.classes)

    @property
    def image_paths(self) -> List[str]:
        return [p for name in self.class_names for p in self.classes[name]]

    def _scan(self, problems) -> bool:
        entries = list_dir(problems, self.folder, "split folder")
        if entries is None:
            return False
        self.classes, self.loose, self.ignored, self.hidden = {}, [], 0, []
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if e.name.startswith("."):
                if is_dir:
                    self.hidden.append(e.name)
                continue
            if not is_dir:
                if is_image_name(e.name):
                    self.loose.append(e.path)
                else:
                    self.ignored += 1
                continue
            sub = list_dir(problems, e.path, "class folder")
            images = []
            for f in sub or []:
                # Hidden files count: ImageFolderDataset reads them (macOS ._x.JPEG ones fail).
                try:
                    nested = f.is_dir()
                except OSError:
                    nested = False
                if is_image_name(f.name) and not nested:
                    images.append(f.path)
                else:
                    self.ignored += 1
            self.classes[e.name] = images
        return True

    def validate(self, full: bool = False, max_decode: Optional[int] = None) -> List[Problem]:
        """Problems of this split; ``full`` decodes up to ``max_decode`` images (None: all)."""
        problems = Problems()
        self.decoded = 0
        if not self.folder.is_dir():
            problems.error(self.folder, f"ImageNet {self.split} folder not found (or not a "
                                        f"folder)", SPLIT_FIX)
            return problems
        if not self._scan(problems):
            return problems
        d = self.folder
        problems.listed(self.hidden, MAX_LISTED,
                        lambda h: (d / h, "hidden folder in the split folder: "
                                          "mindspore.dataset.ImageFolderDataset would read it as "
                                          "a class", f"move {h} out of {d.name}/"),
                        d, "hidden folders", "move them out")
        if not self.classes:
            if self.loose:
                problems.error(d, f"holds {len(self.loose)} images directly and no class folders; "
                                  f"ImageFolderDataset needs one subfolder per class",
                               "sort the images into class folders named like train/ (for "
                               "ILSVRC2012 val use the devkit labels, e.g. the common valprep.sh "
                               "script)")
            else:
                problems.error(d, "has no class folders", "add one subfolder of images per class "
                                                         f"({CHECK_HINT} explains the layout)")
            return problems
        if self.loose:
            problems.error(d, f"{len(self.loose)} images sit directly in {d.name}/ outside any "
                              f"class folder and are ignored (first: "
                              f"{os.path.basename(self.loose[0])})",
                           "move them into their class folders")
        empty = [c for c in self.class_names if not self.classes[c]]
        problems.listed(empty, MAX_LISTED,
                        lambda c: (d / c, "class folder has no images (it still takes a label)",
                                   f"add the class's images or delete the folder from "
                                   f"{TRAIN_FOLDER}/ and {EVAL_FOLDERS[0]}/"),
                        d, "empty class folders", "add images or delete the folders")
        if full:
            self.decoded = check_images(problems, self.image_paths, max_decode, IMAGE_FIX)
        return problems

    def summary(self) -> str:
        return (f"{self.split if self.split == 'train' else 'val'} {len(self.image_paths)} images "
                f"in {len(self.classes)} classes ({self.folder.name}/)")


def class_set_problems(train: ImageFolderSplit, other: ImageFolderSplit) -> List[Problem]:
    """Class folders of ``other`` (eval) that differ from ``train``'s: labels would shift."""
    problems = Problems()
    if not train.classes or not other.classes:
        return problems
    tset, vset = set(train.classes), set(other.classes)
    d, name = other.folder, other.folder.name
    why = "labels come from sorted folder names, so train and val must hold the same classes"
    problems.listed(sorted(tset - vset), MAX_LISTED,
                    lambda c: (d / c, f"class folder missing from {name}/ (it exists in "
                                      f"{train.folder.name}/); {why}",
                               f"add {name}/{c} with that class's validation images"),
                    d, f"class folders missing from {name}", "add them")
    problems.listed(sorted(vset - tset), MAX_LISTED,
                    lambda c: (d / c, f"class folder is not in {train.folder.name}/; {why}",
                               f"remove {name}/{c} or add {train.folder.name}/{c}"),
                    d, f"{name} class folders not in {train.folder.name}", "remove them")
    return problems


def class_count_problems(split: ImageFolderSplit, num_classes: Optional[int]) -> List[Problem]:
    """``num_classes`` against the class folders (one more is MobileNetV1's 1001-class recipe)."""
    problems = Problems()
    n = len(split.classes)
    if not n or num_classes is None:
        return problems
    if n == num_classes - 1:
        problems.note(split.folder, f"num_classes {num_classes} = {n} class folders + 1, as in "
                                    f"MobileNetV1's 1001-class recipe (label {num_classes - 1} is "
                                    f"never used)")
    elif n != num_classes:
        problems.error(split.folder, f"has {n} class folders but num_classes is {num_classes}",
                       f"set num_classes: {n} (--num_classes={n}; or {n + 1} for the "
                       f"MobileNetV1 1001-class recipe)")
    return problems


def _looks_like_split(path) -> bool:
    """True when ``path`` holds a subfolder that directly contains image files."""
    try:
        with os.scandir(path) as it:
            subdirs = [e.path for _, e in zip(range(2000), it) if e.is_dir()]
        for sub in subdirs[:20]:
            with os.scandir(sub) as it:
                if any(is_image_name(e.name) for _, e in zip(range(200), it)):
                    return True
    except OSError:
        pass
    return False


def validate_splits(train: Optional[ImageFolderSplit], evaluation: Optional[ImageFolderSplit],
                    num_classes=None, full=False, max_decode=None) -> List[Problem]:
    """Problems of the given splits, their class sets and ``num_classes``."""
    problems = Problems()
    decoded = 0
    for split in (train, evaluation):
        if split is not None:
            budget = None if max_decode is None else max(0, max_decode - decoded)
            problems += split.validate(full, budget)
            decoded += split.decoded
    if train is not None and evaluation is not None:
        problems += class_set_problems(train, evaluation)
    counted = next((s for s in (train, evaluation) if s is not None and s.classes), None)
    if counted is not None:
        problems += class_count_problems(counted, num_classes)
    ignored = sum(s.ignored for s in (train, evaluation) if s is not None)
    if ignored:
        problems.note(counted.folder.parent if counted else "",
                      f"{ignored} non-image entries in class folders ignored (only "
                      f"{', '.join(IMAGE_SUFFIXES)} "
                      f"files in any letter case are read)")
    return problems


def validate_root(root, num_classes=None, splits=("train", "eval"), full=False, max_decode=None):
    """Problems and summary of an ImageNet ``root``; ``(problems, summary parts, splits)``."""
    root = Path(root)
    want = [s for s in ("train", "eval") if s in splits]
    folders = {s: Path(split_folder(root, s)) for s in want}
    if not any(f.is_dir() for f in folders.values()) and _looks_like_split(root):
        names = " or ".join(f"{f.name}/" for f in folders.values())
        return (Problems([Problem.make(root, f"has class folders but no {names}: it looks like a "
                                             f"single split folder",
                                       "point --data_dir at the folder that holds train/ and val/ "
                                       "(one subfolder per class in each)")]), [], [])
    split_of = {s: ImageFolderSplit(folders[s], s) for s in want}
    problems = Problems()
    for s, split in split_of.items():
        if not split.folder.is_dir():
            problems.error(split.folder, f"{'train' if s == 'train' else 'val'} split folder is "
                                         f"missing (or not a folder)",
                           f"create {split.folder.name}/ with one subfolder of images per class")
    present = {s: split for s, split in split_of.items() if split.folder.is_dir()}
    problems += validate_splits(present.get("train"), present.get("eval"), num_classes, full,
                                max_decode)
    parts = [split.summary() for split in present.values() if split.classes]
    if full:
        parts.append(f"{sum(s.decoded for s in present.values())} images decoded")
    return problems, [", ".join(parts)] if parts else [], list(present.values())

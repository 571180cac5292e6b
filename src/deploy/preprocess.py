"""Prepare a dataset for the inference apps: input tensors and the label file.

* CIFAR-10: every test record goes through the eval transforms and is written
  as ``<output_path>/images/cifar10_test_<index>.bin`` (float32 CHW, the exact
  network input), plus the label file. The C++ app feeds these files as-is.
* ImageNet (class sub-folders): only the label file, ``<stem> <class-index>``
  with the index of the class folder in sorted order (as ImageFolderDataset and
  eval.py number them). Images are decoded by the inference app itself.
* COCO: nothing to prepare; postprocess reads the annotation file.
"""
import argparse
import os
import shutil
import sys
from typing import Dict, Sequence

from src.deploy.common import DeployError, list_input_files, write_label_file
from src.deploy.inputs import iter_cifar_records
from src.deploy.spec import image_extensions, load_spec

INPUT_SUBDIR = "images"
LABEL_FILE = "label.txt"


def write_cifar_inputs(spec: Dict, data_path: str, output_path: str, label_file: str,
                       log=print) -> str:
    """Write one .bin per CIFAR-10 test record and the label file; return the .bin folder."""
    folder = os.path.join(output_path, INPUT_SUBDIR)
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    labels = []
    for stem, array, label in iter_cifar_records(spec, data_path):
        array.tofile(os.path.join(tmp, f"{stem}.bin"))
        labels.append((stem, label))
    # Replace the folder only when complete: a half-written set looks valid to the app.
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    write_label_file(label_file, labels)
    shape = "x".join(str(v) for v in (3, *spec["image_size"]))
    log(f"wrote {len(labels)} float32 {shape} input files to {folder}")
    log(f"wrote label file {label_file} ({len(labels)} images)")
    return folder


def write_imagenet_labels(data_path: str, label_file: str, log=print) -> int:
    """Label file of an ImageNet-style split (class sub-folders); return the image count."""
    entries = list_input_files(data_path, image_extensions())
    if entries[0][2] < 0:
        raise DeployError(f"{data_path!r} is a flat folder of images: the classes cannot be "
                          f"derived from it; give an existing label file ('<stem> <class-index>' "
                          f"lines) instead of making one")
    write_label_file(label_file, [(stem, index) for stem, _, index in entries])
    classes = len({index for _, _, index in entries})
    log(f"wrote label file {label_file} ({len(entries)} images in {classes} class folders)")
    return len(entries)


def preprocess(spec: Dict, data_path: str, output_path: str, label_file: str = "",
               log=print) -> Dict:
    """Do what ``spec``'s dataset needs; return ``{"inputs": folder, "label_file": path}``."""
    label_file = label_file or os.path.join(output_path, LABEL_FILE)
    os.makedirs(output_path, exist_ok=True)
    if spec["dataset"] == "cifar10":
        folder = write_cifar_inputs(spec, data_path, output_path, label_file, log)
        return {"inputs": folder, "label_file": label_file}
    if spec["dataset"] == "imagenet":
        write_imagenet_labels(data_path, label_file, log)
        return {"inputs": data_path, "label_file": label_file}
    log(f"{spec['dataset']}: nothing to preprocess (the app reads the images; postprocess "
        f"reads the annotation file)")
    return {"inputs": data_path, "label_file": ""}


def main(argv: Sequence[str]) -> int:
    """Command line (``python preprocess.py -h``)."""
    parser = argparse.ArgumentParser(prog="preprocess.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True,
                        help="CIFAR-10 root, or the ImageNet split folder (class sub-folders)")
    parser.add_argument("--output_path", default="preprocess_Result",
                        help="where images/ and label.txt go (default: preprocess_Result)")
    parser.add_argument("--label_file", default="",
                        help="write the label file here instead of <output_path>/label.txt")
    parser.add_argument("--model_file", default="",
                        help="the exported model; its <model_file>.json gives the config")
    parser.add_argument("--config_path", "--config", default="",
                        help="config instead of the model's .json (plus --key=value overrides)")
    args, overrides = parser.parse_known_args(list(argv))
    spec = load_spec(args.model_file, args.config_path, overrides)
    preprocess(spec, args.data_path, args.output_path, args.label_file)
    return 0


if __name__ == "__main__":
    from src.cli import run_main  # pylint: disable=import-outside-toplevel
    run_main(main, sys.argv[1:])

"""Top-1 / top-5 accuracy of a classifier from result files and a label file.

    python postprocess.py --result_path=result_Files --label_file=label.txt --num_classes=1000
    python postprocess.py --result_path=... --label_file=... \\
        --model_file=tinydarknet_imagenet.mindir       # num_classes from the export's .json

Every labelled image must have a result file ``<stem>_0.bin`` holding exactly
``num_classes`` float32 logits, and every result file must have a label: any
mismatch stops with an error naming the file, so a partial or mixed-up run never
prints an accuracy; so do NaN/Inf logits (the count and the first file). Top-k is eval.py's function (:func:`src.metrics.top_k_counts`),
so both report the same numbers for the same logits.
"""
import argparse
import os
import sys
from typing import Dict, Sequence

import numpy as np

from src.deploy.common import (NON_FINITE_RESULTS_FIX, DeployError, read_label_file,
                               scan_result_files)
from src.metrics import top_k_counts
from src.utils.finite import NonFiniteTally


def load_logits(result_dir: str, labels: Dict[str, int], num_classes: int) -> Dict[str, np.ndarray]:
    """``{stem: logits}`` for every labelled image; DeployError on any mismatch."""
    results = scan_result_files(result_dir)
    extra_outputs = sorted(s for s, outs in results.items() if set(outs) != {0})
    if extra_outputs:
        raise DeployError(f"{extra_outputs[0]!r} has result files for outputs "
                          f"{sorted(results[extra_outputs[0]])}; a classifier writes one "
                          f"(<stem>_0.bin): is {result_dir!r} a detection model's result folder?")
    missing = sorted(set(labels) - set(results))
    if missing:
        raise DeployError(f"missing result file for {len(missing)} labelled image(s), e.g. "
                          f"{os.path.join(result_dir, missing[0] + '_0.bin')!r}; did the "
                          f"inference stop early, or run on another data folder?")
    unlabelled = sorted(set(results) - set(labels))
    if unlabelled:
        raise DeployError(f"no label for {len(unlabelled)} result file(s), e.g. "
                          f"{unlabelled[0] + '_0.bin'!r}; the label file must list every image "
                          f"stem ('<stem> <class-index>' lines)")
    expected = num_classes * 4
    logits = {}
    tally = NonFiniteTally("result file(s)")
    for stem in sorted(labels):
        path = results[stem][0]
        size = os.path.getsize(path)
        if size != expected:
            raise DeployError(f"result file {path!r} has {size} bytes; {num_classes} float32 "
                              f"logits take {expected}: wrong num_classes, or a model exported "
                              f"with batch > 1?")
        logits[stem] = np.fromfile(path, dtype=np.float32)
        tally.check(repr(path), logits[stem])
    tally.raise_if_any("nothing was scored", NON_FINITE_RESULTS_FIX)
    return logits


def classification_accuracy(result_dir: str, label_file: str, num_classes: int) -> Dict:
    """``{"top_1_accuracy", "top_5_accuracy", "top1_correct", "top5_correct", "total"}``."""
    if num_classes <= 0:
        raise DeployError("num_classes is unknown: pass --num_classes=N, --model_file=<export> "
                          "(its .json spec) or --config_path=<config>")
    labels = read_label_file(label_file, num_classes)
    logits = load_logits(result_dir, labels, num_classes)
    stems = sorted(labels)
    matrix = np.stack([logits[s] for s in stems])
    targets = np.asarray([labels[s] for s in stems])
    top1, top5 = top_k_counts(matrix, targets)
    total = len(stems)
    return {"top_1_accuracy": top1 / total, "top_5_accuracy": top5 / total,
            "top1_correct": top1, "top5_correct": top5, "total": total}


def format_report(metrics: Dict) -> str:
    """The upstream lines plus eval.py's ``accuracy: {...}`` line."""
    total = metrics["total"]
    acc = {"top_1_accuracy": metrics["top_1_accuracy"], "top_5_accuracy": metrics["top_5_accuracy"]}
    return (f"total={total}, top1_correct={metrics['top1_correct']}, "
            f"acc={100.0 * metrics['top_1_accuracy']:.2f}% (top-1)\n"
            f"total={total}, top5_correct={metrics['top5_correct']}, "
            f"acc={100.0 * metrics['top_5_accuracy']:.2f}% (top-5)\n"
            f"accuracy: {acc} (over {total} images)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The classification options (shared with postprocess.py)."""
    parser.add_argument("--result_path", default="result_Files",
                        help="folder of <stem>_<i>.bin result files (default: result_Files)")
    parser.add_argument("--label_file", required=True,
                        help="text file of '<image-stem> <class-index>' lines")
    parser.add_argument("--num_classes", type=int, default=0,
                        help="logits per image; default: from --model_file / --config_path")
    parser.add_argument("--model_file", default="",
                        help="the exported model, whose <model_file>.json gives num_classes")
    parser.add_argument("--config_path", "--config", default="",
                        help="config giving num_classes (instead of --model_file)")


def run(args, overrides: Sequence[str] = ()) -> Dict:
    """Score and print the report for parsed ``args``; return the metrics."""
    num_classes = args.num_classes
    if not num_classes and (args.model_file or args.config_path):
        from src.deploy.spec import load_spec  # pylint: disable=import-outside-toplevel
        num_classes = int(load_spec(args.model_file, args.config_path, overrides)["num_classes"])
    metrics = classification_accuracy(args.result_path, args.label_file, num_classes)
    print(format_report(metrics), flush=True)
    return metrics


def main(argv: Sequence[str]) -> int:
    """Command line of the classification postprocess."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args, overrides = parser.parse_known_args(list(argv))
    run(args, overrides)
    return 0


if __name__ == "__main__":
    from src.cli import run_main  # pylint: disable=import-outside-toplevel
    run_main(main, sys.argv[1:])

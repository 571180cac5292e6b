"""Tasks: what classification and detection training, evaluation and deployment need.

A task is generic over its models: classification is image data plus top-k
accuracy, detection is COCO-format data plus COCOeval. What differs between
models of one task (loss, targets, decoding, deploy network) the task asks the
model's spec (:mod:`src.registry`); no task imports a model package.
"""
import dataclasses
import importlib
from typing import Callable

# What to check when a network gives NaN/Inf during evaluation (both tasks' evaluate).
NON_FINITE_EVAL_FIX = ("the checkpoint may have diverged (is its training loss finite?) or "
                       "the preprocessing divides by zero (no zero std in the config's preprocess section)")

_TASK_MODULES = {"classification": "src.tasks.classification",
                 "detection": "src.tasks.detection"}


@dataclasses.dataclass(frozen=True)
class Task:
    """The functions every task provides (all take the resolved config first).

    * ``check_inputs(cfg, splits)``: raise a DataError before any output is written;
    * ``train_dataset(cfg, ctx, seed)`` / ``eval_dataset(cfg, ctx=None, batch_size=None)``;
    * ``loss_network(cfg, net)``: one cell over the training columns;
    * ``export_network(cfg, net)``: the cell export.py writes;
    * ``evaluate(cfg, net, ctx=None, dataset=None, log=print) -> metrics`` and
      ``format_metrics(metrics) -> str`` (the line users grep for);
    * ``score_results(cfg, flags) -> exit code``: postprocess.py's scoring of deploy
      result files (``flags``: result_path, img_path, ann_file, label_file, model_file).
    """

    name: str
    primary_metric: str  # the metric best.ckpt is chosen by
    metric_names: tuple  # the evaluation columns of a run's metrics.csv
    check_inputs: Callable
    train_dataset: Callable
    eval_dataset: Callable
    loss_network: Callable
    export_network: Callable
    evaluate: Callable
    format_metrics: Callable
    score_results: Callable


def task_names():
    """The task names a model may register with."""
    return sorted(_TASK_MODULES)


def get_task(task_name: str) -> Task:
    """The :class:`Task` named ``task_name`` ('classification' or 'detection')."""
    return importlib.import_module(_TASK_MODULES[task_name]).TASK

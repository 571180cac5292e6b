"""Task plug-ins: what differs between classification and detection training.

A task provides the datasets, the loss network and the evaluation for the
models registered with that task name; the training engine is shared.
"""
import importlib

_TASK_MODULES = {"classification": "src.tasks.classification",
                 "detection": "src.tasks.detection"}


def get_task(task_name: str):
    """The task module for ``task_name`` ('classification' or 'detection')."""
    return importlib.import_module(_TASK_MODULES[task_name])

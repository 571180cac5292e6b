"""Checkpoints with explicit contents, written atomically.

A training checkpoint holds:
  * the network's parameters under their attribute paths (``conv1.weight``), so
    it loads into a bare network for eval/export with no prefix juggling;
  * the optimizer state: ``moments.<param>`` and ``global_step``;
  * metadata: ``epoch`` (completed epochs), ``global_step``, ``model``,
    ``dataset``, ``num_classes``, ``image_size`` (as text) and ``config``
    (the run's whole resolved config as sorted JSON); a checkpoint
    written when a run was interrupted mid-epoch also holds ``step_in_epoch``
    (batches of epoch ``epoch + 1`` already trained), and one of a run with a
    dynamic loss scale holds ``loss_scale``.

Resuming (:func:`restore`) reads epoch and step from the file, never from its name.

Files are written under a temporary name in the same folder, then renamed, so a
process killed at any moment leaves every earlier checkpoint whole. Temporaries
left by a killed write are invisible to :func:`list_checkpoints` and removed by
the next :func:`save_checkpoint` in that folder. A network holding NaN/Inf is
never written (:class:`NonFiniteWeightsError`).
"""
import dataclasses
import glob
import math
import os
import re
from typing import Dict, List, Optional, Tuple

import mindspore as ms
import numpy as np

from src.errors import CheckpointError
from src.utils.io import atomic_path, remove_stale_temporaries

META_KEYS = ("epoch", "global_step", "steps_per_epoch", "model", "dataset", "num_classes",
             "image_size", "step_in_epoch", "loss_scale", "config", "class_names", "class_labels",
             "preprocessing", "converted_from")


class NonFiniteWeightsError(CheckpointError):
    """The network (or optimizer state) holds NaN/Inf; such a checkpoint is never written."""

    exit_code = 3


def network_parameters(net) -> List[Tuple[str, ms.Parameter]]:
    """(attribute path, parameter) pairs of a network, BN statistics included."""
    seen, pairs = set(), []
    for name, param in net.parameters_and_names():
        if id(param) not in seen:
            seen.add(id(param))
            pairs.append((name, param))
    return pairs


def non_finite_parameters(items) -> List[str]:
    """Names of the ``{"name", "data"}`` items whose floating-point values hold NaN/Inf."""
    bad = []
    for item in items:
        value = item["data"]
        arr = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad.append(item["name"])
    return bad


def save_checkpoint(path: str, net, optimizer=None, meta: Optional[Dict] = None) -> str:
    """Save network (+ optimizer state) and metadata to ``path`` atomically.

    Refuses (:class:`NonFiniteWeightsError`, nothing written) when a parameter
    or momentum buffer holds NaN/Inf. Removes temporaries that a killed
    earlier write left in the folder.
    """
    items = [{"name": name, "data": param} for name, param in network_parameters(net)]
    if optimizer is not None:
        for param in optimizer.moments:
            items.append({"name": param.name if param.name.startswith("moments.")
                          else "moments." + param.name, "data": param})
    bad = non_finite_parameters(items)
    if bad:
        raise NonFiniteWeightsError(
            f"refusing to write checkpoint {path!r}: {len(bad)} parameter(s) hold NaN/Inf ("
            + ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else "") + "); training diverged")
    if optimizer is not None:
        items.append({"name": "global_step", "data": optimizer.global_step})
    append = {}
    for key, value in (meta or {}).items():
        if key == "global_step":
            continue  # stored as the optimizer's counter above, or below if no optimizer
        append[key] = str(list(value)) if isinstance(value, (list, tuple)) else value
    if optimizer is None and meta and "global_step" in meta:
        append["global_step"] = int(meta["global_step"])
    remove_stale_temporaries(os.path.dirname(os.path.abspath(path)))
    with atomic_path(path) as tmp:
        ms.save_checkpoint(items, tmp, append_dict=append)
    return path


def read_checkpoint(path: str) -> Tuple[Dict[str, ms.Parameter], Dict[str, object]]:
    """Read a checkpoint file; return (tensors, metadata). Clear errors when unreadable."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} not found; pass an existing .ckpt file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path!r} is empty (an interrupted write?); "
                              f"use an earlier checkpoint")
    if not path.endswith(".ckpt"):
        raise CheckpointError(f"checkpoint {path!r} is not a .ckpt file; pass a MindSpore "
                              f"checkpoint (<name>.ckpt)")
    try:
        raw = ms.load_checkpoint(path)
    except Exception as exc:  # pylint: disable=broad-except  (corrupt files raise many types)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {path!r} cannot be read ({first}); "
                              f"it is corrupt or not a MindSpore checkpoint") from None
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"checkpoint {path!r} holds no tensors; it is truncated or not a "
                              f"MindSpore checkpoint")
    meta = {}
    for key in META_KEYS:
        if key in raw and not _is_network_tensor(key):
            value = raw.pop(key) if key != "global_step" else raw[key]
            meta[key] = value if isinstance(value, str) else _scalar(value)
    return raw, meta


def _is_network_tensor(key: str) -> bool:
    return "." in key


def _scalar(value):
    arr = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    return arr.reshape(-1)[0].item() if arr.size else None


def load_network_weights(net, tensors: Dict[str, ms.Parameter], source: str = "checkpoint",
                         strict: bool = True) -> None:
    """Copy checkpoint tensors into ``net``; refuse mismatches by name and shape.

    Accepts checkpoints whose names carry a wrapper prefix (``network.``,
    ``backbone.``...) as long as the suffixes match the network uniquely.
    """
    pairs = network_parameters(net)
    lookup = _prefix_tolerant_lookup(tensors, [n for n, _ in pairs])
    missing, wrong_shape, to_load = [], [], {}
    for name, param in pairs:
        key = lookup.get(name)
        if key is None:
            missing.append(name)
            continue
        value = tensors[key]
        shape = tuple(value.shape)
        if shape != tuple(param.shape):
            wrong_shape.append(f"{name} {shape} vs network {tuple(param.shape)}")
            continue
        to_load[name] = (param, value)
    if wrong_shape or (strict and missing):
        parts = []
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} shape mismatch(es): " + "; ".join(wrong_shape[:4])
                         + (" ..." if len(wrong_shape) > 4 else ""))
        if missing:
            parts.append(f"{len(missing)} parameter(s) missing: " + ", ".join(missing[:4])
                         + (" ..." if len(missing) > 4 else ""))
        raise CheckpointError(f"{source} does not fit the network ({'; '.join(parts)}); "
                              f"check --model, --num_classes and --image_size")
    for param, value in to_load.values():
        param.set_data(ms.Tensor(value.asnumpy()).astype(param.dtype))


def load_pretrained(net, path: str, log=print, prefix: str = "") -> Tuple[List[str], List[str]]:
    """Initialise ``net`` from the checkpoint ``path`` for fine-tuning; return (loaded, kept).

    Every parameter whose name (starting with ``prefix``) and shape the
    checkpoint holds is loaded; the others (a head sized for another class
    count) keep the network's fresh initialisation, and one line names their
    cells. A checkpoint that fits no parameter at all is a CheckpointError.
    """
    tensors, _ = read_checkpoint(path)
    pairs = network_parameters(net)
    lookup = _prefix_tolerant_lookup(tensors, [name for name, _ in pairs])
    loaded, kept = [], []
    for name, param in pairs:
        key = lookup.get(name) if name.startswith(prefix) else None
        if key is not None and tuple(tensors[key].shape) == tuple(param.shape):
            param.set_data(ms.Tensor(tensors[key].asnumpy()).astype(param.dtype))
            loaded.append(name)
        else:
            kept.append(name)
    if not loaded:
        what = f"the network's {prefix}* parameters" if prefix else "the network"
        raise CheckpointError(f"pretrained checkpoint {path!r} fits nothing of {what} (no "
                              f"parameter name and shape in common); check --model")
    cells = sorted({name.rsplit(".", 1)[0] for name in kept})
    log(f"loaded pretrained weights from {path}: {len(loaded)} tensors loaded; {len(kept)} "
        f"re-initialised" + (f" ({', '.join(cells)})" if cells else ""))
    return loaded, kept


def _prefix_tolerant_lookup(tensors: Dict, names: List[str]) -> Dict[str, str]:
    lookup = {}
    keys = [k for k in tensors if not k.startswith(("moments.", "accum.")) and k != "global_step"]
    for name in names:
        if name in tensors:
            lookup[name] = name
            continue
        candidates = [k for k in keys if k.endswith("." + name)]
        if len(candidates) == 1:
            lookup[name] = candidates[0]
    return lookup


def load_optimizer_state(optimizer, tensors: Dict[str, ms.Parameter], source: str) -> int:
    """Restore momentum buffers and the step counter of :func:`resumable` tensors; return the step."""
    # Set each buffer directly: load_param_into_net strips the "moments." prefix
    # and would write momentum values into the weights of the same name.
    for param in optimizer.moments:
        key = param.name if param.name.startswith("moments.") else "moments." + param.name
        if key not in tensors:
            raise CheckpointError(f"{source} lacks optimizer state {key!r}; it was saved by "
                                  f"another model or optimizer")
        if tuple(tensors[key].shape) != tuple(param.shape):
            raise CheckpointError(f"{source}: optimizer state {key!r} has shape "
                                  f"{tuple(tensors[key].shape)}, expected {tuple(param.shape)}")
        param.set_data(ms.Tensor(tensors[key].asnumpy()).astype(param.dtype))
    step = int(_scalar(tensors["global_step"]))
    optimizer.global_step.set_data(ms.Tensor(np.array([step], dtype=np.int32)))
    return step


def checkpoint_name(model: str, dataset: str, epoch: int, steps_per_epoch: int) -> str:
    """Model-zoo style file name ``<model>_<dataset>-<epoch>_<steps>.ckpt``."""
    return f"{model}_{dataset}-{epoch}_{steps_per_epoch}.ckpt"


_EPOCH_RE = re.compile(r"-(\d+)_(\d+)\.ckpt$")
_INTERRUPTED_RE = re.compile(r"-interrupted-e(\d+)-s(\d+)\.ckpt$")


def interrupted_checkpoint_name(model: str, dataset: str, epoch: int, step: int) -> str:
    """``<model>_<dataset>-interrupted-e<epoch>-s<step>.ckpt``: stopped after ``step`` of epoch ``epoch``."""
    return f"{model}_{dataset}-interrupted-e{epoch}-s{step}.ckpt"


def checkpoint_position(path: str) -> Optional[Tuple[int, int]]:
    """(completed epochs, batches of the next epoch) a checkpoint's name says, or None.

    ``x-3_390.ckpt`` is (3, 0); ``x-interrupted-e4-s7.ckpt`` (stopped after
    step 7 of epoch 4) is (3, 7). Used only to order files; resuming reads the
    position from the file's metadata.
    """
    name = os.path.basename(path)
    match = _EPOCH_RE.search(name)
    if match:
        return int(match.group(1)), 0
    match = _INTERRUPTED_RE.search(name)
    if match:
        return max(0, int(match.group(1)) - 1), int(match.group(2))
    return None


def list_checkpoints(folder: str) -> List[str]:
    """Training checkpoints in ``folder`` (periodic and interrupted), oldest first.

    Ordered by the training position in the name, then modification time.
    ``best.ckpt`` and temporaries of an unfinished write are not listed.
    """
    files = []
    for path in glob.glob(os.path.join(glob.escape(folder), "*.ckpt")):
        position = checkpoint_position(path)
        if position is None:
            continue
        try:
            files.append((position, os.path.getmtime(path), path))
        except OSError:  # deleted meanwhile
            continue
    return [path for _, _, path in sorted(files)]


def prune_checkpoints(folder: str, keep_max: int, own=None) -> List[str]:
    """Delete the oldest training checkpoints beyond ``keep_max``; return deleted paths.

    With ``own`` (paths), only those files are counted and deleted: files of
    another run in the same folder are never touched.
    """
    files = list_checkpoints(folder)
    if own is not None:
        own = {os.path.abspath(path) for path in own}
        files = [path for path in files if os.path.abspath(path) in own]
    doomed = files[:-keep_max] if keep_max > 0 else []
    for path in doomed:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return doomed


def check_checkpoint_matches(cfg, meta, source, check_dataset: bool = True):
    """Refuse a checkpoint whose stored model/dataset/class count differ from the config."""
    for key in ("model", "dataset") if check_dataset else ("model",):
        if key in meta and meta[key] != getattr(cfg, key):
            raise CheckpointError(f"{source} was trained with {key}={meta[key]!r} but the config "
                                  f"says {key}={getattr(cfg, key)!r}; use the matching config")
    if "num_classes" in meta and int(meta["num_classes"]) != cfg.num_classes:
        raise CheckpointError(f"{source} has num_classes={meta['num_classes']} but the config "
                              f"says {cfg.num_classes}; pass --num_classes={meta['num_classes']}")


def resumable(path: str) -> Tuple[Dict[str, ms.Parameter], Dict[str, object]]:
    """Read ``path`` and check it holds what resuming needs; CheckpointError otherwise."""
    tensors, meta = read_checkpoint(path)
    if "global_step" not in tensors:
        raise CheckpointError(f"checkpoint {path!r} holds no optimizer state (global_step); it "
                              f"cannot be resumed — use --pretrained to start from its weights")
    if "epoch" not in meta:
        raise CheckpointError(f"checkpoint {path!r} has no 'epoch' metadata; it was not written "
                              f"by train.py and cannot be resumed")
    return tensors, meta


def find_resume_checkpoint(path: str, warn=print) -> str:
    """Resolve ``--resume``: a file, or the newest resumable checkpoint in a run folder.

    In a folder, checkpoints that cannot be read (truncated, corrupt) or hold
    no training state are skipped with a warning.
    """
    if os.path.isfile(path):
        return path
    folder = os.path.join(path, "checkpoints") if os.path.isdir(os.path.join(path, "checkpoints")) else path
    if not os.path.isdir(folder):
        raise CheckpointError(f"--resume={path!r} is neither a checkpoint file nor a run folder")
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no training checkpoint (<model>_<dataset>-<epoch>_<steps>.ckpt) in "
                              f"{folder!r} to resume from")
    for candidate in reversed(candidates):
        try:
            resumable(candidate)
            return candidate
        except CheckpointError as exc:
            warn(f"warning: skipping checkpoint that cannot be resumed: {exc}")
    raise CheckpointError(f"none of the {len(candidates)} checkpoint(s) in {folder!r} can be "
                          f"resumed (see the warnings above)")


def resume_checkpoint_path(cfg, ckpt_dir: str, warn=print) -> Optional[str]:
    """The checkpoint ``cfg.resume`` names, or None for ``auto`` with nothing saved yet.

    ``auto`` means the newest resumable checkpoint of ``ckpt_dir`` (the run's
    own folder, so it needs ``--run_name``).
    """
    if cfg.resume != "auto":
        return find_resume_checkpoint(cfg.resume, warn=warn)
    from src.run_folder import check_resume_request  # pylint: disable=import-outside-toplevel
    check_resume_request(cfg)
    if not list_checkpoints(ckpt_dir):
        warn(f"resume=auto: no checkpoint in {ckpt_dir} yet; starting from scratch")
        return None
    return find_resume_checkpoint(ckpt_dir, warn=warn)


@dataclasses.dataclass
class ResumeState:
    """Where a restored checkpoint stands (weights and optimizer are already loaded).

    ``step_in_epoch`` counts the batches of epoch ``epoch + 1`` already trained;
    ``loss_scale`` is the saved dynamic loss scale, None when there is none.
    """

    path: str
    epoch: int
    global_step: int
    step_in_epoch: int
    loss_scale: Optional[float]


def restore(path: str, cfg, net, optimizer, steps_per_epoch: int) -> ResumeState:
    """Load the training checkpoint ``path`` into ``net`` and ``optimizer`` to continue a run.

    Every check resuming needs is here: the file holds optimizer state and a
    position; it was trained with the config's model, dataset, class count,
    image size and steps per epoch; its position lies inside an epoch.
    CheckpointError (one line naming the fix) otherwise.
    """
    tensors, meta = resumable(path)
    source = f"checkpoint {path}"
    check_checkpoint_matches(cfg, meta, source)
    saved_size = _image_size_of(meta)
    if saved_size is not None and saved_size != list(cfg.image_size):
        raise CheckpointError(
            f"{source} was trained at image_size {saved_size} but the config says "
            f"{list(cfg.image_size)}; resume with --image_size={saved_size[0]},{saved_size[1]} "
            f"(or start a new run from its weights with --pretrained)")
    if "steps_per_epoch" in meta and _meta_int(meta, "steps_per_epoch", source) != steps_per_epoch:
        raise CheckpointError(
            f"{source} was trained with {int(meta['steps_per_epoch'])} steps per epoch but this "
            f"run has {steps_per_epoch}; resume with the batch size and device count it was "
            f"trained with")
    epoch = _meta_int(meta, "epoch", source)
    step_in_epoch = _meta_int(meta, "step_in_epoch", source, default=0)
    if step_in_epoch >= steps_per_epoch:
        raise CheckpointError(f"{source} says {step_in_epoch} batches of epoch {epoch + 1} were "
                              f"done, but an epoch has {steps_per_epoch}; it is damaged")
    load_network_weights(net, tensors, source=source)
    global_step = load_optimizer_state(optimizer, tensors, source)
    scale = meta.get("loss_scale")
    scale = float(scale) if scale is not None and math.isfinite(float(scale)) else None
    return ResumeState(path, epoch, global_step, step_in_epoch,
                       scale if scale is not None and scale >= 1 else None)


def _meta_int(meta, key, source, default=None):
    value = meta.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CheckpointError(f"{source} has an invalid {key!r} entry ({value!r}); it was not "
                              f"written by train.py or is damaged") from None
    if number < 0:
        raise CheckpointError(f"{source} has a negative {key!r} entry ({number}); it is damaged")
    return number


def _image_size_of(meta):
    text = meta.get("image_size")
    if text is None:
        return None
    numbers = [int(v) for v in re.findall(r"\d+", str(text))]
    return numbers if len(numbers) == 2 else None

"""Per-step learning-rate schedules used by the four models (pure numpy).

Every schedule returns an ``np.float32`` array with one value per optimizer
step: ``total = epochs * steps_per_epoch`` values indexed by the 0-based global
step ``i``. The optimizer holds the whole array and indexes it with its own
step counter, which a resumed run restores from the checkpoint.

Notation used in the docstrings below::

    spe   = steps_per_epoch            total = epochs * spe
    ws    = int(warmup_epochs * spe)   e     = i // spe   (epoch of step i)
    base  = base_lr   init = init_lr   end = end_lr

Two warmup flavours exist upstream and are kept, because they give different
numbers at the same step:

* "reach" warmup ``init + (base - init) * (i + 1) / ws``: the last warmup step
  is exactly ``base`` (YOLO/Tiny-DarkNet/VGG ``linear_warmup_lr(i + 1, ...)``,
  MobileNetV1 ``cosine``);
* "start" warmup ``init + (base - init) * i / ws``: step ``ws`` is the first at
  ``base`` (MobileNetV1 ``steps``/``poly``/``linear``, VGG ``step``).
"""
import math
import numbers
from typing import Callable, Dict, NamedTuple, Tuple

import numpy as np

__all__ = ["build_lr_schedule", "SCHEDULES", "UPSTREAM_SCHEDULE_NAMES"]

# Upstream config spellings -> canonical schedule names. Names that are already
# canonical (e.g. MobileNetV1 "poly", "linear") are accepted as they are.
UPSTREAM_SCHEDULE_NAMES: Dict[str, str] = {
    "exponential": "multistep",  # YOLOv3-Tiny / Tiny-DarkNet / VGG warmup_step_lr
    "cosine_annealing": "cosine",  # warmup_cosine_annealing_lr
    "cosine_annealing_V2": "cosine_v2",  # YOLOv3-Tiny warmup_cosine_annealing_lr_V2
    "cosine_annealing_sample": "cosine_sample",  # YOLOv3-Tiny ..._lr_sample
    "step": "poly",  # VGG16 lr_steps: despite the name, quadratic poly decay
    "steps": "fraction_steps",  # MobileNetV1 lr_decay_mode "steps"
}

# cosine_sample constants, fixed upstream: from epoch 60 every 2nd epoch of a
# (epochs + 60)-epoch cosine is dropped, 60 epochs in all.
_SAMPLE_START_EPOCH = 60
_SAMPLE_STRIDE = 2
_SAMPLE_DROPPED_EPOCHS = 60


class _Params(NamedTuple):
    """Validated arguments shared by all schedule functions."""

    base_lr: float
    init_lr: float
    end_lr: float
    epochs: int
    steps_per_epoch: int
    warmup_steps: int
    milestones: Tuple[int, ...]
    gamma: float
    eta_min: float
    t_max: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def _linear_warmup(steps: np.ndarray, p: _Params, reach: bool) -> np.ndarray:
    """Linear ramp ``init -> base`` over ``ws`` steps.

    ``reach=True`` evaluates the ramp at ``i + 1`` (last warmup step == base),
    ``reach=False`` at ``i`` (first step == init).
    """
    pos = steps + 1.0 if reach else steps.astype(np.float64)
    return p.init_lr + (p.base_lr - p.init_lr) * pos / p.warmup_steps


def _warmup_then(p: _Params, decay: Callable[[np.ndarray], np.ndarray],
                 reach: bool) -> np.ndarray:
    """Warmup for ``i < ws``, then ``decay(i)`` for the remaining steps ``i``."""
    steps = np.arange(p.total_steps)
    lr = np.empty(steps.shape, dtype=np.float64)
    warm = steps < p.warmup_steps
    lr[warm] = _linear_warmup(steps[warm], p, reach)
    lr[~warm] = decay(steps[~warm])
    return lr


def _epoch_cosine(epoch: np.ndarray, peak: float, eta_min: float, t_max: int) -> np.ndarray:
    """``eta_min + (peak - eta_min) * (1 + cos(pi * epoch / t_max)) / 2``."""
    return eta_min + (peak - eta_min) * (1.0 + np.cos(math.pi * epoch / t_max)) / 2.0


def _constant(p: _Params) -> np.ndarray:
    """``base`` for every step after a "reach" warmup (``init + (base-init)(i+1)/ws``)."""
    return _warmup_then(p, lambda i: np.full(i.shape, p.base_lr), reach=True)


def _multistep(p: _Params) -> np.ndarray:
    """Upstream ``warmup_step_lr`` (config name ``exponential``).

    Warmup ``init + (base - init)(i + 1)/ws``; then
    ``base * gamma ** #{m in milestones : m * spe <= i}``: the decay starts at
    the first step of each milestone epoch and compounds (a repeated milestone
    counts twice, as upstream).
    """
    milestone_steps = np.sort(np.asarray(p.milestones, dtype=np.int64) * p.steps_per_epoch)

    def decay(i):
        reached = np.searchsorted(milestone_steps, i, side="right")
        return p.base_lr * np.power(p.gamma, reached)

    return _warmup_then(p, decay, reach=True)


def _cosine(p: _Params) -> np.ndarray:
    """Upstream ``warmup_cosine_annealing_lr`` (config name ``cosine_annealing``).

    Warmup ``init + (base - init)(i + 1)/ws``; then, at *epoch* granularity,
    ``eta_min + (base - eta_min)(1 + cos(pi * e / t_max))/2`` with ``e = i // spe``.
    """
    return _warmup_then(p, lambda i: _epoch_cosine(i // p.steps_per_epoch, p.base_lr,
                                                   p.eta_min, p.t_max), reach=True)


def _cosine_v2(p: _Params) -> np.ndarray:
    """YOLOv3-Tiny ``warmup_cosine_annealing_lr_V2`` (``cosine_annealing_V2``).

    Same as ``cosine`` for steps ``i < 2/3 * total``. Let ``i1`` be the last such
    step, ``lr1`` its value and ``e1 = i1 // spe``. Later steps restart a second
    epoch-granularity cosine from ``lr1``::

        eta_min + (lr1 - eta_min)(1 + cos(pi * (e - e1) / (epochs // 3)))/2

    Steps of epoch ``e1`` after ``i1`` keep ``lr1`` (``e - e1 = 0``); if the
    split falls on an epoch boundary the restart drops straight to the
    ``e - e1 = 1`` value. Requires ``epochs >= 3`` and a warmup that ends before
    ``i1`` (upstream would otherwise divide by zero or restart from lr 0).
    """
    first_cosine = _cosine(p)
    split = math.ceil(p.total_steps * 2 / 3)  # first step of the second cosine
    last_v1 = split - 1
    lr1 = first_cosine[last_v1]
    e1 = last_v1 // p.steps_per_epoch
    tail = np.arange(split, p.total_steps)
    first_cosine[split:] = _epoch_cosine(tail // p.steps_per_epoch - e1, lr1, p.eta_min,
                                         p.epochs // 3)
    return first_cosine


def _cosine_sample(p: _Params) -> np.ndarray:
    """YOLOv3-Tiny ``warmup_cosine_annealing_lr_sample`` (``cosine_annealing_sample``).

    Builds the ``cosine`` schedule of a longer run, ``epochs + 60`` epochs with
    ``t_max = epochs + 60`` (the ``t_max`` argument is ignored, as upstream), in
    which warmup and cosine use the long run's step/epoch indices. Epochs
    60, 62, ..., 178 of that run are dropped, leaving exactly ``epochs`` epochs.
    The effect: the cosine moves two epochs per trained epoch between trained
    epochs 60 and 120, and one epoch per epoch elsewhere. Requires
    ``epochs >= 119`` (upstream asserts the length; fewer epochs cannot drop all
    60 sampled epochs) and ``warmup_epochs <= 60`` (so warmup is not sampled).
    """
    long_epochs = p.epochs + _SAMPLE_DROPPED_EPOCHS
    lr = _cosine(p._replace(epochs=long_epochs, t_max=long_epochs))
    epoch = np.arange(lr.size) // p.steps_per_epoch
    dropped = ((epoch >= _SAMPLE_START_EPOCH)
               & (epoch < _SAMPLE_START_EPOCH + _SAMPLE_STRIDE * _SAMPLE_DROPPED_EPOCHS)
               & ((epoch - _SAMPLE_START_EPOCH) % _SAMPLE_STRIDE == 0))
    kept = lr[~dropped]
    assert kept.size == p.total_steps  # guaranteed by the epochs >= 119 check
    return kept


def _poly(p: _Params) -> np.ndarray:
    """MobileNetV1 ``poly`` == VGG16 ``step`` (``lr_steps``).

    Warmup ``init + (base - init) * i / ws``; then
    ``max(0, base * (1 - (i - ws)/(total - ws))**2)``. ``end_lr`` is unused.
    """
    decay_steps = p.total_steps - p.warmup_steps

    def decay(i):
        frac = 1.0 - (i - p.warmup_steps) / decay_steps
        return np.maximum(p.base_lr * frac * frac, 0.0)

    return _warmup_then(p, decay, reach=False)


def _fraction_steps(p: _Params) -> np.ndarray:
    """MobileNetV1 ``steps``.

    Warmup ``init + (base - init) * i / ws``; then ``base`` for ``i < 0.3 total``,
    ``0.1 base`` for ``i < 0.6 total``, ``0.01 base`` for ``i < 0.8 total`` and
    ``0.001 base`` afterwards (boundaries are fractions of *all* steps).
    """
    bounds = np.array([0.3, 0.6, 0.8]) * p.total_steps

    def decay(i):
        return p.base_lr * np.power(0.1, np.searchsorted(bounds, i, side="right"))

    return _warmup_then(p, decay, reach=False)


def _linear_cosine(p: _Params) -> np.ndarray:
    """MobileNetV1 ``cosine``.

    Warmup ``init + (base - init)(i + 1)/ws``; then, with ``d = total - ws``::

        base * ((total - i)/d * 0.5 * (1 + cos(2 pi * 0.47 * i / d)) + 1e-5)

    (note the cosine uses ``i``, not ``i - ws``, exactly as upstream).
    """
    decay_steps = p.total_steps - p.warmup_steps

    def decay(i):
        linear = (p.total_steps - i) / decay_steps
        cosine = 0.5 * (1.0 + np.cos(2.0 * math.pi * 0.47 * i / decay_steps))
        return p.base_lr * (linear * cosine + 0.00001)

    return _warmup_then(p, decay, reach=True)


def _linear(p: _Params) -> np.ndarray:
    """MobileNetV1 ``linear`` (its default mode).

    Warmup ``init + (base - init) * i / ws``; then
    ``base - (base - end)(i - ws)/(total - ws)``.
    """
    decay_steps = p.total_steps - p.warmup_steps
    return _warmup_then(
        p, lambda i: p.base_lr - (p.base_lr - p.end_lr) * (i - p.warmup_steps) / decay_steps,
        reach=False)


SCHEDULES: Dict[str, Callable[[_Params], np.ndarray]] = {
    "constant": _constant,
    "multistep": _multistep,
    "cosine": _cosine,
    "cosine_v2": _cosine_v2,
    "cosine_sample": _cosine_sample,
    "poly": _poly,
    "fraction_steps": _fraction_steps,
    "linear_cosine": _linear_cosine,
    "linear": _linear,
}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_number(name: str, value, minimum: float, strict: bool) -> float:
    """Return ``value`` as float after checking it is finite and above ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")
    return float(value)


def _validate(schedule: str, base_lr, epochs, steps_per_epoch, init_lr, end_lr, warmup_epochs,
              milestones, gamma, eta_min, t_max) -> _Params:
    """Check the arguments and resolve derived values (warmup steps, t_max)."""
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    base_lr = _check_number("base_lr", base_lr, 0.0, strict=True)
    init_lr = _check_number("init_lr", init_lr, 0.0, strict=False)
    end_lr = _check_number("end_lr", end_lr, 0.0, strict=False)
    eta_min = _check_number("eta_min", eta_min, 0.0, strict=False)
    gamma = _check_number("gamma", gamma, 0.0, strict=True)
    warmup_epochs = _check_number("warmup_epochs", warmup_epochs, 0.0, strict=False)
    if warmup_epochs > epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs:g}) must not exceed epochs ({epochs})")
    if not _is_int(t_max) or t_max < 0:
        raise ValueError(f"t_max must be a non-negative integer (0 = epochs), got {t_max!r}")
    if isinstance(milestones, (str, bytes)):
        raise ValueError(f"milestones must be a sequence of epoch numbers, got {milestones!r}")
    try:
        milestones = list(milestones)
    except TypeError:
        raise ValueError(f"milestones must be a sequence of epoch numbers, "
                         f"got {milestones!r}") from None
    for m in milestones:
        if not _is_int(m) or m < 0:
            raise ValueError(f"milestones must be non-negative integer epochs, "
                             f"got {milestones}")

    # int() truncation as upstream: warmup_epochs may be fractional.
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    p = _Params(base_lr=base_lr, init_lr=init_lr, end_lr=end_lr, epochs=int(epochs),
                steps_per_epoch=int(steps_per_epoch), warmup_steps=warmup_steps,
                milestones=tuple(int(m) for m in milestones), gamma=gamma, eta_min=eta_min,
                t_max=int(t_max) or int(epochs))

    if schedule == "multistep":
        inside = [m for m in p.milestones if m * p.steps_per_epoch < warmup_steps]
        if inside:
            # Upstream silently drops a milestone reached during warmup (the
            # decay is never applied); refuse instead of guessing.
            raise ValueError(f"milestones {inside} fall inside the warmup "
                             f"({warmup_epochs:g} epochs); use milestones >= warmup_epochs")
    elif schedule == "cosine_v2":
        if p.epochs < 3:
            raise ValueError(f"cosine_v2 needs epochs >= 3 (second cosine spans epochs // 3), "
                             f"got {p.epochs}")
        if warmup_steps >= math.ceil(p.total_steps * 2 / 3):
            raise ValueError("cosine_v2 needs the warmup to end before 2/3 of the steps, got "
                             f"warmup_epochs={warmup_epochs:g} of {p.epochs}")
    elif schedule == "cosine_sample":
        # The last dropped epoch (178) must exist in the (epochs + 60)-epoch run.
        last_dropped = _SAMPLE_START_EPOCH + _SAMPLE_STRIDE * (_SAMPLE_DROPPED_EPOCHS - 1)
        min_epochs = last_dropped - _SAMPLE_DROPPED_EPOCHS + 1
        if p.epochs < min_epochs:
            raise ValueError(f"cosine_sample drops {_SAMPLE_DROPPED_EPOCHS} epochs from epoch "
                             f"{_SAMPLE_START_EPOCH} on and needs epochs >= {min_epochs}, "
                             f"got {p.epochs}")
        if warmup_epochs > _SAMPLE_START_EPOCH:
            raise ValueError(f"cosine_sample needs warmup_epochs <= {_SAMPLE_START_EPOCH}, "
                             f"got {warmup_epochs:g}")
    return p


def build_lr_schedule(schedule: str, *, base_lr: float, epochs: int, steps_per_epoch: int,
                      init_lr: float = 0.0, end_lr: float = 0.0, warmup_epochs: float = 0,
                      milestones=(), gamma: float = 0.1, eta_min: float = 0.0,
                      t_max: int = 0) -> np.ndarray:
    """Per-step learning rates of the whole run as ``np.float32``.

    Args:
        schedule: a canonical name (see ``SCHEDULES``) or an upstream spelling
            from ``UPSTREAM_SCHEDULE_NAMES``.
        base_lr: peak learning rate (upstream ``lr`` / ``lr_max``).
        epochs, steps_per_epoch: ``total = epochs * steps_per_epoch`` steps.
        init_lr: warmup start value.
        end_lr: final value of ``linear``.
        warmup_epochs: warmup length, may be fractional (``int(we * spe)`` steps).
        milestones, gamma: ``multistep`` decay epochs and factor.
        eta_min, t_max: ``cosine``/``cosine_v2`` floor and period (0 = epochs).

    Arguments a schedule does not use are ignored.

    Raises:
        ValueError: unknown schedule or invalid argument.
    """
    name = UPSTREAM_SCHEDULE_NAMES.get(schedule, schedule)
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of "
                         f"{sorted(SCHEDULES)} or an upstream name "
                         f"{sorted(UPSTREAM_SCHEDULE_NAMES)}")
    p = _validate(name, base_lr, epochs, steps_per_epoch, init_lr, end_lr, warmup_epochs,
                  milestones, gamma, eta_min, t_max)
    # Compute in float64 and round once, as upstream (python floats -> float32).
    return SCHEDULES[name](p).astype(np.float32)

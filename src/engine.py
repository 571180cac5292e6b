"""The shared training engine: network, optimizer, train step, epochs, checkpoints.

``fit`` runs every model; what differs between classification and detection
(datasets, loss network, evaluation) comes from the task module
(:mod:`src.tasks`).
"""
import math
import os
import re
import signal
import time

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src import checkpoint as ckpt
from src.errors import CheckpointError, ConfigError, DataError, ZooError
from src.lr_schedules import build_lr_schedule
from src.registry import create_model, get_model_spec
from src.tasks import get_task
from src.utils.logging import format_duration


class NonFiniteLossError(ZooError):
    """Training produced a NaN/Inf loss with a fixed loss scale (or persistently with a dynamic one)."""

    exit_code = 3


class TrainingInterrupted(ZooError):
    """SIGINT/SIGTERM stopped training at a step boundary; exit status 128 + signal number."""

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


# With a dynamic loss scale a non-finite loss skips the step and halves the scale;
# this many in a row means lowering it cannot help (e.g. NaN inputs), so the run stops.
MAX_NON_FINITE_IN_A_ROW = 20

# Set by a signal handler (train.py) through request_stop(); checked between steps.
_STOP = {"signum": None, "in_fit": False}


def request_stop(signum: int = signal.SIGINT) -> None:
    """Ask training to stop at the next step boundary, after saving a checkpoint.

    Safe to call from a signal handler: it only records the signal.
    """
    _STOP["signum"] = int(signum)


def stop_requested():
    """The signal number passed to :func:`request_stop`, or None."""
    return _STOP["signum"]


def training_in_progress() -> bool:
    """True while :func:`fit` runs (a stop request is honoured only then)."""
    return _STOP["in_fit"]


def clear_stop_request() -> None:
    """Forget an earlier :func:`request_stop` (tests, or a new run in the same process)."""
    _STOP["signum"] = None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_HANDLERS = {"installed": False}


def _on_stop_signal(signum, _frame):
    if not training_in_progress():  # nothing to save: the signal's usual effect
        signal.signal(signum, signal.SIG_DFL)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)
        return
    request_stop(signum)
    # A second signal stops at once, even if the process is stuck inside MindSpore.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    _HANDLERS["installed"] = False
    # os.write, not print: the main thread may be inside a print right now.
    os.write(2, (f"\nreceived {_signal_name(signum)}: stopping after the current step and "
                 f"saving a checkpoint (send it again to stop at once)\n").encode())


def install_stop_handlers() -> None:
    """Make SIGINT/SIGTERM stop training at the next step boundary (see :func:`request_stop`).

    For a single process only: data-parallel ranks stopping at different steps
    would block each other in the next all-reduce. Call from the main thread.
    While it runs a graph MindSpore installs its own SIGINT handler, which
    turns SIGINT into SIGTERM; the engine re-asserts these handlers after every
    step, but a Ctrl-C that lands inside a step still arrives as SIGTERM (it
    stops training all the same). train.py avoids that by taking SIGINT in a
    watcher thread instead (see ``_take_sigint_from_mindspore`` there).
    """
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)
    _HANDLERS["installed"] = True


def _reassert_stop_handlers() -> None:
    if _HANDLERS["installed"] and stop_requested() is None:
        install_stop_handlers()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _StopAtStep(Exception):
    """Internal: train_one_epoch saw a stop request after a completed step."""


def build_network(cfg):
    """The configured network (weights freshly initialised with ``cfg.seed``)."""
    ms.set_seed(cfg.seed)
    return create_model(cfg.model, cfg.num_classes, cfg.image_size, **cfg.net)


def parameter_groups(net, weight_decay: float, decay_bn_and_bias: bool):
    """Optimizer groups: no weight decay on biases and BatchNorm gamma/beta by default."""
    params = net.trainable_params()
    if decay_bn_and_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    no_decay = [p for p in params if p.name.endswith((".bias", ".gamma", ".beta"))]
    decay = [p for p in params if not p.name.endswith((".bias", ".gamma", ".beta"))]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    groups.append({"order_params": params})
    return groups


def learning_rates(cfg, steps_per_epoch: int) -> np.ndarray:
    """The whole per-step learning-rate array of the run."""
    lr = cfg.lr
    try:
        return build_lr_schedule(lr.schedule, base_lr=lr.base_lr, epochs=cfg.epochs,
                                 steps_per_epoch=steps_per_epoch, init_lr=lr.init_lr,
                                 end_lr=lr.end_lr, warmup_epochs=lr.warmup_epochs,
                                 milestones=lr.milestones, gamma=lr.gamma, eta_min=lr.eta_min,
                                 t_max=lr.t_max)
    except ValueError as exc:  # the schedule's own checks: a user setting, not a bug
        raise ConfigError(f"invalid learning-rate settings (lr.schedule={lr.schedule}, "
                          f"epochs={cfg.epochs}): {exc}") from None


def build_optimizer(cfg, net, lr_array: np.ndarray):
    """Momentum SGD over the per-step learning-rate array."""
    groups = parameter_groups(net, cfg.optimizer.weight_decay, cfg.optimizer.decay_bn_and_bias)
    return nn.Momentum(groups, learning_rate=ms.Tensor(lr_array, ms.float32),
                       momentum=cfg.optimizer.momentum)


class TrainStep(nn.Cell):
    """Forward, loss-scaled backward, gradient mean over ranks, update unless non-finite.

    Returns ``(loss, overflow, loss_scale)``; a non-finite loss counts as an
    overflow.

    * Dynamic loss scale: an overflowing step is skipped entirely (the update
      and the BatchNorm statistics its forward pass changed) and the scale is
      lowered; it is raised again after a run of clean steps.
    * Fixed loss scale, one process: the update is unconditional and only the
      loss is checked, because the run stops at the first non-finite loss
      anyway (see ``train_one_epoch``) and no checkpoint is written from
      non-finite weights. A step whose gradients alone are non-finite makes the
      weights non-finite, so the next step's loss stops the run. On CPU the
      in-graph skip cost ~20% of a step (MobileNetV1, 224, batch 32) and the
      gradient check (``all_finite`` over VGG16's 138M gradients) ~0.8 s of a
      6 s step (224, batch 8), so only runs that need them pay for them
      (dynamic scale, and data parallel; see below).

    Written out rather than using ``nn.TrainOneStepWithLossScaleCell``, which in
    MindSpore 2.10 selects an Ascend-only overflow check on CPU.
    """

    def __init__(self, loss_net, optimizer, loss_scale: float, dynamic: bool, group_size: int):
        super().__init__(auto_prefix=False)
        self.loss_net = loss_net
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.hyper_map = ops.HyperMap()
        self.scale = ms.Parameter(ms.Tensor(loss_scale, ms.float32), name="loss_scale",
                                  requires_grad=False)
        self.scale_update = (nn.DynamicLossScaleUpdateCell(loss_scale, scale_factor=2,
                                                           scale_window=2000)
                             if dynamic else None)
        self.reducer = (nn.DistributedGradReducer(self.weights, mean=True, degree=group_size)
                        if group_size > 1 else None)
        self.dynamic = dynamic
        self.unscale = dynamic or loss_scale != 1.0
        stats = [p for p in loss_net.get_parameters()
                 if not p.requires_grad and p.dtype in (ms.float16, ms.float32, ms.float64,
                                                        ms.bfloat16)] if dynamic else []
        self.has_stats = bool(stats)
        self.stats = ms.ParameterTuple(stats)
        self.stats_backup = self.stats.clone(prefix="skipped_step_backup", init="same")

    def construct(self, *inputs):
        if self.has_stats:
            inputs = ops.depend(inputs, self.hyper_map(ops.assign, self.stats_backup, self.stats))
        loss = self.loss_net(*inputs)
        sens = ops.ones_like(loss) * self.scale.astype(loss.dtype)
        grads = self.grad(self.loss_net, self.weights)(*inputs, sens)
        if self.reducer is not None:
            grads = self.reducer(grads)
        if self.unscale:
            grads = self.hyper_map(ops.partial(_unscale, 1.0 / self.scale), grads)
        if not self.dynamic and self.reducer is None:
            # Every gradient must exist before the first weight changes. Handed the
            # gradients directly, MindSpore 2.10 may interleave updates with the
            # rest of the backward pass: a loss that runs the network twice per
            # step (tests/test_distributed.py's reference) drifted by 6e-2 from a
            # gradients-then-update run. A value read from every gradient (one
            # element each: free, unlike all_finite) restores bit-equality.
            grads = ops.depend(grads, ops.concat(self.hyper_map(_first_element, grads)))
            loss = ops.depend(loss, self.optimizer(grads))
            return loss, ops.logical_not(ops.isfinite(loss).all()), self.scale.value()
        finite = ops.logical_and(ms.amp.all_finite(grads), ops.isfinite(loss).all())
        overflow = ops.logical_not(finite)
        if not self.dynamic:
            # Data parallel: keep the update behind the finite check, since one
            # rank's NaN reaches every rank through the all-reduce. The check is
            # also the ordering barrier described above (without it, msrun runs
            # drifted from the single-process reference by 5e-3 after 7 steps).
            if finite:
                self.optimizer(grads)
            return loss, overflow, self.scale.value()
        self.scale_update(self.scale, overflow)
        if finite:
            self.optimizer(grads)
        elif self.has_stats:
            self.hyper_map(ops.assign, self.stats, self.stats_backup)
        return loss, overflow, self.scale.value()


def _unscale(inverse, grad):
    return grad * ops.cast(inverse, grad.dtype)


def _first_element(grad):
    return grad.reshape(-1)[0:1].astype(ms.float32)


def build_train_step(cfg, loss_net, optimizer, group_size: int = 1):
    """The compiled training step for ``cfg`` (loss scale fixed or dynamic)."""
    dynamic = cfg.loss.dynamic_loss_scale
    step = TrainStep(loss_net, optimizer, 2.0 ** 16 if dynamic else cfg.loss.loss_scale,
                     dynamic, group_size)
    step.set_train()
    return step


def apply_amp(cfg, net):
    """Mixed precision per ``amp_level`` (O0 = float32 everywhere)."""
    if cfg.amp_level == "O0":
        return net
    return ms.amp.auto_mixed_precision(net, cfg.amp_level)


class TrainState:
    """Where training stands: completed epochs, batches of the current epoch, optimizer steps.

    ``step_in_epoch`` counts the batches of epoch ``epoch + 1`` already trained
    (non-zero only inside an epoch, or after resuming an interrupted one).
    """

    def __init__(self, epoch: int = 0, global_step: int = 0):
        self.epoch = epoch
        self.global_step = global_step
        self.step_in_epoch = 0
        self.last_checkpoint = None
        self.last_checkpoint_position = None  # (epoch, step_in_epoch) of last_checkpoint
        self.best_metric = None
        self.non_finite_in_a_row = 0

    @property
    def position(self):
        return (self.epoch, self.step_in_epoch)


def default_progress_line(epoch, step, steps, loss, lr, images_per_second, eta_epoch, eta_total):
    """Model-zoo style progress line (``epoch: 1 step: 100, loss is ...``)."""
    return (f"epoch: {epoch} step: {step}, loss is {loss:.6f} "
            f"[{step}/{steps}, lr {lr:.6f}, {images_per_second:.1f} img/s, "
            f"epoch ETA {format_duration(eta_epoch)}, total ETA {format_duration(eta_total)}]")


def train_one_epoch(train_step, dataset, state: TrainState, lr_array, cfg, ctx, log,
                    progress_line=default_progress_line, last_good_checkpoint=None):
    """Run one epoch; return (mean loss, seconds, images/s, steps run).

    Resuming inside an epoch (``state.step_in_epoch`` > 0) replays the first
    batches of the seeded data order without training on them, so the rest of
    the epoch sees exactly the batches of an uninterrupted run.

    Every step's loss is checked. With a fixed loss scale a NaN/Inf loss stops
    the run (:class:`NonFiniteLossError`, naming the step and the last good
    checkpoint); with a dynamic scale the step is skipped and the scale
    lowered, and the run stops only after ``MAX_NON_FINITE_IN_A_ROW`` such
    steps in a row.
    """
    steps = dataset.get_dataset_size()
    interval = cfg.log_interval or max(1, steps // 10)
    epochs_left_after = cfg.epochs - state.epoch - 1
    images_per_step = cfg.batch_size * ctx.group_size
    epoch_number = state.epoch + 1
    done_before = state.step_in_epoch
    if done_before:
        log(f"epoch {epoch_number}: skipping the {done_before} batch(es) trained before the "
            f"interruption")
    dynamic = cfg.loss.dynamic_loss_scale
    losses, window_start, window_steps, ran = [], time.time(), 0, 0
    start = time.time()
    for step, batch in enumerate(_batches(dataset, epoch_number, cfg), start=1):
        if step <= done_before:
            continue  # trained before the interruption; read only to keep the data order
        loss, overflow, scale = train_step(*batch)
        _reassert_stop_handlers()
        loss_value = float(loss.asnumpy())
        overflowed = bool(overflow.asnumpy())
        lr = float(lr_array[min(state.global_step, len(lr_array) - 1)])
        where = last_good_checkpoint or "none saved yet"
        if not dynamic and (overflowed or not math.isfinite(loss_value)):
            what = (f"non-finite loss ({loss_value})" if not math.isfinite(loss_value)
                    else "non-finite gradients")
            raise NonFiniteLossError(
                f"{what} at epoch {epoch_number} step {step} (global step "
                f"{state.global_step + 1}) with a fixed loss scale; the weights are no longer "
                f"finite and no checkpoint was written. Last good checkpoint: {where}. Lower "
                f"lr.base_lr, check the data for NaN/Inf, or use --loss.dynamic_loss_scale=True, "
                f"then --resume from it")
        if not math.isfinite(loss_value):
            state.non_finite_in_a_row += 1
            if not dynamic:
                skipped = "the update was skipped" if overflowed else "the weights are suspect"
                raise NonFiniteLossError(
                    f"non-finite loss ({loss_value}) at epoch {epoch_number} step {step} "
                    f"(global step {state.global_step + 1}); {skipped} and no checkpoint was "
                    f"written. Last good checkpoint: {where}. Lower lr.base_lr (or check the "
                    f"data for NaN/Inf), then --resume from it")
            if state.non_finite_in_a_row >= MAX_NON_FINITE_IN_A_ROW:
                raise NonFiniteLossError(
                    f"non-finite loss ({loss_value}) on {state.non_finite_in_a_row} steps in a row "
                    f"up to epoch {epoch_number} step {step} although the dynamic loss scale "
                    f"skipped each of them (scale now {float(scale.asnumpy()):g}); no checkpoint "
                    f"was written. Last good checkpoint: {where}. Lower lr.base_lr (or check the "
                    f"data for NaN/Inf), then --resume from it")
            log(f"warning: epoch {epoch_number} step {step}: non-finite loss ({loss_value}), "
                f"update skipped, loss scale lowered to {float(scale.asnumpy()):g}")
        else:
            state.non_finite_in_a_row = 0
            if overflowed:
                log(f"warning: epoch {epoch_number} step {step}: gradient overflow, update "
                    f"skipped (loss scale {float(scale.asnumpy()):g})")
        if not overflowed:
            state.global_step += 1
        state.step_in_epoch = step
        ran += 1
        if math.isfinite(loss_value):
            losses.append(loss_value)
        window_steps += 1
        if step % interval == 0 or step == steps:
            now = time.time()
            ips = window_steps * images_per_step / max(now - window_start, 1e-9)
            per_step = (now - start) / (step - done_before)
            eta_epoch = per_step * (steps - step)
            eta_total = eta_epoch + per_step * steps * epochs_left_after
            log(progress_line(epoch_number, step, steps, loss_value, lr, ips, eta_epoch, eta_total))
            window_start, window_steps = now, 0
        else:
            log.live(f"epoch {epoch_number} step {step}/{steps} loss {loss_value:.4f}")
        if stop_requested() is not None and step < steps:
            log.end_live()
            raise _StopAtStep()
    log.end_live()
    seconds = time.time() - start
    return (float(np.mean(losses)) if losses else float("nan"), seconds,
            ran * images_per_step / max(seconds, 1e-9), ran)


def _batches(dataset, epoch_number, cfg):
    """The epoch's batches; a data pipeline failure becomes a DataError with its reason."""
    iterator = iter(dataset.create_tuple_iterator(num_epochs=1))
    index = 0
    while True:
        index += 1
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except RuntimeError as exc:
            raise DataError(f"reading the training data of epoch {epoch_number} failed after "
                            f"{index - 1} batch(es) (data is read ahead, so not necessarily at "
                            f"batch {index}): "
                            f"{_pipeline_reason(exc)}; look for corrupt or unreadable files with "
                            f"python -m src.datasets.check --dataset {cfg.dataset} --data_dir "
                            f"<dataset root>") from None
        yield batch


def _pipeline_reason(exc: BaseException) -> str:
    """The informative line of a MindSpore data-pipeline error (our own DataError if any)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "DataError:" in line:
            return line.split("DataError:", 1)[1].strip()[:400]
    for line in lines:
        if not line.startswith(("-", "=", "[", "#", "Traceback", "File ")):
            return line[:400]
    return type(exc).__name__


def check_checkpoint_matches(cfg, meta, source, check_dataset: bool = True):
    """Refuse a checkpoint whose stored model/dataset/class count differ from the config."""
    for key in ("model", "dataset") if check_dataset else ("model",):
        if key in meta and meta[key] != getattr(cfg, key):
            raise CheckpointError(f"{source} was trained with {key}={meta[key]!r} but the config "
                                  f"says {key}={getattr(cfg, key)!r}; use the matching config")
    if "num_classes" in meta and int(meta["num_classes"]) != cfg.num_classes:
        raise CheckpointError(f"{source} has num_classes={meta['num_classes']} but the config "
                              f"says {cfg.num_classes}; pass --num_classes={meta['num_classes']}")


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


def resolve_resume_path(cfg, ckpt_dir: str, log):
    """The checkpoint ``--resume`` names, or None for ``auto`` with nothing saved yet.

    ``auto`` means the newest resumable checkpoint of ``output_dir/run_name``
    (this run's own folder), so it needs ``--run_name``.
    """
    if cfg.resume != "auto":
        return ckpt.find_resume_checkpoint(cfg.resume, warn=log)
    if not cfg.run_name:
        raise CheckpointError(
            "--resume=auto continues the run in output_dir/run_name, so it needs the run's folder "
            "name: add --run_name=<folder under output_dir> (e.g. the name printed as 'run "
            "folder:' by the first run), or pass --resume=<run folder or .ckpt file>")
    if not ckpt.list_checkpoints(ckpt_dir):
        log(f"resume=auto: no checkpoint in {ckpt_dir} yet; starting from scratch")
        return None
    return ckpt.find_resume_checkpoint(ckpt_dir, warn=log)


def fit(cfg, ctx, run_dir: str, log):
    """Train ``cfg.model`` for ``cfg.epochs``; return (TrainState, final metrics or None).

    Between steps it honours :func:`request_stop` (SIGINT/SIGTERM in
    train.py): the position is saved as an ``-interrupted-`` checkpoint (or the
    epoch's checkpoint at an epoch boundary) and :class:`TrainingInterrupted`
    is raised naming it.
    """
    _STOP["in_fit"] = True
    try:
        return _fit(cfg, ctx, run_dir, log)
    finally:
        _STOP["in_fit"] = False


def _fit(cfg, ctx, run_dir, log):
    spec = get_model_spec(cfg.model)
    task = get_task(spec.task)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if cfg.checkpoint.save_on_all_ranks and ctx.group_size > 1:
        ckpt_dir = os.path.join(ckpt_dir, f"rank_{ctx.rank}")
    resume_path = resolve_resume_path(cfg, ckpt_dir, log) if cfg.resume else None
    net = build_network(cfg)
    if cfg.pretrained_backbone:
        ckpt.load_pretrained(net, cfg.pretrained_backbone, log, prefix="backbone.")
    if cfg.pretrained:
        ckpt.load_pretrained(net, cfg.pretrained, log)

    steps_per_epoch = task.train_dataset(cfg, ctx, seed=cfg.seed).get_dataset_size()
    if steps_per_epoch == 0:
        raise ZooError(f"the training set gives no full batch of {cfg.batch_size} per process; "
                       f"lower --batch_size")
    lr_array = learning_rates(cfg, steps_per_epoch)
    optimizer = build_optimizer(cfg, net, lr_array)
    state = TrainState()
    resumed_scale = None
    if resume_path:
        path = resume_path
        source = f"checkpoint {path}"
        tensors, meta = ckpt.resumable(path)
        check_checkpoint_matches(cfg, meta, source)
        saved_size = _image_size_of(meta)
        if saved_size is not None and saved_size != list(cfg.image_size):
            raise CheckpointError(
                f"{source} was trained at image_size {saved_size} but the config says "
                f"{list(cfg.image_size)}; resume with --image_size={saved_size[0]},{saved_size[1]} "
                f"(or start a new run from its weights with --pretrained)")
        ckpt.load_network_weights(net, tensors, source=source)
        state.global_step = ckpt.load_optimizer_state(optimizer, tensors, source)
        state.epoch = _meta_int(meta, "epoch", source)
        state.step_in_epoch = _meta_int(meta, "step_in_epoch", source, default=0)
        saved_steps = meta.get("steps_per_epoch")
        if saved_steps is not None and _meta_int(meta, "steps_per_epoch", source) != steps_per_epoch:
            raise CheckpointError(
                f"checkpoint {path} was trained with {int(saved_steps)} steps per epoch but this "
                f"run has {steps_per_epoch}; resume with the batch size and device count it was "
                f"trained with")
        if state.step_in_epoch >= steps_per_epoch:
            raise CheckpointError(f"{source} says {state.step_in_epoch} batches of epoch "
                                  f"{state.epoch + 1} were done, but an epoch has "
                                  f"{steps_per_epoch}; it is damaged")
        if cfg.loss.dynamic_loss_scale and meta.get("loss_scale") is not None:
            resumed_scale = float(meta["loss_scale"])
        state.last_checkpoint = path
        state.last_checkpoint_position = state.position
        within = (f", {state.step_in_epoch} batch(es) into epoch {state.epoch + 1}"
                  if state.step_in_epoch else "")
        log(f"resumed from {path}: epoch {state.epoch}{within}, global step {state.global_step}")

    try:
        loss_net = task.loss_network(cfg, apply_amp(cfg, net))
    except ValueError as exc:  # e.g. loss.label_smoothing outside [0, 1)
        raise ConfigError(f"invalid loss settings for {cfg.model}: {exc}") from None
    train_step = build_train_step(cfg, loss_net, optimizer, ctx.group_size)
    if resumed_scale is not None and math.isfinite(resumed_scale) and resumed_scale >= 1:
        train_step.scale.set_data(ms.Tensor(resumed_scale, ms.float32))
    writes_checkpoints = ctx.is_main or cfg.checkpoint.save_on_all_ranks
    progress_line = spec.progress_line or default_progress_line
    metrics = None

    def save(path):
        try:
            ckpt.save_checkpoint(path, net, optimizer, _meta(cfg, state, steps_per_epoch, train_step))
        except ckpt.NonFiniteWeightsError as exc:
            where = (f"epoch {state.epoch + 1} step {state.step_in_epoch}" if state.step_in_epoch
                     else f"the end of epoch {state.epoch}")
            raise NonFiniteLossError(
                f"{exc} at {where} (global step {state.global_step}). Last good checkpoint: "
                f"{state.last_checkpoint or 'none saved yet'}. Lower lr.base_lr, then --resume "
                f"from it") from None
        return path

    log(f"training {cfg.model} on {cfg.dataset}: {cfg.epochs} epochs x {steps_per_epoch} steps, "
        f"batch {cfg.batch_size} x {ctx.group_size} process(es), device {ctx.device_target}")
    try:
        while state.epoch < cfg.epochs:
            if stop_requested() is not None:
                raise _StopAtStep()
            dataset = task.train_dataset(cfg, ctx, seed=cfg.seed + state.epoch)
            mean_loss, seconds, ips, steps = train_one_epoch(
                train_step, dataset, state, lr_array, cfg, ctx, log, progress_line,
                last_good_checkpoint=state.last_checkpoint)
            state.epoch += 1
            state.step_in_epoch = 0
            log(f"epoch time: {seconds * 1000:.3f} ms, per step time: {seconds * 1000 / max(steps, 1):.3f} ms, "
                f"mean loss {mean_loss:.6f}, {ips:.1f} img/s")
            last = state.epoch == cfg.epochs
            if writes_checkpoints and (state.epoch % cfg.checkpoint.save_every_epochs == 0 or last):
                path = save(os.path.join(ckpt_dir, ckpt.checkpoint_name(
                    cfg.model, cfg.dataset, state.epoch, steps_per_epoch)))
                ckpt.prune_checkpoints(ckpt_dir, cfg.checkpoint.keep_max)
                state.last_checkpoint = path
                state.last_checkpoint_position = state.position
                log(f"saved checkpoint {path}")
            every = cfg.checkpoint.eval_every_epochs
            # A pending stop request skips mid-run evaluation: save the position first.
            if (ctx.is_main and every > 0 and (state.epoch % every == 0 or last)
                    and (last or stop_requested() is None)):
                try:
                    metrics = task.evaluate(cfg, net, ctx)
                except ValueError as exc:  # e.g. an empty evaluation split
                    raise DataError(f"evaluation after epoch {state.epoch} failed: {exc}; check "
                                    f"the evaluation data (or set "
                                    f"--checkpoint.eval_every_epochs=0)") from None
                log(task.format_metrics(metrics))
                train_step.set_train()
                score = metrics[task.primary_metric]
                if cfg.checkpoint.keep_best and (state.best_metric is None or score > state.best_metric):
                    state.best_metric = score
                    best = save(os.path.join(ckpt_dir, "best.ckpt"))
                    log(f"new best {task.primary_metric} {score:.4f}: saved {best}")
    except _StopAtStep:
        raise _interrupted(cfg, state, ckpt_dir, steps_per_epoch, writes_checkpoints, save,
                           log) from None
    return state, net, metrics


def _interrupted(cfg, state, ckpt_dir, steps_per_epoch, writes_checkpoints, save, log):
    """Save the current position (if new) and build the TrainingInterrupted to raise."""
    signum = stop_requested() or signal.SIGINT
    epoch, step = state.epoch + 1, state.step_in_epoch
    where = (f"epoch {epoch} step {step}" if step else f"the end of epoch {state.epoch}"
             if state.epoch else "the start of training")
    what = f"interrupted by {_signal_name(signum)} at {where} (global step {state.global_step})"
    path = state.last_checkpoint
    if state.position == state.last_checkpoint_position and path:
        saved = f"nothing new since checkpoint {path}"
    elif not writes_checkpoints:
        saved = "this rank writes no checkpoints"
        path = None
    elif state.position == (0, 0):
        saved = "no step was finished, so no checkpoint was written"
        path = None
    else:
        name = (ckpt.interrupted_checkpoint_name(cfg.model, cfg.dataset, epoch, step) if step
                else ckpt.checkpoint_name(cfg.model, cfg.dataset, state.epoch, steps_per_epoch))
        path = save(os.path.join(ckpt_dir, name))
        ckpt.prune_checkpoints(ckpt_dir, cfg.checkpoint.keep_max)
        log(f"saved checkpoint {path}")
        saved = f"saved checkpoint {path}"
    hint = ""
    if path:
        hint = f"; continue with --resume={path}"
        if cfg.run_name:
            hint += f" (or --resume=auto --run_name={cfg.run_name})"
    return TrainingInterrupted(f"{what}; {saved}{hint}", signum)


def _meta(cfg, state, steps_per_epoch, train_step=None):
    meta = {"epoch": state.epoch, "global_step": state.global_step, "model": cfg.model,
            "steps_per_epoch": steps_per_epoch,
            "dataset": cfg.dataset, "num_classes": cfg.num_classes,
            "image_size": list(cfg.image_size)}
    if state.step_in_epoch:
        meta["step_in_epoch"] = state.step_in_epoch
    if train_step is not None and cfg.loss.dynamic_loss_scale:
        meta["loss_scale"] = float(train_step.scale.asnumpy())
    return meta

"""The training loop shared by every model: epochs, checkpoints, evaluation, run history.

What differs between classification and detection (datasets, loss network,
evaluation) comes from the task module (:mod:`src.tasks`); the compiled step
is :mod:`src.train_step`, resuming :func:`src.checkpoint.restore`, stopping
on a signal :mod:`src.stop`, the run folder's own files :mod:`src.run_folder`
and ``metrics.csv``/``curves.png`` :mod:`src.run_history`; the steps of
one epoch are :func:`src.train_epoch.train_one_epoch`.
"""
import json
import os
import signal
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from src import checkpoint as ckpt
from src import kernels
from src.errors import ConfigError, DataError, ZooError
from src.lr_schedules import build_lr_schedule
from src.registry import create_model, get_model_spec
from src.run_folder import RunRecord
from src.run_history import RunHistory
from src.stop import StopControl
from src.tasks import get_task
from src.train_epoch import NonFiniteLossError, StopAtStep, default_progress_line, train_one_epoch
from src.train_step import build_train_step


class TrainingInterrupted(ZooError):
    """SIGINT/SIGTERM stopped training at a step boundary; exit status 128 + signal number."""

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def build_network(cfg):
    """The configured network (weights freshly initialised with ``cfg.seed``).

    Its layers run on the zoo's CPU kernels when ``cfg.cpu_kernels`` allows (src/kernels).
    """
    ms.set_seed(cfg.seed)
    with kernels.for_config(cfg):
        net = create_model(cfg.model, cfg.num_classes, cfg.image_size, **cfg.net)
    kernels.keep_blocked_layouts(net)
    return net


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

    def saved(self, path: str) -> None:
        """``path`` now holds the current position."""
        self.last_checkpoint, self.last_checkpoint_position = path, self.position


def fit(cfg, ctx, run_dir: str, log, stop: StopControl = None):
    """Train ``cfg.model`` for ``cfg.epochs``; return (TrainState, network, final metrics or None).

    Between steps it honours ``stop`` (made and installed by train.py): the
    position is saved as an ``-interrupted-`` checkpoint (or the epoch's
    checkpoint at an epoch boundary) and :class:`TrainingInterrupted` is
    raised naming it.
    """
    stop = stop or StopControl()
    run = _Training(cfg, ctx, run_dir, log)
    state, every, metrics = run.state, cfg.checkpoint.eval_every_epochs, None
    log(f"training {cfg.model} on {cfg.dataset}: {cfg.epochs} epochs x {run.steps_per_epoch} "
        f"steps, batch {cfg.batch_size} x {ctx.group_size} process(es), device {ctx.device_target}")
    with stop.training():
        try:
            while state.epoch < cfg.epochs:
                if stop.requested:
                    raise StopAtStep()
                dataset = run.task.train_dataset(cfg, ctx, seed=cfg.seed + state.epoch)
                mean_loss, seconds, ips, steps = train_one_epoch(
                    run.train_step, dataset, state, run.lr_array, cfg, ctx, log,
                    run.progress_line, last_good_checkpoint=state.last_checkpoint, stop=stop)
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
                log(f"epoch time: {seconds * 1000:.3f} ms, per step time: "
                    f"{seconds * 1000 / max(steps, 1):.3f} ms, mean loss {mean_loss:.6f}, "
                    f"{ips:.1f} img/s")
                last = state.epoch == cfg.epochs
                if state.epoch % cfg.checkpoint.save_every_epochs == 0 or last:
                    run.save_epoch()
                # A pending stop request skips mid-run evaluation: save the position first.
                evaluated = None
                if (ctx.is_main and every > 0 and (state.epoch % every == 0 or last)
                        and (last or not stop.requested)):
                    evaluated = metrics = run.evaluate()
                run.record_epoch(mean_loss, seconds, ips, evaluated)
        except StopAtStep:
            raise run.interrupted(stop) from None
    return state, run.net, metrics


class _Training:
    """What ``fit`` trains with: network, optimizer, step, position, checkpoints and history."""

    def __init__(self, cfg, ctx, run_dir, log):
        self.cfg, self.ctx, self.log, self.started = cfg, ctx, log, time.time()
        spec = get_model_spec(cfg.model)
        self.task = get_task(spec.task)
        own_folder = cfg.checkpoint.save_on_all_ranks and ctx.group_size > 1 and ctx.rank > 0
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        if cfg.checkpoint.save_on_all_ranks and ctx.group_size > 1:
            self.ckpt_dir = os.path.join(self.ckpt_dir, f"rank_{ctx.rank}")
        self.writes = ctx.is_main or cfg.checkpoint.save_on_all_ranks
        resume_path = ckpt.resume_checkpoint_path(cfg, self.ckpt_dir, log) if cfg.resume else None
        self.net = build_network(cfg)
        if cfg.pretrained_backbone:
            ckpt.load_pretrained(self.net, cfg.pretrained_backbone, log, prefix="backbone.")
        if cfg.pretrained:
            ckpt.load_pretrained(self.net, cfg.pretrained, log)
        self.steps_per_epoch = self.task.train_dataset(cfg, ctx, seed=cfg.seed).get_dataset_size()
        if self.steps_per_epoch == 0:
            raise ZooError(f"the training set gives no full batch of {cfg.batch_size} per "
                           f"process; lower --batch_size")
        self.lr_array = learning_rates(cfg, self.steps_per_epoch)
        self.optimizer = build_optimizer(cfg, self.net, self.lr_array)
        self.state = state = TrainState()
        resumed = (ckpt.restore(resume_path, cfg, self.net, self.optimizer, self.steps_per_epoch)
                   if resume_path else None)
        if resumed:
            state.epoch, state.global_step = resumed.epoch, resumed.global_step
            state.step_in_epoch = resumed.step_in_epoch
            state.saved(resumed.path)
            within = (f", {state.step_in_epoch} batch(es) into epoch {state.epoch + 1}"
                      if state.step_in_epoch else "")
            log(f"resumed from {resumed.path}: epoch {state.epoch}{within}, global step "
                f"{state.global_step}")
        try:
            loss_net = self.task.loss_network(cfg, apply_amp(cfg, self.net))
        except ValueError as exc:  # e.g. loss.label_smoothing outside [0, 1)
            raise ConfigError(f"invalid loss settings for {cfg.model}: {exc}") from None
        self.train_step = build_train_step(cfg, loss_net, self.optimizer, ctx.group_size)
        if resumed and resumed.loss_scale is not None and cfg.loss.dynamic_loss_scale:
            self.train_step.scale.set_data(ms.Tensor(resumed.loss_scale, ms.float32))
        self.progress_line = spec.progress_line or default_progress_line
        self.record = RunRecord.open(run_dir, ctx.rank if own_folder else 0, bool(resumed),
                                     self.ckpt_dir)
        if resumed:
            state.best_metric = self.record.best_score
        folder = os.path.join(run_dir, f"rank_{ctx.rank}") if own_folder else run_dir
        self.history = RunHistory(folder, self.task.metric_names, self.task.primary_metric,
                                  resumed.epoch if resumed else None) if self.writes else None
        self.wall_offset = self.history.wall_seconds if self.history else 0.0

    def save(self, path: str) -> str:
        state = self.state
        try:
            ckpt.save_checkpoint(path, self.net, self.optimizer, self.metadata())
        except ckpt.NonFiniteWeightsError as exc:
            where = (f"epoch {state.epoch + 1} step {state.step_in_epoch}" if state.step_in_epoch
                     else f"the end of epoch {state.epoch}")
            raise NonFiniteLossError(
                f"{exc} at {where} (global step {state.global_step}). Last good checkpoint: "
                f"{state.last_checkpoint or 'none saved yet'}. Lower lr.base_lr, then --resume "
                f"from it") from None
        return path

    def save_position(self, name: str) -> str:
        """Save a training checkpoint of this run; prune this run's oldest beyond keep_max."""
        path = self.save(os.path.join(self.ckpt_dir, name))
        self.record.add(path)
        self.record.forget(ckpt.prune_checkpoints(self.ckpt_dir, self.cfg.checkpoint.keep_max,
                                                  own=self.record.checkpoints))
        self.state.saved(path)
        self.log(f"saved checkpoint {path}")
        return path

    def save_epoch(self) -> None:
        if self.writes:
            cfg = self.cfg
            self.save_position(ckpt.checkpoint_name(cfg.model, cfg.dataset, self.state.epoch,
                                                    self.steps_per_epoch))

    def evaluate(self):
        """Evaluate the network now; keep it as best.ckpt when it is this run's best."""
        cfg, state, task = self.cfg, self.state, self.task
        try:
            metrics = task.evaluate(cfg, self.net, self.ctx)
        except ValueError as exc:  # e.g. an empty evaluation split
            raise DataError(f"evaluation after epoch {state.epoch} failed: {exc}; check the "
                            f"evaluation data (or set --checkpoint.eval_every_epochs=0)") from None
        self.log(task.format_metrics(metrics))
        self.train_step.set_train()
        score = metrics[task.primary_metric]
        if cfg.checkpoint.keep_best and (state.best_metric is None or score > state.best_metric):
            state.best_metric = score
            best = self.save(os.path.join(self.ckpt_dir, "best.ckpt"))
            self.record.set_best(best, task.primary_metric, score, state.epoch)
            self.log(f"new best {task.primary_metric} {score:.4f}: saved {best}")
        return metrics

    def record_epoch(self, mean_loss, seconds, images_per_second, metrics) -> None:
        """One row of metrics.csv (and a fresh curves.png) for the epoch just finished."""
        if self.history is not None:
            lr = float(self.lr_array[min(max(self.state.global_step - 1, 0), len(self.lr_array) - 1)])
            self.history.add(self.state.epoch, self.state.global_step, mean_loss, lr,
                             images_per_second, metrics, seconds,
                             self.wall_offset + time.time() - self.started)

    def interrupted(self, stop) -> TrainingInterrupted:
        """Save the current position (if new) and build the TrainingInterrupted to raise."""
        cfg, state = self.cfg, self.state
        epoch, step = state.epoch + 1, state.step_in_epoch
        where = (f"epoch {epoch} step {step}" if step else f"the end of epoch {state.epoch}"
                 if state.epoch else "the start of training")
        what = (f"interrupted by {stop.signal_name} at {where} (global step "
                f"{state.global_step})")
        path = state.last_checkpoint
        if state.position == state.last_checkpoint_position and path:
            saved = f"nothing new since checkpoint {path}"
        elif not self.writes:
            saved, path = "this rank writes no checkpoints", None
        elif state.position == (0, 0):
            saved, path = "no step was finished, so no checkpoint was written", None
        else:
            path = self.save_position(
                ckpt.interrupted_checkpoint_name(cfg.model, cfg.dataset, epoch, step) if step
                else ckpt.checkpoint_name(cfg.model, cfg.dataset, state.epoch, self.steps_per_epoch))
            saved = f"saved checkpoint {path}"
        hint = ""
        if path:
            hint = f"; continue with --resume={path}"
            if cfg.run_name:
                hint += f" (or --resume=auto --run_name={cfg.run_name})"
        signum = stop.signum if stop.requested else signal.SIGINT
        return TrainingInterrupted(f"{what}; {saved}{hint}", signum)

    def metadata(self):
        cfg, state = self.cfg, self.state
        meta = {"epoch": state.epoch, "global_step": state.global_step, "model": cfg.model,
                "steps_per_epoch": self.steps_per_epoch, "dataset": cfg.dataset,
                "num_classes": cfg.num_classes, "image_size": list(cfg.image_size),
                "config": json.dumps(cfg.to_dict(), sort_keys=True)}
        if state.step_in_epoch:
            meta["step_in_epoch"] = state.step_in_epoch
        if cfg.loss.dynamic_loss_scale:
            meta["loss_scale"] = float(self.train_step.scale.asnumpy())
        return meta


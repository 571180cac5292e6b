"""The shared training engine: network, optimizer, train step, epochs, checkpoints.

``fit`` runs every model; what differs between classification and detection
(datasets, loss network, evaluation) comes from the task module
(:mod:`src.tasks`).
"""
import math
import os
import time

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src import checkpoint as ckpt
from src.errors import CheckpointError, ZooError
from src.lr_schedules import build_lr_schedule
from src.registry import create_model, get_model_spec
from src.tasks import get_task
from src.utils.logging import format_duration


class NonFiniteLossError(ZooError):
    """Training produced a NaN/Inf loss with a fixed loss scale."""

    exit_code = 3


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
    return build_lr_schedule(lr.schedule, base_lr=lr.base_lr, epochs=cfg.epochs,
                             steps_per_epoch=steps_per_epoch, init_lr=lr.init_lr,
                             end_lr=lr.end_lr, warmup_epochs=lr.warmup_epochs,
                             milestones=lr.milestones, gamma=lr.gamma, eta_min=lr.eta_min,
                             t_max=lr.t_max)


def build_optimizer(cfg, net, lr_array: np.ndarray):
    """Momentum SGD over the per-step learning-rate array."""
    groups = parameter_groups(net, cfg.optimizer.weight_decay, cfg.optimizer.decay_bn_and_bias)
    return nn.Momentum(groups, learning_rate=ms.Tensor(lr_array, ms.float32),
                       momentum=cfg.optimizer.momentum)


class TrainStep(nn.Cell):
    """Forward, loss-scaled backward, gradient mean over ranks, update unless non-finite.

    Returns ``(loss, overflow, loss_scale)``. With a dynamic loss scale the
    scale is lowered on overflow and raised after a run of clean steps; with a
    fixed scale an overflowing step is simply skipped. Written out rather than
    using ``nn.TrainOneStepWithLossScaleCell``, which in MindSpore 2.10 selects
    an Ascend-only overflow check on CPU.
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

    def construct(self, *inputs):
        loss = self.loss_net(*inputs)
        sens = ops.ones_like(loss) * self.scale.astype(loss.dtype)
        grads = self.grad(self.loss_net, self.weights)(*inputs, sens)
        if self.reducer is not None:
            grads = self.reducer(grads)
        inverse = 1.0 / self.scale
        grads = self.hyper_map(ops.partial(_unscale, inverse), grads)
        finite = ms.amp.all_finite(grads)
        overflow = ops.logical_not(finite)
        if self.scale_update is not None:
            self.scale_update(self.scale, overflow)
        if finite:
            self.optimizer(grads)
        return loss, overflow, self.scale.value()


def _unscale(inverse, grad):
    return grad * ops.cast(inverse, grad.dtype)


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
    """Where training stands: completed epochs and optimizer steps."""

    def __init__(self, epoch: int = 0, global_step: int = 0):
        self.epoch = epoch
        self.global_step = global_step
        self.last_checkpoint = None
        self.best_metric = None


def default_progress_line(epoch, step, steps, loss, lr, images_per_second, eta_epoch, eta_total):
    """Model-zoo style progress line (``epoch: 1 step: 100, loss is ...``)."""
    return (f"epoch: {epoch} step: {step}, loss is {loss:.6f} "
            f"[{step}/{steps}, lr {lr:.6f}, {images_per_second:.1f} img/s, "
            f"epoch ETA {format_duration(eta_epoch)}, total ETA {format_duration(eta_total)}]")


def train_one_epoch(train_step, dataset, state: TrainState, lr_array, cfg, ctx, log,
                    progress_line=default_progress_line, last_good_checkpoint=None):
    """Run one epoch; return (mean loss, seconds, images/s). Stops on a non-finite loss."""
    steps = dataset.get_dataset_size()
    interval = cfg.log_interval or max(1, steps // 10)
    epochs_left_after = cfg.epochs - state.epoch - 1
    images_per_step = cfg.batch_size * ctx.group_size
    epoch_number = state.epoch + 1
    losses, window_start, window_steps = [], time.time(), 0
    start = time.time()
    for step, batch in enumerate(dataset.create_tuple_iterator(num_epochs=1), start=1):
        loss, overflow, scale = train_step(*batch)
        loss_value = float(loss.asnumpy())
        overflowed = bool(overflow.asnumpy())
        lr = float(lr_array[min(state.global_step, len(lr_array) - 1)])
        if not math.isfinite(loss_value) and not cfg.loss.dynamic_loss_scale:
            where = last_good_checkpoint or "none saved yet"
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at epoch {epoch_number} step {step} "
                f"(global step {state.global_step + 1}); the update was skipped and no "
                f"checkpoint was written. Last good checkpoint: {where}. Lower lr.base_lr or "
                f"enable --loss.dynamic_loss_scale=True, then --resume from it")
        if overflowed:
            # TrainOneStepWithLossScaleCell skipped the update, so weights stay finite.
            log(f"warning: epoch {epoch_number} step {step}: gradient overflow, update skipped "
                f"(loss scale {float(scale.asnumpy()):g})")
        else:
            state.global_step += 1
        losses.append(loss_value)
        window_steps += 1
        if step % interval == 0 or step == steps:
            now = time.time()
            ips = window_steps * images_per_step / max(now - window_start, 1e-9)
            per_step = (now - start) / step
            eta_epoch = per_step * (steps - step)
            eta_total = eta_epoch + per_step * steps * epochs_left_after
            log(progress_line(epoch_number, step, steps, loss_value, lr, ips, eta_epoch, eta_total))
            window_start, window_steps = now, 0
        else:
            log.live(f"epoch {epoch_number} step {step}/{steps} loss {loss_value:.4f}")
    log.end_live()
    seconds = time.time() - start
    count = len(losses)
    return (float(np.mean(losses)) if losses else float("nan"), seconds,
            count * images_per_step / max(seconds, 1e-9), count)


def check_checkpoint_matches(cfg, meta, source, check_dataset: bool = True):
    """Refuse a checkpoint whose stored model/dataset/class count differ from the config."""
    for key in ("model", "dataset") if check_dataset else ("model",):
        if key in meta and meta[key] != getattr(cfg, key):
            raise CheckpointError(f"{source} was trained with {key}={meta[key]!r} but the config "
                                  f"says {key}={getattr(cfg, key)!r}; use the matching config")
    if "num_classes" in meta and int(meta["num_classes"]) != cfg.num_classes:
        raise CheckpointError(f"{source} has num_classes={meta['num_classes']} but the config "
                              f"says {cfg.num_classes}; pass --num_classes={meta['num_classes']}")


def fit(cfg, ctx, run_dir: str, log):
    """Train ``cfg.model`` for ``cfg.epochs``; return (TrainState, final metrics or None)."""
    spec = get_model_spec(cfg.model)
    task = get_task(spec.task)
    net = build_network(cfg)
    if cfg.pretrained:
        tensors, _ = ckpt.read_checkpoint(cfg.pretrained)
        ckpt.load_network_weights(net, tensors, source=f"pretrained checkpoint {cfg.pretrained}")
        log(f"loaded pretrained weights from {cfg.pretrained}")

    steps_per_epoch = task.train_dataset(cfg, ctx, seed=cfg.seed).get_dataset_size()
    if steps_per_epoch == 0:
        raise ZooError(f"the training set gives no full batch of {cfg.batch_size} per process; "
                       f"lower --batch_size")
    lr_array = learning_rates(cfg, steps_per_epoch)
    optimizer = build_optimizer(cfg, net, lr_array)
    state = TrainState()
    if cfg.resume:
        path = ckpt.find_resume_checkpoint(cfg.resume)
        tensors, meta = ckpt.read_checkpoint(path)
        check_checkpoint_matches(cfg, meta, f"checkpoint {path}")
        ckpt.load_network_weights(net, tensors, source=f"checkpoint {path}")
        state.global_step = ckpt.load_optimizer_state(optimizer, tensors, f"checkpoint {path}")
        state.epoch = int(meta.get("epoch", 0))
        saved_steps = meta.get("steps_per_epoch")
        if saved_steps is not None and int(saved_steps) != steps_per_epoch:
            raise CheckpointError(
                f"checkpoint {path} was trained with {int(saved_steps)} steps per epoch but this "
                f"run has {steps_per_epoch}; resume with the batch size and device count it was "
                f"trained with")
        state.last_checkpoint = path
        log(f"resumed from {path}: epoch {state.epoch}, global step {state.global_step}")

    train_step = build_train_step(cfg, task.loss_network(cfg, apply_amp(cfg, net)), optimizer,
                                  ctx.group_size)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if cfg.checkpoint.save_on_all_ranks and ctx.group_size > 1:
        ckpt_dir = os.path.join(ckpt_dir, f"rank_{ctx.rank}")
    writes_checkpoints = ctx.is_main or cfg.checkpoint.save_on_all_ranks
    progress_line = getattr(task, "progress_line", default_progress_line)
    metrics = None
    log(f"training {cfg.model} on {cfg.dataset}: {cfg.epochs} epochs x {steps_per_epoch} steps, "
        f"batch {cfg.batch_size} x {ctx.group_size} process(es), device {ctx.device_target}")
    while state.epoch < cfg.epochs:
        dataset = task.train_dataset(cfg, ctx, seed=cfg.seed + state.epoch)
        mean_loss, seconds, ips, steps = train_one_epoch(
            train_step, dataset, state, lr_array, cfg, ctx, log, progress_line,
            last_good_checkpoint=state.last_checkpoint)
        state.epoch += 1
        log(f"epoch time: {seconds * 1000:.3f} ms, per step time: {seconds * 1000 / max(steps, 1):.3f} ms, "
            f"mean loss {mean_loss:.6f}, {ips:.1f} img/s")
        last = state.epoch == cfg.epochs
        if writes_checkpoints and (state.epoch % cfg.checkpoint.save_every_epochs == 0 or last):
            path = os.path.join(ckpt_dir, ckpt.checkpoint_name(cfg.model, cfg.dataset, state.epoch,
                                                               steps_per_epoch))
            ckpt.save_checkpoint(path, net, optimizer, _meta(cfg, state, steps_per_epoch))
            ckpt.prune_checkpoints(ckpt_dir, cfg.checkpoint.keep_max)
            state.last_checkpoint = path
            log(f"saved checkpoint {path}")
        every = cfg.checkpoint.eval_every_epochs
        if ctx.is_main and every > 0 and (state.epoch % every == 0 or last):
            metrics = task.evaluate(cfg, net, ctx)
            log(task.format_metrics(metrics))
            train_step.set_train()
            score = metrics[task.PRIMARY_METRIC]
            if cfg.checkpoint.keep_best and (state.best_metric is None or score > state.best_metric):
                state.best_metric = score
                best = os.path.join(ckpt_dir, "best.ckpt")
                ckpt.save_checkpoint(best, net, optimizer, _meta(cfg, state, steps_per_epoch))
                log(f"new best {task.PRIMARY_METRIC} {score:.4f}: saved {best}")
    return state, net, metrics


def _meta(cfg, state, steps_per_epoch):
    return {"epoch": state.epoch, "global_step": state.global_step, "model": cfg.model,
            "steps_per_epoch": steps_per_epoch,
            "dataset": cfg.dataset, "num_classes": cfg.num_classes,
            "image_size": list(cfg.image_size)}

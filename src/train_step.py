"""The compiled training step: forward, loss-scaled backward, gradient mean, update.

Shared by every model (``src.engine.fit``) and by ``benchmark.py``.
"""
import mindspore as ms
from mindspore import nn, ops


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
      weights non-finite, so the next step's loss stops the run. The in-graph
      skip and the gradient check are a large part of a CPU step (README,
      "Benchmarks and CPU performance"), so only runs that need them pay for
      them (dynamic scale, and data parallel; see below).

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

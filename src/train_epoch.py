"""One epoch of training steps: the data order of a resumed epoch, loss checks, progress lines.

Called by :func:`src.engine.fit` once per epoch.
"""
import math
import time

import numpy as np

from src.errors import DataError, ZooError
from src.utils.logging import format_duration


class NonFiniteLossError(ZooError):
    """Training produced a NaN/Inf loss with a fixed loss scale (or persistently with a dynamic one)."""

    exit_code = 3


# With a dynamic loss scale a non-finite loss skips the step and halves the scale;
# this many in a row means lowering it cannot help (e.g. NaN inputs), so the run stops.
MAX_NON_FINITE_IN_A_ROW = 20


class StopAtStep(Exception):
    """Internal: train_one_epoch saw a stop request after a completed step."""


def default_progress_line(epoch, step, steps, loss, lr, images_per_second, eta_epoch, eta_total):
    """Model-zoo style progress line (``epoch: 1 step: 100, loss is ...``)."""
    return (f"epoch: {epoch} step: {step}, loss is {loss:.6f} "
            f"[{step}/{steps}, lr {lr:.6f}, {images_per_second:.1f} img/s, "
            f"epoch ETA {format_duration(eta_epoch)}, total ETA {format_duration(eta_total)}]")


def train_one_epoch(train_step, dataset, state, lr_array, cfg, ctx, log,
                    progress_line=default_progress_line, last_good_checkpoint=None, stop=None):
    """Run one epoch; return (mean loss, seconds, images/s, steps run).

    Resuming inside an epoch (``state.step_in_epoch`` > 0) replays the first
    batches of the seeded data order without training on them, so the rest of
    the epoch sees exactly the batches of an uninterrupted run. Every step's
    loss is checked (:func:`check_step`). A request on ``stop`` ends the
    epoch after the current step (:class:`StopAtStep`).
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
    losses, window_start, window_steps, ran = [], time.time(), 0, 0
    start = time.time()
    for step, batch in enumerate(_batches(dataset, epoch_number, cfg), start=1):
        if step <= done_before:
            continue  # trained before the interruption; read only to keep the data order
        loss, overflow, scale = train_step(*batch)
        loss_value = float(loss.asnumpy())
        overflowed = bool(overflow.asnumpy())
        lr = float(lr_array[min(state.global_step, len(lr_array) - 1)])  # of this step
        check_step(loss_value, overflowed, scale, state, epoch_number, step, cfg, ctx, log,
                    last_good_checkpoint)
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
        if stop is not None and stop.requested and step < steps:
            log.end_live()
            raise StopAtStep()
    log.end_live()
    seconds = time.time() - start
    return (float(np.mean(losses)) if losses else float("nan"), seconds,
            ran * images_per_step / max(seconds, 1e-9), ran)


def check_step(loss_value, overflowed, scale, state, epoch, step, cfg, ctx, log, last_good):
    """Judge a finished step's loss; NonFiniteLossError names the step and ``last_good``.

    A fixed loss scale stops at the first non-finite step. A dynamic one
    warns (the step was skipped and the scale lowered) and stops only after
    ``MAX_NON_FINITE_IN_A_ROW`` in a row.
    """
    where = last_good or "none saved yet"
    if not cfg.loss.dynamic_loss_scale and (overflowed or not math.isfinite(loss_value)):
        what = (f"non-finite loss ({loss_value})" if not math.isfinite(loss_value)
                else "non-finite gradients")
        # Data-parallel steps update only when every gradient is finite (src.train_step).
        effect = ("the update was skipped" if ctx.group_size > 1
                  else "the weights are no longer finite")
        raise NonFiniteLossError(
            f"{what} at epoch {epoch} step {step} (global step {state.global_step + 1}) with a "
            f"fixed loss scale; {effect} and no checkpoint was written. Last good checkpoint: "
            f"{where}. Lower lr.base_lr, check the data for NaN/Inf, or use "
            f"--loss.dynamic_loss_scale=True, then --resume from it")
    if math.isfinite(loss_value):
        state.non_finite_in_a_row = 0
        if overflowed:
            log(f"warning: epoch {epoch} step {step}: gradient overflow, update skipped (loss "
                f"scale {float(scale.asnumpy()):g})")
        return
    state.non_finite_in_a_row += 1
    if state.non_finite_in_a_row >= MAX_NON_FINITE_IN_A_ROW:
        raise NonFiniteLossError(
            f"non-finite loss ({loss_value}) on {state.non_finite_in_a_row} steps in a row up to "
            f"epoch {epoch} step {step} although the dynamic loss scale skipped each of them "
            f"(scale now {float(scale.asnumpy()):g}); no checkpoint was written. Last good "
            f"checkpoint: {where}. Lower lr.base_lr (or check the data for NaN/Inf), then "
            f"--resume from it")
    log(f"warning: epoch {epoch} step {step}: non-finite loss ({loss_value}), update skipped, "
        f"loss scale lowered to {float(scale.asnumpy()):g}")


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

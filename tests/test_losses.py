"""Tests for src.losses.LabelSmoothingCrossEntropy in PYNATIVE and GRAPH mode."""
import numpy as np
import pytest

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
import mindspore
from mindspore import Tensor, nn

from src.losses import LabelSmoothingCrossEntropy

MODES = {"pynative": mindspore.PYNATIVE_MODE, "graph": mindspore.GRAPH_MODE}


@pytest.fixture(params=sorted(MODES))
def mode(request):
    """Run the test in the given execution mode, then restore PYNATIVE."""
    mindspore.set_device("CPU")
    mindspore.set_context(mode=MODES[request.param])
    yield request.param
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)


def _reference_loss(logits, labels, smoothing, num_classes):
    """Mean over the batch of -sum(smoothed_one_hot * log_softmax(logits))."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = np.full(logits.shape, smoothing / (num_classes - 1))
    target[np.arange(len(labels)), labels] = 1.0 - smoothing
    return float(-(target * log_prob).sum(axis=1).mean())


def _random_batch(seed, batch, num_classes, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((batch, num_classes)) * scale).astype(np.float32)
    labels = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return logits, labels


@pytest.mark.parametrize("seed, batch, num_classes, smoothing", [
    (0, 4, 10, 0.1), (1, 8, 1001, 0.1), (2, 3, 2, 0.3), (3, 5, 7, 0.0)])
def test_matches_numpy_reference(mode, seed, batch, num_classes, smoothing):
    logits, labels = _random_batch(seed, batch, num_classes)
    loss_fn = LabelSmoothingCrossEntropy(num_classes=num_classes, smoothing=smoothing)
    loss = loss_fn(Tensor(logits), Tensor(labels))
    assert loss.shape == ()
    expected = _reference_loss(logits.astype(np.float64), labels, smoothing, num_classes)
    assert float(loss.asnumpy()) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_zero_smoothing_equals_sparse_softmax_ce(mode):
    logits, labels = _random_batch(4, 6, 10)
    ours = LabelSmoothingCrossEntropy(num_classes=10)(Tensor(logits), Tensor(labels))
    theirs = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")(
        Tensor(logits), Tensor(labels))
    np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), rtol=1e-6, atol=1e-7)


def test_accepts_int64_labels_and_none_reduction(mode):
    logits, labels = _random_batch(5, 4, 5)
    loss = LabelSmoothingCrossEntropy(num_classes=5, smoothing=0.2, reduction="none")(
        Tensor(logits), Tensor(labels.astype(np.int64)))
    assert loss.shape == (4,)
    per_sample = [_reference_loss(logits[i:i + 1].astype(np.float64), labels[i:i + 1], 0.2, 5)
                  for i in range(4)]
    np.testing.assert_allclose(loss.asnumpy(), per_sample, rtol=1e-5)


def test_float16_logits_are_computed_in_float32(mode):
    # Under AMP the head emits float16; the loss must come back as float32 and
    # agree with the float32 computation on the same (fp16-rounded) logits.
    logits, labels = _random_batch(6, 4, 10, scale=8.0)
    logits16 = logits.astype(np.float16)
    loss = LabelSmoothingCrossEntropy(num_classes=10, smoothing=0.1)(
        Tensor(logits16), Tensor(labels))
    assert loss.dtype == mindspore.float32
    expected = _reference_loss(logits16.astype(np.float64), labels, 0.1, 10)
    assert float(loss.asnumpy()) == pytest.approx(expected, rel=1e-5)


def test_gradient_is_finite_and_correct(mode):
    logits, labels = _random_batch(7, 4, 10, scale=20.0)  # large logits: stability check
    loss_fn = LabelSmoothingCrossEntropy(num_classes=10, smoothing=0.1)
    grad = mindspore.grad(loss_fn, grad_position=0)(Tensor(logits), Tensor(labels)).asnumpy()
    assert np.all(np.isfinite(grad))
    # d(mean loss)/d logits = (softmax - target) / N.
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    target = np.full(logits.shape, 0.1 / 9)
    target[np.arange(4), labels] = 0.9
    np.testing.assert_allclose(grad, (prob - target) / 4, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=10, smoothing=1.0), "smoothing must be a number in [0, 1)"),
    (dict(num_classes=10, smoothing=-0.1), "smoothing must be a number in [0, 1)"),
    (dict(num_classes=1, smoothing=0.1), "num_classes must be an integer >= 2"),
    (dict(num_classes=10.0), "num_classes must be an integer >= 2"),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        LabelSmoothingCrossEntropy(**kwargs)
    assert message in str(err.value)

"""Classification losses shared by the classifiers (Tiny-DarkNet, MobileNetV1, VGG16)."""
import numbers

# Importing this module runs src/__init__ first, which sets the oneDNN env var
# before mindspore is loaded.
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

__all__ = ["LabelSmoothingCrossEntropy"]


class LabelSmoothingCrossEntropy(nn.LossBase):
    """Softmax cross entropy on sparse integer labels with label smoothing.

    Same as upstream ``CrossEntropySmooth`` / VGG ``CrossEntropy``: the label is
    one-hot encoded with ``on_value = 1 - s`` and ``off_value = s / (C - 1)``
    (``C = num_classes``), then ``loss_n = -sum_c target_nc * log_softmax(x_n)_c``
    is reduced (mean over the batch by default). ``smoothing=0`` is plain
    sparse softmax cross entropy.

    Logits are cast to float32 first so the softmax is stable when the network
    runs in float16 (AMP); the loss is float32. Unlike upstream, the one-hot
    depth is ``num_classes`` rather than the logit width, so a head/loss class
    mismatch fails loudly instead of silently changing the target.

    Args:
        num_classes: number of classes ``C`` (>= 2); logits are ``(N, C)``.
        smoothing: smoothing factor ``s`` in ``[0, 1)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Inputs: ``logits`` ``(N, C)`` float, ``labels`` ``(N,)`` integer class ids.
    """

    def __init__(self, num_classes: int, smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
                or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) \
                or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
        self.num_classes = int(num_classes)
        self.smoothing = float(smoothing)
        self.on_value = Tensor(1.0 - self.smoothing, mstype.float32)
        self.off_value = Tensor(self.smoothing / (self.num_classes - 1), mstype.float32)
        self.one_hot = ops.OneHot()
        self.ce = nn.SoftmaxCrossEntropyWithLogits(sparse=False, reduction="none")

    def construct(self, logits, labels):
        logits = ops.cast(logits, mstype.float32)
        target = self.one_hot(ops.cast(labels, mstype.int32), self.num_classes,
                              self.on_value, self.off_value)
        return self.get_loss(self.ce(logits, target))

"""Drop-in ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.BatchNorm2d``, ``nn.Dense`` and ``nn.LeakyReLU``
that run on the zoo's CPU kernels.

Each is a subclass with the same parameters (names, shapes, initialisation), so checkpoints and
``isinstance`` checks are unaffected. Whether a layer uses the zoo's kernels is fixed when it is
built (:func:`src.kernels.active`); configurations the kernels do not cover (dilation, NHWC,
float16 after ``auto_mixed_precision``) keep MindSpore's operator.
"""
import itertools

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from src import kernels


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value[-2:])


def _output_size(size: int, kernel: int, stride: int, same: bool, before: int, after: int) -> int:
    if same:
        return (size + stride - 1) // stride
    return (size + before + after - kernel) // stride + 1


def _four(padding):
    return (padding,) * 4 if isinstance(padding, int) else tuple(padding)


_instances = itertools.count()


def _custom(name: str, out_shape, out_dtype, bprop=None):
    op = ops.Custom(f"{kernels.load()}:{name}", out_shape=out_shape, out_dtype=out_dtype,
                    func_type="aot", bprop=bprop)
    # PyNative mode caches a Custom operator's inferred shapes by its attributes; without a
    # distinct one, a layer would get the output shape of another with the same kernel.
    op.add_prim_attr("zoo_instance", next(_instances))
    return op


def _same_dtype(*dtypes):
    return dtypes[0]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d``; forward and both backward passes on the zoo's oneDNN when active."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dilation = _pair(self.dilation)
        self.zoo_kernel = (kernels.active() and self.data_format == "NCHW"
                           and dilation == (1, 1) and self.weight.dtype == mstype.float32)
        if not self.zoo_kernel:
            return
        stride_h, stride_w = _pair(self.stride)
        same = self.pad_mode == "same"
        pads = (0, 0, 0, 0) if self.pad_mode != "pad" else _four(self.padding)
        self._geometry = [stride_h, stride_w, int(same), *pads]
        self.set_layout(False, False)
        kernel_h, kernel_w = _pair(self.kernel_size)
        channels = self.out_channels

        def output_shape(x, w, *_):
            return [x[0], channels, _output_size(x[2], kernel_h, stride_h, same, pads[0], pads[1]),
                    _output_size(x[3], kernel_w, stride_w, same, pads[2], pads[3])]

        self.output_shape = output_shape

        backprop_input = _custom("ZooConv2DBackpropInput", lambda x, w, dy, g: x, _same_dtype)
        backprop_filter = _custom("ZooConv2DBackpropFilter", lambda x, w, dy, g: w, _same_dtype)

        def bprop(x, w, geometry, out, dout):
            return (backprop_input(x, w, dout, geometry), backprop_filter(x, w, dout, geometry),
                    ops.zeros_like(geometry))

        self.zoo_train = _custom("ZooConv2D", output_shape, _same_dtype, bprop)
        self.zoo_infer = _custom("ZooConv2DInference", output_shape, _same_dtype)
        # 1x1, stride 1, unpadded, one group: a matrix product per image on the plain layout.
        self.pointwise = ((kernel_h, kernel_w, stride_h, stride_w, self.group) == (1, 1, 1, 1, 1)
                          and pads == (0, 0, 0, 0))
        if self.pointwise:
            pointwise_input = _custom("ZooPointwiseConvBackpropInput", lambda w, dy: [
                dy[0], w[1], dy[2], dy[3]], _same_dtype)
            pointwise_filter = _custom("ZooPointwiseConvBackpropFilter", lambda x, dy: [
                dy[1], x[1], 1, 1], _same_dtype)

            def pointwise_bprop(x, w, out, dout):
                return pointwise_input(w, dout), pointwise_filter(x, dout)

            self.zoo_pointwise = _custom("ZooPointwiseConv", lambda x, w: [x[0], w[0], x[2], x[3]],
                                         _same_dtype, pointwise_bprop)

    def blocked_channels(self):
        """``(in, out)`` channels when this layer can read and write the blocked layout of
        :func:`src.kernels.keep_blocked_layouts`, else None (the bias is added on NCHW)."""
        if not self.zoo_kernel or self.has_bias:
            return None
        return self.in_channels, self.out_channels

    def set_layout(self, x_blocked: bool, y_blocked: bool) -> None:
        """Whether the input and the output hold the blocked activation layout (see
        :func:`src.kernels.keep_blocked_layouts`); set before the network compiles."""
        self.x_blocked, self.y_blocked = bool(x_blocked), bool(y_blocked)
        self.geometry = Tensor(np.array(self._geometry + [int(x_blocked), int(y_blocked)], np.int64))

    def construct(self, x):
        if self.zoo_kernel and x.dtype == mstype.float32:
            if self.pointwise and not (self.x_blocked or self.y_blocked):
                output = self.zoo_pointwise(x, self.weight)
            elif self.training:
                output = self.zoo_train(x, self.weight, self.geometry)
            else:
                output = self.zoo_infer(x, self.weight, self.geometry)
        else:
            output = self.conv2d(x, self.weight)
        if self.has_bias:
            output = self.bias_add(output, self.bias)
        return output


# settings of ZooConvFusedInference per activation: [kind (0 none, 1 relu, 2 clip), alpha, beta]
_FUSED_ACTIVATIONS = {"none": (0, 0.0, 0.0), "relu": (1, 0.0, 0.0), "relu6": (2, 0.0, 6.0)}


def fused_inference(conv, batch_norm, activation: str, leaky_alpha: float = 0.0):
    """``(op, settings)`` computing ``activation(batch_norm(conv(x)))`` at inference as one
    kernel, called as ``op(x, conv.weight, [gamma, beta, moving_mean, moving_variance,]
    conv.geometry, settings)``; None where it does not apply (no kernels, a bias, another
    activation). The caller keeps the separate layers where BatchNorm's ``use_batch_statistics``
    is set (batch statistics at inference).

    BatchNorm's moving statistics are folded into the convolution's weights and bias on every
    call, and the activation is a post-op. Training and exports keep the separate layers."""
    if not getattr(conv, "zoo_kernel", False) or conv.has_bias:
        return None
    if activation == "leaky_relu":
        kind = (1, float(leaky_alpha), 0.0)
    elif activation in _FUSED_ACTIVATIONS:
        kind = _FUSED_ACTIVATIONS[activation]
    else:
        return None
    epsilon = float(batch_norm.eps) if batch_norm is not None else 0.0
    settings = Tensor(np.array([*kind, epsilon], np.float32))
    return _custom("ZooConvFusedInference", conv.output_shape, _same_dtype), settings


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (``same``/``valid`` padding); the backward pass uses the forward's
    record of where each maximum was, as MindSpore's oneDNN pooling does, so ties resolve alike."""

    def __init__(self, kernel_size=1, stride=1, pad_mode="valid", data_format="NCHW"):
        super().__init__(kernel_size=kernel_size, stride=stride, pad_mode=pad_mode,
                         data_format=data_format)
        self.zoo_kernel = kernels.active() and self.format == "NCHW"
        if not self.zoo_kernel:
            return
        kernel_h, kernel_w = _pair(self.kernel_size)
        stride_h, stride_w = _pair(self.stride)
        same = self.pad_mode == "SAME"
        self._geometry = [kernel_h, kernel_w, stride_h, stride_w, int(same), 0, 0, 0, 0]
        self.set_layout(False)
        # oneDNN's workspace is one byte per output element for windows of up to 256 elements.
        bytes_per_output = 1 if kernel_h * kernel_w <= 256 else 4

        def output_shape(x, geometry):
            return [x[0], x[1], _output_size(x[2], kernel_h, stride_h, same, 0, 0),
                    _output_size(x[3], kernel_w, stride_w, same, 0, 0)]

        def train_shapes(x, geometry):
            y = output_shape(x, geometry)
            return [y, [y[0] * y[1] * y[2] * y[3] * bytes_per_output]]

        grad = _custom("ZooMaxPoolGrad", lambda x, dy, ws, g: x, lambda x, dy, ws, g: dy)

        def bprop(x, geometry, out, dout):
            return grad(x, dout[0], out[1], geometry), ops.zeros_like(geometry)

        self.zoo_train = _custom("ZooMaxPool", train_shapes,
                                 lambda x, geometry: [x, mstype.uint8], bprop)
        self.zoo_infer = _custom("ZooMaxPoolInference", output_shape, _same_dtype)

    def set_layout(self, blocked: bool) -> None:
        """Whether input and output hold the blocked activation layout (set before compiling)."""
        self.blocked = bool(blocked)
        self.geometry = Tensor(np.array(self._geometry + [int(blocked)], np.int64))

    def construct(self, x):
        if self.zoo_kernel and x.dtype == mstype.float32:
            if self.training:
                return self.zoo_train(x, self.geometry)[0]
            return self.zoo_infer(x, self.geometry)
        return super().construct(x)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d``, on the zoo's kernel where its input holds the blocked layout
    (:meth:`set_layout`, from :func:`src.kernels.keep_blocked_layouts`), which MindSpore's
    operator cannot read; on NCHW it is MindSpore's. The moving statistics follow MindSpore:
    ``moving = moving * momentum + batch * (1 - momentum)``, with the unbiased batch variance."""

    def __init__(self, num_features, eps=1e-5, momentum=0.9, **kwargs):
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        self.zoo_kernel = kernels.active() and self.format == "NCHW"
        self.blocked = False
        if not self.zoo_kernel:
            return
        self.set_layout(False)
        grad = _custom("ZooBatchNormGrad", lambda x, dy, g, m, v, geometry: [x, g, g],
                       lambda x, dy, g, m, v, geometry: [dy, g, g])

        def bprop(x, gamma, beta, geometry, out, dout):
            dx, dgamma, dbeta = grad(x, dout[0], gamma, out[1], out[2], geometry)
            return dx, dgamma, dbeta, ops.zeros_like(geometry)

        self.zoo_train = _custom("ZooBatchNorm", lambda x, g, b, geometry: [x, g, g],
                                 lambda x, g, b, geometry: [x, g, g], bprop)
        self.zoo_infer = _custom("ZooBatchNormInference", lambda x, g, b, m, v, geometry: x,
                                 _same_dtype)

    def set_layout(self, blocked: bool) -> None:
        """Whether input and output hold the blocked activation layout (set before compiling)."""
        self.blocked = bool(blocked)
        self.geometry = Tensor(np.array([self.eps, float(blocked)], np.float32))

    def _batch_statistics(self, x):
        y, mean, variance = self.zoo_train(x, self.gamma, self.beta, self.geometry)
        count = x.shape[0] * x.shape[2] * x.shape[3]
        unbiased = variance * (count / max(count - 1, 1))
        # self.momentum is MindSpore's: the weight of the batch (1 - the constructor's momentum).
        y = ops.depend(y, ops.assign(self.moving_mean, self.moving_mean * (1.0 - self.momentum)
                                     + ops.stop_gradient(mean) * self.momentum))
        return ops.depend(y, ops.assign(self.moving_variance,
                                        self.moving_variance * (1.0 - self.momentum)
                                        + ops.stop_gradient(unbiased) * self.momentum))

    def construct(self, x):
        if self.zoo_kernel and self.blocked and x.dtype == mstype.float32:
            if self.use_batch_statistics is None:
                if self.training:
                    return self._batch_statistics(x)
            elif self.use_batch_statistics:
                return self._batch_statistics(x)
            return self.zoo_infer(x, self.gamma, self.beta, self.moving_mean,
                                  self.moving_variance, self.geometry)
        return super().construct(x)


class Dense(nn.Dense):
    """``nn.Dense``; the matrix product and both of its gradients on the zoo's sgemm when
    active (the bias and the activation stay MindSpore's)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zoo_kernel = kernels.active() and self.weight.dtype == mstype.float32
        if not self.zoo_kernel:
            return
        grad_input = _custom("ZooMatMulGradInput", lambda dy, w: [dy[0], w[1]], _same_dtype)
        grad_weight = _custom("ZooMatMulGradWeight", lambda dy, x: [dy[1], x[1]], _same_dtype)

        def bprop(x, w, out, dout):
            return grad_input(dout, w), grad_weight(dout, x)

        self.zoo_matmul = _custom("ZooMatMul", lambda x, w: [x[0], w[0]], _same_dtype, bprop)

    def construct(self, x):
        if self.zoo_kernel and x.dtype == mstype.float32 and len(x.shape) == 2:
            x = self.zoo_matmul(x, self.weight)
            if self.has_bias:
                x = self.bias_add(x, self.bias)
            if self.activation_flag:
                x = self.activation(x)
            return x
        return super().construct(x)


class LeakyReLU(nn.LeakyReLU):
    """``nn.LeakyReLU``: one kernel forward and one backward instead of MindSpore's
    ``Maximum(alpha * x, x)`` and its gradient."""

    def __init__(self, alpha=0.2):
        super().__init__(alpha=alpha)
        self.zoo_kernel = kernels.active()
        if not self.zoo_kernel:
            return
        self.alpha_tensor = Tensor(np.array([alpha], np.float32))
        grad = _custom("ZooLeakyReLUGrad", lambda x, dy, a: x, _same_dtype)

        def bprop(x, alpha, out, dout):
            return grad(x, dout, alpha), ops.zeros_like(alpha)

        self.zoo_forward = _custom("ZooLeakyReLU", lambda x, a: x, _same_dtype, bprop)

    def construct(self, x):
        if self.zoo_kernel and x.dtype == mstype.float32:
            return self.zoo_forward(x, self.alpha_tensor)
        return super().construct(x)


class BestIoU(nn.Cell):
    """Best IoU of each box ``(N, ..., 4)`` with any of its image's boxes ``(N, M, 4)``, both
    centre/size; returns ``(N, ..., 1)``, without a gradient (for detectors' ignore masks).

    One pass over the N x boxes x M pairs instead of MindSpore's broadcast element-wise
    operators (15 % of a YOLOv3-Tiny train step). Build it only while :func:`src.kernels.active`.
    """

    def __init__(self):
        super().__init__()

        def bprop(boxes, truth, out, dout):
            return ops.zeros_like(boxes), ops.zeros_like(truth)

        self.best_iou = _custom("ZooBestIoU", lambda b, t: [b[0], b[1]], _same_dtype, bprop)

    def construct(self, boxes, truth):
        n = boxes.shape[0]
        flat = ops.stop_gradient(boxes).reshape(n, -1, 4)
        best = self.best_iou(flat, ops.stop_gradient(truth))
        return best.reshape(boxes.shape[:-1] + (1,))

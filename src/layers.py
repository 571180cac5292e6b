"""Building blocks and weight-init helpers shared by the zoo's networks.

Every model builds its convolutions from :class:`ConvBNAct` (or :class:`Conv2d`), its max
pooling from :class:`MaxPool2d`, and initialises
weights through :func:`make_initializer` / :func:`init_weights`, so the init
schemes and option checks behave the same way in all models.
"""
import math
import operator
from typing import Iterable, Optional, Tuple, Type

from mindspore import dtype as mstype
from mindspore import nn, ops
from mindspore.common import initializer as init

from src.errors import ConfigError
# The layers every model builds from: nn.Conv2d / MaxPool2d / BatchNorm2d / Dense / LeakyReLU that run on the
# zoo's CPU kernels when src.kernels is active.
from src.kernels.cells import BatchNorm2d, Conv2d, Dense, LeakyReLU, MaxPool2d  # noqa: F401  pylint: disable=unused-import
from src.kernels.cells import fused_inference

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "none")
PAD_MODES = ("same", "pad", "valid")

# Scheme names accepted by the ``weight_init`` network option of every model.
WEIGHT_INIT_SCHEMES = (
    "xavier_uniform",   # Glorot uniform
    "kaiming_normal",   # He normal, fan_out, ReLU gain (torchvision-style conv init)
    "kaiming_uniform",  # He uniform, a=sqrt(5), fan_in (torch's default layer init)
    "truncated_normal",  # N(0, sigma) truncated at 2 sigma
    "normal",           # N(0, sigma)
)
BIAS_INIT_SCHEMES = ("zeros", "fan_in_uniform")


def check_choice(option: str, value, choices: Iterable) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"invalid value {value!r} for network option {option!r}; "
                          f"choose one of {list(choices)}")


def check_probability(option: str, value) -> float:
    """Return ``value`` as a float in [0, 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"network option {option!r} must be a probability in [0, 1), "
                          f"got {value!r}")
    return float(value)


def check_bn_eps(value) -> float:
    """Return a BatchNorm epsilon as a float in (0, 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        hint = " (YAML reads 1e-5 as text: write 1.0e-5)" if isinstance(value, str) else ""
        raise ConfigError(f"network option 'bn_eps' must be a number in (0, 1), got "
                          f"{value!r}{hint}")
    return float(value)


def make_initializer(scheme: str, sigma: float = 0.01) -> init.Initializer:
    """The MindSpore initializer for a weight-init scheme name.

    ``sigma`` is only used by the ``normal`` and ``truncated_normal`` schemes.
    """
    check_choice("weight_init", scheme, WEIGHT_INIT_SCHEMES)
    if scheme == "xavier_uniform":
        return init.XavierUniform()
    if scheme == "kaiming_normal":
        return init.HeNormal(mode="fan_out", nonlinearity="relu")
    if scheme == "kaiming_uniform":
        # gain sqrt(2 / (1 + 5)) gives bound = 1 / sqrt(fan_in).
        return init.HeUniform(negative_slope=math.sqrt(5), mode="fan_in",
                              nonlinearity="leaky_relu")
    if scheme == "truncated_normal":
        # MindSpore 2.x takes absolute bounds; 1.x (upstream) cut at +-2 sigma.
        return init.TruncatedNormal(sigma=sigma, a=-2 * sigma, b=2 * sigma)
    return init.Normal(sigma=sigma)


def _fan_in(weight_shape: Tuple[int, ...]) -> int:
    """Inputs feeding one output unit: in_channels/group * kh * kw for conv, in for dense."""
    fan_in = weight_shape[1]
    for k in weight_shape[2:]:
        fan_in *= k
    return fan_in


def init_weights(net: nn.Cell, scheme: str, *,
                 cell_types: Tuple[Type[nn.Cell], ...] = (nn.Conv2d, nn.Dense),
                 sigma: float = 0.01, bias: Optional[str] = "zeros") -> nn.Cell:
    """Re-initialise the weights of every ``cell_types`` cell inside ``net``.

    ``bias`` is ``"zeros"``, ``"fan_in_uniform"`` (U(+-1/sqrt(fan_in)), torch's
    default) or None to leave biases as they are. Returns ``net``.
    """
    weight_init = make_initializer(scheme, sigma)
    if bias is not None:
        check_choice("bias_init", bias, BIAS_INIT_SCHEMES)
    for _, cell in net.cells_and_names():
        if not isinstance(cell, cell_types):
            continue
        weight = cell.weight
        weight.set_data(init.initializer(weight_init, weight.shape, weight.dtype))
        if bias is None or not getattr(cell, "has_bias", False):
            continue
        if bias == "zeros":
            bias_init = init.Zero()
        else:
            bias_init = init.Uniform(scale=1.0 / math.sqrt(_fan_in(weight.shape)))
        cell.bias.set_data(init.initializer(bias_init, cell.bias.shape, cell.bias.dtype))
    return net


def make_activation(name: str, leaky_alpha: float = 0.2) -> Optional[nn.Cell]:
    """Activation cell by name; None for ``"none"``.

    ``leaky_alpha`` is the negative slope of ``leaky_relu`` (MindSpore's
    default is 0.2, darknet's is 0.1).
    """
    check_choice("activation", name, ACTIVATIONS)
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "leaky_relu":
        return LeakyReLU(alpha=leaky_alpha)
    return None


def conv_padding(pad_mode: str, kernel_size: int) -> int:
    """Explicit padding for ``pad_mode``: k//2 for 'pad' (keeps size at stride 1), else 0."""
    check_choice("pad_mode", pad_mode, PAD_MODES)
    return kernel_size // 2 if pad_mode == "pad" else 0


class ConvBNAct(nn.Cell):
    """Conv2d, optional BatchNorm2d, optional activation.

    Parameters are named ``conv.*`` and ``bn.*``. With ``pad_mode="pad"`` the
    padding is ``kernel_size // 2`` unless ``padding`` is given.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, *, pad_mode: str = "same", padding: Optional[int] = None,
                 groups: int = 1, has_bias: bool = False, batch_norm: bool = True,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.9,
                 activation: str = "relu", leaky_alpha: float = 0.2,
                 weight_init="kaiming_uniform", bias_init=None):
        super().__init__()
        if padding is None:
            padding = conv_padding(pad_mode, kernel_size)
        if isinstance(weight_init, str):
            weight_init = make_initializer(weight_init)
        if bias_init is None and has_bias:
            # MindSpore 1.x (what upstream ran on) initialised conv biases to zero.
            bias_init = "zeros"
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                           pad_mode=pad_mode, padding=padding, group=groups,
                           has_bias=has_bias, weight_init=weight_init,
                           bias_init=bias_init)
        self.bn = (BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
                   if batch_norm else None)
        self.act = make_activation(activation, leaky_alpha)
        # Plain bools so both GRAPH and PYNATIVE mode resolve the branches statically.
        self.use_bn = batch_norm
        self.use_act = self.act is not None
        # At inference on the zoo's kernels the three layers run as one (see fused_inference).
        fused = fused_inference(self.conv, self.bn, activation, leaky_alpha)
        self.use_fused = fused is not None
        if self.use_fused:
            self.fused_op, self.fused_settings = fused

    def blocked_channels(self):
        """``(in, out)`` channels when the block can keep the kernels' blocked layout
        (:func:`src.kernels.keep_blocked_layouts`); every activation here is element-wise."""
        if self.use_bn and not self.bn.zoo_kernel:
            return None
        return self.conv.blocked_channels()

    def set_layout(self, x_blocked: bool, y_blocked: bool) -> None:
        """See :meth:`src.kernels.cells.Conv2d.set_layout`."""
        self.conv.set_layout(x_blocked, y_blocked)
        if self.use_bn:
            self.bn.set_layout(y_blocked)

    def construct(self, x):
        if self.use_fused and not self.training and self.conv.zoo_kernel and x.dtype == mstype.float32:
            if not self.use_bn:
                return self.fused_op(x, self.conv.weight, self.conv.geometry, self.fused_settings)
            if self.bn.use_batch_statistics is None:  # else BatchNorm uses the batch's statistics
                return self.fused_op(x, self.conv.weight, self.bn.gamma, self.bn.beta,
                                     self.bn.moving_mean, self.bn.moving_variance,
                                     self.conv.geometry, self.fused_settings)
        x = self.conv(x)
        if self.use_bn:
            x = self.bn(x)
        if self.use_act:
            x = self.act(x)
        return x


class GlobalAvgPool(nn.Cell):
    """Mean over the spatial axes (2, 3); ``keep_dims`` keeps them as size 1."""

    def __init__(self, keep_dims: bool = False):
        super().__init__()
        self.reduce_mean = ops.ReduceMean(keep_dims=keep_dims)

    def construct(self, x):
        return self.reduce_mean(x, (2, 3))


def check_image_size(image_size, multiple: int, model: str) -> Tuple[int, int]:
    """Return (H, W) as ints, raising ConfigError unless both are positive multiples of ``multiple``."""
    try:
        height, width = (operator.index(v) for v in image_size)
    except (TypeError, ValueError):
        raise ConfigError(f"image_size must be [height, width], got {image_size!r}") from None
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ConfigError(f"{model} needs image_size height and width that are positive "
                          f"multiples of {multiple}, got {list(image_size)}")
    return height, width

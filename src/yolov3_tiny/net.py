"""YOLOv3-Tiny network: darknet-style backbone and two 1x1 detection heads.

Only the network lives here; it returns raw head outputs. Decoding, loss and
target assignment consume them. Output 0 is stride 32 (large objects,
anchors 3-5), output 1 is stride 16 (small objects, anchors 0-2).
"""
from mindspore import nn, ops

from src.errors import ConfigError
from src.layers import Conv2d, ConvBNAct, MaxPool2d, check_bn_eps, check_image_size, init_weights

DOWNSAMPLE = 32
ANCHORS_PER_SCALE = 3
BOX_ATTRIBUTES = 5  # x, y, w, h, objectness


class YOLOv3TinyBackbone(nn.Cell):
    """Returns (features at stride 32 with 512 channels, features at stride 16 with 256)."""

    def __init__(self, leaky_alpha: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()

        def block(in_channels, out_channels, kernel_size):
            return ConvBNAct(in_channels, out_channels, kernel_size, pad_mode="same",
                             bn_eps=bn_eps, bn_momentum=0.9, activation="leaky_relu",
                             leaky_alpha=leaky_alpha)

        self.conv0 = block(3, 16, 3)
        self.conv1 = block(16, 32, 3)
        self.conv2 = block(32, 64, 3)
        self.conv3 = block(64, 128, 3)
        self.conv4 = block(128, 256, 3)    # route to the stride-16 branch
        self.conv5 = block(256, 512, 3)
        self.conv6 = block(512, 1024, 3)
        self.conv7 = block(1024, 256, 1)   # shared by both branches
        self.conv8 = block(256, 512, 3)    # stride-32 branch output
        self.conv9 = block(256, 128, 1)    # reduces channels before upsampling
        self.conv10 = block(384, 256, 3)   # stride-16 branch output (128 upsampled + 256 route)
        # One pool per use (pools hold no parameters): each can keep its own tensor layout.
        self.downsample = nn.CellList([MaxPool2d(kernel_size=2, stride=2, pad_mode="valid")
                                       for _ in range(5)])
        # Stride-1 'same' pool after conv5 keeps the stride-32 grid size.
        self.pool_keep_size = MaxPool2d(kernel_size=2, stride=1, pad_mode="same")

    def layer_sequences(self):
        """Runs of layers that feed only the next one, in order; each run's last output is
        what construct reads (for :func:`src.kernels.keep_blocked_layouts`)."""
        pool = self.downsample
        return [[self.conv0, pool[0], self.conv1, pool[1], self.conv2, pool[2], self.conv3,
                 pool[3], self.conv4],
                [pool[4], self.conv5, self.pool_keep_size, self.conv6, self.conv7]]

    def construct(self, x):
        x = self.downsample[0](self.conv0(x))
        x = self.downsample[1](self.conv1(x))
        x = self.downsample[2](self.conv2(x))
        x = self.downsample[3](self.conv3(x))
        route = self.conv4(x)
        x = self.pool_keep_size(self.conv5(self.downsample[4](route)))
        neck = self.conv7(self.conv6(x))
        out_stride32 = self.conv8(neck)
        up = self.conv9(neck)
        # Resize to the route's grid, read from the tensor so any input size works.
        # The ResizeNearestNeighbor primitive exports to ONNX (ops.interpolate does not).
        up = ops.ResizeNearestNeighbor(route.shape[2:])(up)
        out_stride16 = self.conv10(ops.concat((up, route), axis=1))
        return out_stride32, out_stride16


class YOLOv3Tiny(nn.Cell):
    """Backbone plus heads; returns raw maps (N, 3*(C+5), H/32, W/32) and (N, 3*(C+5), H/16, W/16).

    ``grid_sensitivity`` is not used by the network itself: it tells the decoders
    (:mod:`src.yolov3_tiny.loss`) which centre formula these weights were trained
    with (upstream's scaled sigmoid, or Darknet's plain ``sigmoid + cell``).
    """

    def __init__(self, num_classes: int = 80, *, leaky_alpha: float = 0.1, bn_eps: float = 1e-5,
                 grid_sensitivity: bool = True):
        super().__init__()
        out_channels = ANCHORS_PER_SCALE * (num_classes + BOX_ATTRIBUTES)
        self.grid_sensitivity = bool(grid_sensitivity)
        self.backbone = YOLOv3TinyBackbone(leaky_alpha, check_bn_eps(bn_eps))
        self.head_stride32 = Conv2d(512, out_channels, 1, has_bias=True)
        self.head_stride16 = Conv2d(256, out_channels, 1, has_bias=True)

    def construct(self, x):
        features32, features16 = self.backbone(x)
        return self.head_stride32(features32), self.head_stride16(features16)


def yolov3_tiny(num_classes=80, image_size=(640, 640), *, weight_init="kaiming_uniform",
                leaky_alpha=0.1, bn_eps=1e-5, grid_sensitivity=True):
    """YOLOv3-Tiny; image_size (any multiple of 32) is only validated, the net adapts to its input.

    ``grid_sensitivity=False`` decodes centres as Darknet does (``sigmoid(t) + cell``).
    """
    check_image_size(image_size, DOWNSAMPLE, "yolov3_tiny")
    if not isinstance(grid_sensitivity, bool):
        raise ConfigError(f"network option 'grid_sensitivity' must be true or false, "
                          f"got {grid_sensitivity!r}")
    net = YOLOv3Tiny(num_classes, leaky_alpha=leaky_alpha, bn_eps=bn_eps,
                     grid_sensitivity=grid_sensitivity)
    # Upstream's default_recurisive_init: conv weights and biases as torch's defaults
    # (bound 1/sqrt(fan_in)); BatchNorm keeps gamma=1, beta=0.
    init_weights(net, weight_init, cell_types=(nn.Conv2d,), bias="fan_in_uniform")
    return net

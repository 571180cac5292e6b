"""Tiny networks: a 2-layer classifier and a stride-16 single-map detector."""
from mindspore import nn, ops

STRIDE = 16
BOX_ATTRIBUTES = 5  # x, y, w, h, objectness


def conv(in_channels, out_channels, stride):
    return nn.SequentialCell([nn.Conv2d(in_channels, out_channels, 3, stride=stride,
                                        pad_mode="same"),
                              nn.BatchNorm2d(out_channels), nn.ReLU()])


class ToyClassifier(nn.Cell):
    """Two stride-2 convolutions, global average pool, one dense layer."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.features = nn.SequentialCell([conv(3, width, 2), conv(width, 2 * width, 2)])
        self.head = nn.Dense(2 * width, num_classes)

    def construct(self, x):
        return self.head(ops.mean(self.features(x), axis=(2, 3)))


def toy_classifier(num_classes=10, image_size=(32, 32), *, width=8):
    """The toy classifier (any input size)."""
    return ToyClassifier(num_classes, width)


class ToyDetector(nn.Cell):
    """Four stride-2 convolutions; one raw map ``(N, 5 + C, H/16, W/16)``."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.features = nn.SequentialCell([conv(3, width, 2), conv(width, width, 2),
                                           conv(width, 2 * width, 2),
                                           conv(2 * width, 2 * width, 2)])
        self.head = nn.Conv2d(2 * width, BOX_ATTRIBUTES + num_classes, 1, has_bias=True)

    def construct(self, x):
        return self.head(self.features(x))


def toy_detector(num_classes=80, image_size=(64, 64), *, width=8):
    """The toy detector (inputs a multiple of 16)."""
    return ToyDetector(num_classes, width)

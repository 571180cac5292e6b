"""Tiny-DarkNet: 16 conv-BN-LeakyReLU layers and global average pooling, no FC layer.

Unlike upstream, the last 1x1 conv outputs ``num_classes`` channels (upstream
always used 1000, ignoring ``num_classes``). The defaults are upstream
MindSpore's; Darknet's own ``tiny.cfg`` is ``leaky_alpha=0.1``,
``final_conv="linear"`` (a biased conv, no BN or activation) and BN epsilon 1e-5.
"""
from mindspore import nn

from src.layers import ConvBNAct, GlobalAvgPool, MaxPool2d, check_bn_eps, check_choice, make_initializer

POOL = "M"
# (out_channels, kernel_size) per conv; POOL is a 2x2/2 max pool. None = num_classes.
LAYOUT = (
    (16, 3), POOL,
    (32, 3), POOL,
    (16, 1), (128, 3), (16, 1), (128, 3), POOL,
    (32, 1), (256, 3), (32, 1), (256, 3), POOL,
    (64, 1), (512, 3), (64, 1), (512, 3), (128, 1),
    (None, 1),
)
# The last conv: conv-BN-leaky (upstream MindSpore) or a plain biased conv (Darknet).
FINAL_CONVS = ("bn_leaky", "linear")


class TinyDarkNet(nn.Cell):
    """Tiny-DarkNet returning (N, num_classes) logits for any input size."""

    def __init__(self, num_classes: int = 1000, *, weight_init: str = "truncated_normal",
                 leaky_alpha: float = 0.2, final_conv: str = "bn_leaky", bn_eps: float = 1e-3):
        super().__init__()
        check_choice("final_conv", final_conv, FINAL_CONVS)
        bn_eps = check_bn_eps(bn_eps)
        # TruncatedNormal(0.02) is upstream's conv init; sigma applies to the normal schemes.
        conv_init = make_initializer(weight_init, sigma=0.02)
        layers = []
        in_channels = 3
        for item in LAYOUT:
            if item == POOL:
                # 'same' so odd sizes (CIFAR's 227) round up rather than drop a row.
                layers.append(MaxPool2d(kernel_size=2, stride=2, pad_mode="same"))
                continue
            out_channels, kernel = item
            last = out_channels is None
            out_channels = num_classes if last else out_channels
            linear = last and final_conv == "linear"
            # Upstream pads 3x3 convs explicitly (padding 1) and uses 'same' for 1x1;
            # both keep the spatial size.
            layers.append(ConvBNAct(in_channels, out_channels, kernel,
                                    pad_mode="pad" if kernel == 3 else "same",
                                    has_bias=linear, batch_norm=not linear, bn_eps=bn_eps,
                                    activation="none" if linear else "leaky_relu",
                                    leaky_alpha=leaky_alpha, weight_init=conv_init))
            in_channels = out_channels
        self.features = nn.SequentialCell(layers)
        self.pool = GlobalAvgPool(keep_dims=False)

    def construct(self, x):
        return self.pool(self.features(x))


def tinydarknet(num_classes=1000, image_size=(224, 224), *,
                weight_init="truncated_normal", leaky_alpha=0.2, final_conv="bn_leaky",
                bn_eps=1e-3):
    """Tiny-DarkNet; accepts any image_size (pools use 'same' padding)."""
    del image_size  # fully convolutional
    return TinyDarkNet(num_classes, weight_init=weight_init, leaky_alpha=leaky_alpha,
                       final_conv=final_conv, bn_eps=bn_eps)

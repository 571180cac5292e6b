"""MobileNetV1 (width 1.0): a stem conv and 13 depthwise/pointwise pairs, all conv-BN-ReLU6.

``stride2_padding`` says how the five stride-2 3x3 convs pad: ``"same"``
(MindSpore/TensorFlow: the extra row and column at the bottom/right, upstream)
or ``"symmetric"`` (one on every side, as PyTorch/timm).
"""
from mindspore import nn

from src.layers import ConvBNAct, Dense, GlobalAvgPool, check_bn_eps, check_choice, init_weights

STEM_CHANNELS = 32
# (out_channels, stride of the depthwise conv) for each depthwise-separable pair.
SEPARABLE_LAYOUT = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
STRIDE2_PADDINGS = ("same", "symmetric")


class MobileNetV1(nn.Cell):
    """MobileNetV1 returning (N, num_classes) logits; 27 conv blocks, mean pool, Dense."""

    def __init__(self, num_classes: int = 1001, *, stride2_padding: str = "same",
                 bn_eps: float = 1e-5):
        super().__init__()
        check_choice("stride2_padding", stride2_padding, STRIDE2_PADDINGS)
        bn_eps = check_bn_eps(bn_eps)

        def conv3x3(in_channels, out_channels, stride, groups=1):
            pad = "pad" if stride == 2 and stride2_padding == "symmetric" else "same"
            return ConvBNAct(in_channels, out_channels, 3, stride=stride, groups=groups,
                             pad_mode=pad, bn_eps=bn_eps, activation="relu6")

        blocks = [conv3x3(3, STEM_CHANNELS, 2)]
        channels = STEM_CHANNELS
        for out_channels, stride in SEPARABLE_LAYOUT:
            blocks.append(conv3x3(channels, channels, stride, groups=channels))
            blocks.append(ConvBNAct(channels, out_channels, 1, bn_eps=bn_eps,
                                    activation="relu6"))
            channels = out_channels
        self.features = nn.SequentialCell(blocks)
        self.pool = GlobalAvgPool(keep_dims=False)
        self.classifier = Dense(channels, num_classes)

    def construct(self, x):
        return self.classifier(self.pool(self.features(x)))


def mobilenetv1(num_classes=1001, image_size=(224, 224), *, weight_init="xavier_uniform",
                stride2_padding="same", bn_eps=1e-5):
    """MobileNetV1 with upstream's training init: ``weight_init`` convs, TruncatedNormal(0.01) FC.

    Any image_size works (global mean pooling before the classifier).
    """
    del image_size
    net = MobileNetV1(num_classes, stride2_padding=stride2_padding, bn_eps=bn_eps)
    # Upstream applied this init in train.py; doing it here makes every entry point agree.
    init_weights(net, weight_init, cell_types=(nn.Conv2d,), bias=None)
    init_weights(net, "truncated_normal", cell_types=(nn.Dense,), sigma=0.01, bias="zeros")
    return net

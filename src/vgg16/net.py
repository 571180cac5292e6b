"""VGG16: 13 3x3 convs in five stages, each closed by a 2x2/2 max pool, then three FC layers."""
from mindspore import nn

from src.layers import (ConvBNAct, Dense, MaxPool2d, check_choice, check_image_size, check_probability,
                        make_initializer)

POOL = "M"
LAYOUT = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL,
          512, 512, 512, POOL, 512, 512, 512, POOL)
DOWNSAMPLE = 32  # five stride-2 pools
HIDDEN = 4096


class VGG16(nn.Cell):
    """VGG16 returning (N, num_classes) logits for a fixed (H, W) input.

    ``weight_init`` names the conv weight scheme; conv biases start at zero and
    FC layers at N(0, 0.01) weights / zero biases, as in both upstream recipes.
    """

    def __init__(self, num_classes: int = 1000, image_size=(224, 224), *,
                 batch_norm: bool = False, has_bias: bool = False, pad_mode: str = "pad",
                 dropout: float = 0.5, weight_init: str = "kaiming_normal"):
        super().__init__()
        height, width = check_image_size(image_size, DOWNSAMPLE, "vgg16")
        # 'valid' would shrink every conv and break the FC sizing, so it is not offered.
        check_choice("pad_mode", pad_mode, ("same", "pad"))
        dropout = check_probability("dropout", dropout)
        conv_init = make_initializer(weight_init)

        layers = []
        in_channels = 3
        for item in LAYOUT:
            if item == POOL:
                layers.append(MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(ConvBNAct(in_channels, item, 3, pad_mode=pad_mode,
                                    has_bias=has_bias, batch_norm=batch_norm,
                                    activation="relu", weight_init=conv_init))
            in_channels = item
        self.features = nn.SequentialCell(layers)
        self.flatten = nn.Flatten()

        def dense(n_in, n_out):
            return Dense(n_in, n_out, weight_init=make_initializer("normal", sigma=0.01),
                            bias_init="zeros")

        def drop():
            # Identity keeps the classifier's cell indices (and checkpoint names) stable.
            return nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()

        flat_features = in_channels * (height // DOWNSAMPLE) * (width // DOWNSAMPLE)
        self.classifier = nn.SequentialCell([
            dense(flat_features, HIDDEN), nn.ReLU(), drop(),
            dense(HIDDEN, HIDDEN), nn.ReLU(), drop(),
            dense(HIDDEN, num_classes),
        ])

    def construct(self, x):
        return self.classifier(self.flatten(self.features(x)))


def vgg16(num_classes=1000, image_size=(224, 224), *, batch_norm=False, has_bias=False,
          pad_mode="pad", dropout=0.5, weight_init="kaiming_normal"):
    """VGG16 (ImageNet recipe defaults); image_size must be a multiple of 32.

    The CIFAR-10 recipe is ``batch_norm=True, pad_mode="same", dropout=0.0,
    weight_init="xavier_uniform"``.
    """
    return VGG16(num_classes, image_size, batch_norm=batch_norm, has_bias=has_bias,
                 pad_mode=pad_mode, dropout=dropout, weight_init=weight_init)

"""The classic CIFAR tutorial network: 5x5 convolutions, each followed by 2x2 max pooling."""

from __future__ import annotations

from torch import nn

from models.layers import ConvNormAct, conv_output_size, make_head
from models.norm import scaled
from models.registry import register_model

_CHANNELS = (32, 64, 128)
_IMAGE_SIZE = 32


@register_model("simple_cnn")
def simple_cnn(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
) -> nn.Module:
    """Three conv5x5 -> norm -> ReLU -> maxpool blocks and a linear head."""
    layers: list[nn.Module] = []
    in_channels, size = 3, _IMAGE_SIZE
    for base in _CHANNELS:
        out_channels = scaled(base, width)
        layers += [ConvNormAct(in_channels, out_channels, 5, norm=norm), nn.MaxPool2d(2)]
        size = conv_output_size(conv_output_size(size, 5, 1, 2), 2, 2)
        in_channels = out_channels
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)

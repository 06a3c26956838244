"""VGG-style network: stages of two 3x3 convolutions (a 5x5 receptive field, fewer weights)."""

from __future__ import annotations

from torch import nn

from models.layers import ConvNormAct, conv_output_size, make_head
from models.norm import scaled
from models.registry import register_model

_STAGES = (32, 64, 128)
_IMAGE_SIZE = 32


@register_model("vgg")
def vgg(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
) -> nn.Module:
    """Three stages of (conv3x3 -> norm -> ReLU) x 2 -> maxpool, then a linear head."""
    layers: list[nn.Module] = []
    in_channels, size = 3, _IMAGE_SIZE
    for base in _STAGES:
        out_channels = scaled(base, width)
        layers += [
            ConvNormAct(in_channels, out_channels, 3, norm=norm),
            ConvNormAct(out_channels, out_channels, 3, norm=norm),
            nn.MaxPool2d(2),
        ]
        size = conv_output_size(size, 2, 2)
        in_channels = out_channels
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)

"""MobileNet-style network for CIFAR: depthwise-separable blocks (depthwise 3x3 + pointwise 1x1)."""

from __future__ import annotations

from torch import nn

from models.layers import ConvNormAct, conv_output_size, make_head
from models.norm import scaled
from models.registry import register_model

# (output channels, stride) of each depthwise-separable block, for 32x32 inputs.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
_STEM = 32
_IMAGE_SIZE = 32


def separable(in_channels: int, out_channels: int, *, stride: int, norm: str) -> nn.Sequential:
    """Depthwise 3x3 conv-norm-ReLU followed by pointwise 1x1 conv-norm-ReLU."""
    return nn.Sequential(
        ConvNormAct(in_channels, in_channels, 3, norm=norm, stride=stride, groups=in_channels),
        ConvNormAct(in_channels, out_channels, 1, norm=norm),
    )


@register_model("mobilenet")
def mobilenet(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
) -> nn.Module:
    """Conv stem and five depthwise-separable blocks, then a linear head."""
    stem = scaled(_STEM, width)
    layers: list[nn.Module] = [ConvNormAct(3, stem, 3, norm=norm)]
    in_channels, size = stem, _IMAGE_SIZE
    for base, stride in _BLOCKS:
        out_channels = scaled(base, width)
        layers.append(separable(in_channels, out_channels, stride=stride, norm=norm))
        size = conv_output_size(size, 3, stride, 1)
        in_channels = out_channels
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)

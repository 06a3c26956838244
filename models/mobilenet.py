"""MobileNet-style network for CIFAR: depthwise-separable blocks (depthwise 3x3 + pointwise 1x1)."""

from __future__ import annotations

from torch import nn

from models.layers import (
    ConvNormAct,
    SqueezeExcite,
    check_attention,
    conv_output_size,
    make_head,
    make_pool,
    resolve_pool,
)
from models.norm import scaled
from models.registry import register_model

# (output channels, stride) of each depthwise-separable block, for 32x32 inputs.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
_STEM = 32
_IMAGE_SIZE = 32


def separable(
    in_channels: int, out_channels: int, *, stride: int, norm: str, se_ratio: int | None = None
) -> nn.Sequential:
    """Depthwise 3x3 conv-norm-ReLU followed by pointwise 1x1 conv-norm-ReLU, with optional
    squeeze-and-excitation between them (where MobileNetV3 puts it)."""
    block = nn.Sequential(
        ConvNormAct(in_channels, in_channels, 3, norm=norm, stride=stride, groups=in_channels)
    )
    if se_ratio is not None:
        block.append(SqueezeExcite(in_channels, se_ratio))
    block.append(ConvNormAct(in_channels, out_channels, 1, norm=norm))
    return block


@register_model("mobilenet")
def mobilenet(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
    pool: str = "auto",
    attention: str = "none",
    se_ratio: int = 8,
) -> nn.Module:
    """Conv stem and five depthwise-separable blocks, then a linear head."""
    check_attention(attention, se_ratio)
    # `conv`: a downsampling block's depthwise conv has stride 2; max/avg: a 2x2 pooling layer
    # halves the maps before that block, which then keeps stride 1.
    pool = resolve_pool("mobilenet", pool)
    stem = scaled(_STEM, width)
    layers: list[nn.Module] = [ConvNormAct(3, stem, 3, norm=norm)]
    in_channels, size = stem, _IMAGE_SIZE
    for base, block_stride in _BLOCKS:
        out_channels = scaled(base, width)
        if block_stride == 2 and pool != "conv":
            layers.append(make_pool(pool))
            size = conv_output_size(size, 2, 2)
        stride = block_stride if pool == "conv" else 1
        layers.append(
            separable(
                in_channels,
                out_channels,
                stride=stride,
                norm=norm,
                se_ratio=se_ratio if attention == "se" else None,
            )
        )
        size = conv_output_size(size, 3, stride, 1)
        in_channels = out_channels
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)

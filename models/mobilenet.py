"""MobileNet-style network for CIFAR: depthwise-separable blocks (depthwise 3x3 + pointwise 1x1)."""

from __future__ import annotations

from functools import partial

from torch import nn

from models.layers import ConvNormAct, SqueezeExcite, check_attention, resolve_pool
from models.norm import scaled
from models.registry import register_model
from models.trunk import block_network

# (output channels, stride) of each depthwise-separable block, for 32x32 inputs.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
_STEM = 32


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
    return block_network(
        stem=scaled(_STEM, width),
        blocks=[(scaled(base, width), stride == 2) for base, stride in _BLOCKS],
        make_block=partial(separable, norm=norm, se_ratio=se_ratio if attention == "se" else None),
        pool=resolve_pool("mobilenet", pool),
        norm=norm,
        head=head,
        num_classes=num_classes,
        dropout=dropout,
    )

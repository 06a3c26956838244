"""A small CIFAR CNN in the shape `hpo` expects of a model factory (see README, "Your own model").

Copy this file next to your spec, change the network, and name it in the spec:
`model = "nets/tiny.py:build"`. hpo calls `build(num_classes=..., norm_layer=..., **params)`
with the values of [search.model_params] and a norm layer factory for the norm being tried.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def conv_block(c_in: int, c_out: int, norm_layer: Callable[[int], nn.Module]) -> nn.Sequential:
    """3x3 conv -> norm -> ReLU: the conv has no bias (the norm has its own shift)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm_layer(c_out), nn.ReLU(inplace=True)
    )


def build(
    num_classes: int = 10,
    norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    channels: int = 32,
    blocks: int = 2,
) -> nn.Module:
    """Three stages of `blocks` conv blocks each (channels, 2x, 4x), halved by max pooling,
    then global average pooling and a linear classifier: (N, 3, 32, 32) -> (N, num_classes)."""
    layers: list[nn.Module] = []
    c_in = 3
    for stage in range(3):
        c_out = channels * 2**stage
        for _ in range(blocks):
            layers.append(conv_block(c_in, c_out, norm_layer))
            c_in = c_out
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
    )

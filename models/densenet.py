"""DenseNet for CIFAR (Huang et al., 2017): three dense blocks joined by transitions.

Each layer of a dense block sees the concatenation of every earlier feature map of its block
and adds `growth_rate` new ones. A transition compresses the channels (`compression`) and halves
the maps. DenseNet's own order is pre-activation (norm -> ReLU -> conv); there a BatchNorm reads
a concatenation, not a conv, and cannot be folded (the ReLU before the next conv also stops it
from folding forward). `order = "post"` builds every unit as conv -> norm -> ReLU instead, so
every BatchNorm follows its conv and folds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.catalog import DENSE_ORDERS
from models.layers import (
    IMAGE_SIZE,
    ConvNormAct,
    SqueezeExcite,
    check_attention,
    check_choice,
    conv_output_size,
    make_head,
    make_pool,
    reduced_channels,
    resolve_pool,
)
from models.norm import conv_bias, make_norm
from models.registry import register_model

_BLOCKS = 3


class NormActConv(nn.Sequential):
    """Norm -> ReLU -> conv: DenseNet's pre-activation unit."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, norm: str, stride: int = 1
    ) -> None:
        super().__init__(
            make_norm(norm, in_channels),
            # Not in place: with norm "none" the ReLU would overwrite the block's features.
            nn.ReLU(),
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=conv_bias(norm),
            ),
        )


def _unit(
    in_channels: int, out_channels: int, kernel_size: int, *, norm: str, order: str, stride: int = 1
) -> nn.Module:
    if order == "pre":
        return NormActConv(in_channels, out_channels, kernel_size, norm=norm, stride=stride)
    return ConvNormAct(in_channels, out_channels, kernel_size, norm=norm, stride=stride)


class DenseBlock(nn.Module):
    """`layers` units, each adding `growth` channels to the concatenation it reads."""

    def __init__(
        self,
        in_channels: int,
        *,
        layers: int,
        growth: int,
        norm: str,
        order: str,
        bottleneck: float,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for index in range(layers):
            channels = in_channels + index * growth
            units: list[nn.Module] = []
            reduced = reduced_channels(channels, bottleneck)  # DenseNet-B's 1x1 conv
            if reduced is not None:
                units.append(_unit(channels, reduced, 1, norm=norm, order=order))
                channels = reduced
            units.append(_unit(channels, growth, 3, norm=norm, order=order))
            self.layers.append(nn.Sequential(*units))
        self.out_channels = in_channels + layers * growth

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


@register_model("densenet")
def densenet(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
    growth_rate: int = 12,
    dense_layers: int = 4,
    compression: float = 0.5,
    dense_order: str = "pre",
    pool: str = "auto",
    bottleneck: float = 0.0,
    attention: str = "none",
    se_ratio: int = 8,
) -> nn.Module:
    """Three dense blocks (growth rate x width new channels per layer) joined by transitions."""
    check_choice("dense_order", dense_order, DENSE_ORDERS)
    check_attention(attention, se_ratio)
    if growth_rate < 1 or dense_layers < 1 or not 0 < compression <= 1:
        raise ValueError(
            "densenet needs growth_rate >= 1, dense_layers >= 1 and compression in (0, 1]; "
            f"got {growth_rate}, {dense_layers}, {compression}"
        )
    # `avg` (DenseNet's own): 1x1 conv then 2x2 average pooling; `max` likewise; `conv`: one
    # stride-2 3x3 conv does both (a stride-2 1x1 conv would drop three pixels of four).
    pool = resolve_pool("densenet", pool)
    growth = max(1, round(growth_rate * width))
    channels, size = 2 * growth, IMAGE_SIZE
    stem: nn.Module = (
        nn.Conv2d(3, channels, 3, padding=1, bias=conv_bias(norm))
        if dense_order == "pre"
        else ConvNormAct(3, channels, 3, norm=norm)
    )
    layers: list[nn.Module] = [stem]
    for block in range(_BLOCKS):
        dense = DenseBlock(
            channels,
            layers=dense_layers,
            growth=growth,
            norm=norm,
            order=dense_order,
            bottleneck=bottleneck,
        )
        layers.append(dense)
        channels = dense.out_channels
        if attention == "se":
            layers.append(SqueezeExcite(channels, se_ratio))
        if block == _BLOCKS - 1:
            break
        compressed = max(1, int(compression * channels))
        if pool == "conv":
            layers.append(_unit(channels, compressed, 3, norm=norm, order=dense_order, stride=2))
            size = conv_output_size(size, 3, 2, 1)
        else:
            layers += [
                _unit(channels, compressed, 1, norm=norm, order=dense_order),
                make_pool(pool),
            ]
            size = conv_output_size(size, 2, 2)
        channels = compressed
    if dense_order == "pre":
        # The last block's features are normalized and activated once more before the head.
        layers += [make_norm(norm, channels), nn.ReLU(inplace=True)]
    layers.append(
        make_head(head, channels=channels, spatial=size, num_classes=num_classes, dropout=dropout)
    )
    return nn.Sequential(*layers)

"""Plain conv stages, the body of simple_cnn, vgg and compact: per stage the convs (two stacked 3x3
or one 5x5, or compact's single 3x3, each optionally behind a 1x1 bottleneck), optional
squeeze-and-excitation, then the downsampling (2x2 max/avg pooling, or stride 2 in the stage's
last conv)."""

from __future__ import annotations

from torch import nn

from models.catalog import KERNELS
from models.layers import (
    IMAGE_SIZE,
    SqueezeExcite,
    bottlenecked,
    check_attention,
    check_choice,
    conv_output_size,
    make_head,
    make_pool,
    resolve_pool,
)
from models.norm import scaled
from models.registry import ModelFactory, register_model

# `kernel` -> the kernel sizes of a stage's convs (both have a 5x5 receptive field).
_STAGE_KERNELS = {"3x3": (3, 3), "5x5": (5,)}


def plain_network(
    *,
    stages: tuple[int, ...],
    kernels: tuple[int, ...],
    pool: str,
    norm: str,
    num_classes: int,
    width: float,
    dropout: float,
    head: str,
    bottleneck: float,
    attention: str,
    se_ratio: int,
    downsampled: int | None = None,
) -> nn.Sequential:
    """Stages of `stages` base channels (scaled by `width`), each of convs of `kernels` sizes,
    then the head; `pool` is resolved (max, avg or conv). The first `downsampled` stages (all by
    default) halve the maps; later ones work at the last size."""
    check_attention(attention, se_ratio)
    downsampled = len(stages) if downsampled is None else downsampled
    layers: list[nn.Module] = []
    in_channels, size = 3, IMAGE_SIZE
    for stage, base in enumerate(stages):
        out_channels = scaled(base, width)
        halves = stage < downsampled
        for index, kernel_size in enumerate(kernels):
            last = index == len(kernels) - 1
            stride = 2 if halves and pool == "conv" and last else 1
            layers += bottlenecked(
                in_channels,
                out_channels,
                kernel_size,
                norm=norm,
                stride=stride,
                bottleneck=bottleneck,
            )
            size = conv_output_size(size, kernel_size, stride, kernel_size // 2)
            in_channels = out_channels
        if attention == "se":
            layers.append(SqueezeExcite(out_channels, se_ratio))
        if halves and pool != "conv":
            layers.append(make_pool(pool))
            size = conv_output_size(size, 2, 2)
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)


def register_plain_family(
    name: str, *, stages: tuple[int, ...], default_kernel: str, description: str
) -> ModelFactory:
    """Register `name`: a plain network of `stages` whose `kernel = "auto"` is `default_kernel`.

    simple_cnn and vgg differ only in these two; `description` is the family's one-line summary.
    """

    def factory(
        *,
        norm: str,
        num_classes: int = 10,
        width: float = 1.0,
        dropout: float = 0.0,
        head: str = "gap",
        pool: str = "auto",
        kernel: str = "auto",
        bottleneck: float = 0.0,
        attention: str = "none",
        se_ratio: int = 8,
    ) -> nn.Module:
        kernel = default_kernel if kernel == "auto" else kernel
        check_choice("kernel", kernel, KERNELS[1:])
        return plain_network(
            stages=stages,
            kernels=_STAGE_KERNELS[kernel],
            pool=resolve_pool(name, pool),
            norm=norm,
            num_classes=num_classes,
            width=width,
            dropout=dropout,
            head=head,
            bottleneck=bottleneck,
            attention=attention,
            se_ratio=se_ratio,
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = description
    return register_model(name)(factory)

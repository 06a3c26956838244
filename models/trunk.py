"""The skeleton of resnet and mobilenet: a 3x3 conv stem, a chain of blocks, then the head, with
the downsampling choice (`pool`) applied where a block halves the feature maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from models.layers import IMAGE_SIZE, ConvNormAct, conv_output_size, make_head, make_pool

# `make_block(in_channels, out_channels, stride=...)`: a block whose first conv is 3x3 with
# padding 1 and whose later convs keep the size (what the size bookkeeping assumes).
BlockMaker = Callable[..., nn.Module]


def block_network(
    *,
    stem: int,
    blocks: Sequence[tuple[int, bool]],
    make_block: BlockMaker,
    pool: str,
    norm: str,
    head: str,
    num_classes: int,
    dropout: float,
) -> nn.Sequential:
    """Stem of `stem` channels, one block per (output channels, halves the maps) of `blocks`,
    then the head; `pool` is resolved (max, avg or conv).

    `conv`: a halving block convolves with stride 2; max/avg: a 2x2 pooling layer halves the
    maps before that block, which then keeps stride 1.
    """
    layers: list[nn.Module] = [ConvNormAct(3, stem, 3, norm=norm)]
    in_channels, size = stem, IMAGE_SIZE
    for out_channels, halves in blocks:
        if halves and pool != "conv":
            layers.append(make_pool(pool))
            size = conv_output_size(size, 2, 2)
        stride = 2 if halves and pool == "conv" else 1
        layers.append(make_block(in_channels, out_channels, stride=stride))
        size = conv_output_size(size, 3, stride, 1)
        in_channels = out_channels
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)

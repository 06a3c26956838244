"""A compact CNN in the shape of the small hand-tuned CIFAR recipes (airbench's family): one 3x3
conv per stage, 32/64/128 channels each followed by 2x2 pooling, one more 128-channel conv at 4x4,
then the head. A third of vgg's multiply-adds for the same widths, so a short budget trains it
for more epochs or at a larger `width`."""

from __future__ import annotations

from torch import nn

from models.layers import resolve_pool
from models.registry import register_model
from models.stages import plain_network

_STAGES = (32, 64, 128, 128)
_DOWNSAMPLED = 3  # the last stage works at 4x4


@register_model("compact")
def compact(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
    pool: str = "auto",
    bottleneck: float = 0.0,
    attention: str = "none",
    se_ratio: int = 8,
) -> nn.Module:
    """Four conv3x3 -> norm -> ReLU stages (32, 64, 128, 128), pooled after the first three."""
    return plain_network(
        stages=_STAGES,
        kernels=(3,),
        pool=resolve_pool("compact", pool),
        norm=norm,
        num_classes=num_classes,
        width=width,
        dropout=dropout,
        head=head,
        bottleneck=bottleneck,
        attention=attention,
        se_ratio=se_ratio,
        downsampled=_DOWNSAMPLED,
    )

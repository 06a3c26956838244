"""VGG-style network: stages of two 3x3 convolutions (a 5x5 receptive field, fewer weights)."""

from __future__ import annotations

from torch import nn

from models.layers import resolve_pool
from models.registry import register_model
from models.stages import plain_network

_STAGES = (32, 64, 128)


@register_model("vgg")
def vgg(
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
    """Three stages of (conv3x3 -> norm -> ReLU) x 2 -> maxpool, then a linear head."""
    return plain_network(
        stages=_STAGES,
        kernel="3x3" if kernel == "auto" else kernel,
        pool=resolve_pool("vgg", pool),
        norm=norm,
        num_classes=num_classes,
        width=width,
        dropout=dropout,
        head=head,
        bottleneck=bottleneck,
        attention=attention,
        se_ratio=se_ratio,
    )

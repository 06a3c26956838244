"""The classic CIFAR tutorial network: 5x5 convolutions, each followed by 2x2 max pooling."""

from __future__ import annotations

from torch import nn

from models.layers import resolve_pool
from models.registry import register_model
from models.stages import plain_network

_CHANNELS = (32, 64, 128)


@register_model("simple_cnn")
def simple_cnn(
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
    """Three conv5x5 -> norm -> ReLU -> maxpool blocks and a linear head."""
    return plain_network(
        stages=_CHANNELS,
        kernel="5x5" if kernel == "auto" else kernel,
        pool=resolve_pool("simple_cnn", pool),
        norm=norm,
        num_classes=num_classes,
        width=width,
        dropout=dropout,
        head=head,
        bottleneck=bottleneck,
        attention=attention,
        se_ratio=se_ratio,
    )

"""Building blocks shared by the model families: conv-norm-activation and the classifier head."""

from __future__ import annotations

from torch import nn

from models.catalog import HEADS
from models.norm import conv_bias, make_norm


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a conv or pool: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


class ConvNormAct(nn.Sequential):
    """Conv -> norm -> ReLU: the unit every family is built from (and BatchNorm folding sees)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        norm: str,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=conv_bias(norm),
            ),
            make_norm(norm, out_channels),
        )
        if activation:
            self.append(nn.ReLU(inplace=True))


def make_head(
    kind: str, *, channels: int, spatial: int, num_classes: int, dropout: float
) -> nn.Sequential:
    """Classifier: `gap` pools each map to one value; `flatten` keeps all channels*spatial**2."""
    if kind == "gap":
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )
    if kind == "flatten":
        return nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * spatial * spatial, num_classes),
        )
    raise ValueError(f"unknown head {kind!r}; allowed: {', '.join(HEADS)}")

"""CIFAR ResNet (He et al., 2016): three stages of basic blocks, depth = 6n + 2."""

from __future__ import annotations

from torch import Tensor, nn

from models.layers import ConvNormAct, conv_output_size, make_head
from models.norm import scaled
from models.registry import register_model

_STAGES = (16, 32, 64)
_IMAGE_SIZE = 32


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers plus a shortcut (identity, or 1x1 conv-norm when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(in_channels, out_channels, 3, norm=norm, stride=stride),
            ConvNormAct(out_channels, out_channels, 3, norm=norm, activation=False),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNormAct(
                in_channels, out_channels, 1, norm=norm, stride=stride, activation=False
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


@register_model("resnet")
def resnet(
    *,
    norm: str,
    num_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.0,
    head: str = "gap",
    depth: int = 14,
) -> nn.Module:
    """CIFAR ResNet with basic blocks; `depth` is 6n+2 (8, 14, 20, 32, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
    blocks_per_stage = (depth - 2) // 6
    channels = [scaled(c, width) for c in _STAGES]
    layers: list[nn.Module] = [ConvNormAct(3, channels[0], 3, norm=norm)]
    in_channels, size = channels[0], _IMAGE_SIZE
    for stage, out_channels in enumerate(channels):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(in_channels, out_channels, stride=stride, norm=norm))
            size = conv_output_size(size, 3, stride, 1)
            in_channels = out_channels
    layers.append(
        make_head(
            head, channels=in_channels, spatial=size, num_classes=num_classes, dropout=dropout
        )
    )
    return nn.Sequential(*layers)

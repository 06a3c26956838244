"""CIFAR ResNet (He et al., 2016): three stages of basic blocks, depth = 6n + 2."""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from models.layers import ConvNormAct, SqueezeExcite, bottlenecked, check_attention, resolve_pool
from models.norm import scaled
from models.registry import register_model
from models.trunk import block_network

_STAGES = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers plus a shortcut (identity, or 1x1 conv-norm when shapes change).

    Each 3x3 conv may sit behind a 1x1 bottleneck (`bottleneck` > 0), and squeeze-and-excitation
    (`se_ratio`) may scale the body's channels before the shortcut is added (SE-ResNet).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        norm: str,
        bottleneck: float = 0.0,
        se_ratio: int | None = None,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *bottlenecked(
                in_channels, out_channels, 3, norm=norm, stride=stride, bottleneck=bottleneck
            ),
            *bottlenecked(
                out_channels, out_channels, 3, norm=norm, bottleneck=bottleneck, activation=False
            ),
        )
        if se_ratio is not None:
            self.body.append(SqueezeExcite(out_channels, se_ratio))
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
    pool: str = "auto",
    bottleneck: float = 0.0,
    attention: str = "none",
    se_ratio: int = 8,
) -> nn.Module:
    """CIFAR ResNet with basic blocks; `depth` is 6n+2 (8, 14, 20, 32, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
    check_attention(attention, se_ratio)
    blocks_per_stage = (depth - 2) // 6
    channels = [scaled(c, width) for c in _STAGES]
    return block_network(
        stem=channels[0],
        # The first block of every stage but the first halves the maps (He et al.).
        blocks=[
            (out_channels, stage > 0 and block == 0)
            for stage, out_channels in enumerate(channels)
            for block in range(blocks_per_stage)
        ],
        make_block=partial(
            BasicBlock,
            norm=norm,
            bottleneck=bottleneck,
            se_ratio=se_ratio if attention == "se" else None,
        ),
        pool=resolve_pool("resnet", pool),
        norm=norm,
        head=head,
        num_classes=num_classes,
        dropout=dropout,
    )

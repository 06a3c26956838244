"""Building blocks shared by the model families: conv-norm-activation, the downsampling choices,
the 1x1 bottleneck, squeeze-and-excitation and the classifier head."""

from __future__ import annotations

from torch import Tensor, nn

from models.catalog import ACTIVATIONS, ATTENTIONS, FAMILY_POOL, HEADS, POOLS
from models.norm import conv_bias, make_norm, scaled

# Side of the square images every family is built for (CIFAR).
IMAGE_SIZE = 32
# Squeeze-and-excitation never squeezes below this many hidden units (narrow CIFAR layers).
_MIN_SE_HIDDEN = 8


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a conv or pool: floor((size + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def check_choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    """ValueError naming the allowed values when `value` is not one of them."""
    if value not in allowed:
        raise ValueError(f"unknown {option} {value!r}; allowed: {', '.join(allowed)}")


def resolve_pool(family: str, pool: str) -> str:
    """The family's downsampling for `pool`: `auto` is the family's own (max, avg or conv)."""
    check_choice("pool", pool, POOLS)
    return FAMILY_POOL[family] if pool == "auto" else pool


def check_attention(attention: str, se_ratio: int) -> None:
    """ValueError for an unknown attention or a squeeze-and-excitation ratio below 1."""
    check_choice("attention", attention, ATTENTIONS)
    if se_ratio < 1:
        raise ValueError(f"se_ratio must be at least 1, got {se_ratio}")


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


def make_pool(kind: str) -> nn.Module:
    """A 2x2, stride-2 pooling layer: `max` or `avg`."""
    if kind == "max":
        return nn.MaxPool2d(2)
    if kind == "avg":
        return nn.AvgPool2d(2)
    raise ValueError(f"no pooling layer for pool {kind!r}; allowed: max, avg")


def reduced_channels(in_channels: int, ratio: float) -> int | None:
    """Channels a 1x1 bottleneck cuts `in_channels` to (`ratio` of them, a multiple of 8), or
    None where it would not cut any: `ratio` 0, or a narrow input such as the RGB image."""
    if ratio < 0 or ratio > 1:
        raise ValueError(f"bottleneck must be a ratio in [0, 1], got {ratio}")
    if ratio == 0:
        return None
    reduced = scaled(in_channels, ratio)
    return reduced if reduced < in_channels else None


def bottlenecked(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    norm: str,
    stride: int = 1,
    bottleneck: float = 0.0,
    activation: bool = True,
) -> list[nn.Module]:
    """A k x k ConvNormAct, preceded by a 1x1 ConvNormAct that cuts its input channels to
    `bottleneck` of them where that cuts any (the k x k conv then costs that much less)."""
    layers: list[nn.Module] = []
    reduced = reduced_channels(in_channels, bottleneck)
    if reduced is not None:
        layers.append(ConvNormAct(in_channels, reduced, 1, norm=norm))
        in_channels = reduced
    layers.append(
        ConvNormAct(
            in_channels, out_channels, kernel_size, norm=norm, stride=stride, activation=activation
        )
    )
    return layers


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): each channel scaled by a gate in (0, 1) computed
    from the global means of all channels (hidden units: channels / ratio, at least 8)."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        hidden = min(channels, max(_MIN_SE_HIDDEN, channels // ratio))
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


def make_activation(kind: str) -> nn.Module:
    """The nonlinearity named `kind` (never in place: a family may read its input again)."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "gelu":
        return nn.GELU()
    if kind == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {kind!r}; allowed: {', '.join(ACTIVATIONS)}")


def use_activation(model: nn.Module, kind: str) -> nn.Module:
    """`model` with every ReLU module replaced by the activation `kind` (in place; returned).

    Families are written with ReLU; swapping the modules afterwards gives every family every
    activation without a parameter threaded through each block. ReLU stays as built."""
    check_choice("activation", kind, ACTIVATIONS)
    if kind == "relu":
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, make_activation(kind))
    return model


def make_head(
    kind: str, *, channels: int, spatial: int, num_classes: int, dropout: float
) -> nn.Sequential:
    """Classifier: `gap`/`gmp` pool each map to its mean/max; `flatten` keeps all
    channels*spatial**2."""
    if kind in ("gap", "gmp"):
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if kind == "gap" else nn.AdaptiveMaxPool2d(1),
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

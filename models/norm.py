"""Normalization-layer factory shared by every model family."""

from __future__ import annotations

import math

from torch import nn

from models.catalog import NORMS

# GroupNorm with 32 groups is the usual choice (Wu & He, 2018); narrow layers get fewer groups.
_MAX_GROUPS = 32


def make_norm(
    kind: str,
    num_features: int,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = True,
    track_running_stats: bool = True,
) -> nn.Module:
    """A 2-d norm layer of `kind` over `num_features` feature maps (after conv, before ReLU).

    The keywords are BatchNorm2d's, as a network of one's own may pass them to its
    `norm_layer` (`norm_layer(c, eps=1e-3, momentum=0.01)`, as EfficientNets do;
    `norm_layer(num_features=c, affine=False)`): `eps` and `affine` go to every norm,
    `momentum` and `track_running_stats` to BatchNorm only, which keeps running statistics."""
    channels = num_features
    if kind == "batch":
        return nn.BatchNorm2d(
            channels,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
        )
    if kind == "group":
        return nn.GroupNorm(math.gcd(_MAX_GROUPS, channels), channels, eps=eps, affine=affine)
    if kind == "layer":
        # LayerNorm over (C, H, W) for conv features is GroupNorm with one group.
        return nn.GroupNorm(1, channels, eps=eps, affine=affine)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, eps=eps, affine=affine)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; allowed: {', '.join(NORMS)}")


def conv_bias(kind: str) -> bool:
    """Whether a conv before this norm needs its own bias (every norm but 'none' has a shift)."""
    return kind == "none"


def scaled(channels: int, width: float) -> int:
    """Channel count scaled by the width multiplier, at least 8 and a multiple of 8."""
    return max(8, int(round(channels * width / 8)) * 8)

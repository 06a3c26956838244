"""What the model families are called and which options they take: plain data, no torch.

The study spec is validated against these names before anything heavy is imported, so a bad
spec fails in milliseconds. Each family's module registers its factory with `@register_model`;
`FAMILIES` says which module that is, and the registry imports it the first time it is used.
"""

from __future__ import annotations

NORMS: tuple[str, ...] = ("batch", "group", "layer", "instance", "none")
# The head's global pooling: gap = average, gmp = max (as in airbench); flatten keeps the maps.
HEADS: tuple[str, ...] = ("gap", "gmp", "flatten")
# The nonlinearity after each norm layer (every ReLU of a family is this one).
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu")
# How a family halves the feature maps: `auto` is the family's own way (see FAMILY_POOL).
POOLS: tuple[str, ...] = ("auto", "max", "avg", "conv")
# Convolutions of a VGG-style stage: two stacked 3x3 or one 5x5 (the same receptive field).
KERNELS: tuple[str, ...] = ("auto", "3x3", "5x5")
ATTENTIONS: tuple[str, ...] = ("none", "se")
# DenseNet's unit order: pre-activation (norm -> ReLU -> conv) or post (conv -> norm -> ReLU).
DENSE_ORDERS: tuple[str, ...] = ("pre", "post")

# Registry name -> the module whose `@register_model` defines it.
FAMILIES: dict[str, str] = {
    "compact": "models.compact",
    "densenet": "models.densenet",
    "mobilenet": "models.mobilenet",
    "resnet": "models.resnet",
    "simple_cnn": "models.simple_cnn",
    "vgg": "models.vgg",
}

# The options each family takes besides norm, num_classes, width, dropout and head. A [search]
# key naming one applies only to the families listed here; any other family refuses it.
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {
    "compact": ("pool", "bottleneck", "attention", "se_ratio"),
    "densenet": (
        "pool",
        "bottleneck",
        "attention",
        "se_ratio",
        "growth_rate",
        "dense_layers",
        "compression",
        "dense_order",
    ),
    "mobilenet": ("pool", "attention", "se_ratio"),
    "resnet": ("depth", "pool", "bottleneck", "attention", "se_ratio"),
    "simple_cnn": ("pool", "kernel", "bottleneck", "attention", "se_ratio"),
    "vgg": ("pool", "kernel", "bottleneck", "attention", "se_ratio"),
}

# What `pool = "auto"` means in each family: how it downsampled before the choice existed.
FAMILY_POOL: dict[str, str] = {
    "compact": "max",
    "densenet": "avg",
    "mobilenet": "conv",
    "resnet": "conv",
    "simple_cnn": "max",
    "vgg": "max",
}


def family_names() -> list[str]:
    """Names of every model family, sorted."""
    return sorted(FAMILIES)


def families_with(option: str) -> tuple[str, ...]:
    """The families (sorted) that take `option`."""
    return tuple(name for name in family_names() if option in FAMILY_OPTIONS[name])

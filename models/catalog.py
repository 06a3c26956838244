"""What the model families are called and which options they take: plain data, no torch.

The study spec is validated against these names before anything heavy is imported, so a bad
spec fails in milliseconds. Each family's module registers its factory with `@register_model`;
`FAMILIES` says which module that is, and the registry imports it the first time it is used.
"""

from __future__ import annotations

NORMS: tuple[str, ...] = ("batch", "group", "layer", "instance", "none")
HEADS: tuple[str, ...] = ("gap", "flatten")

# Registry name -> the module whose `@register_model` defines it.
FAMILIES: dict[str, str] = {
    "mobilenet": "models.mobilenet",
    "resnet": "models.resnet",
    "simple_cnn": "models.simple_cnn",
    "vgg": "models.vgg",
}


def family_names() -> list[str]:
    """Names of every model family, sorted."""
    return sorted(FAMILIES)

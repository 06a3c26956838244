"""VGG-style network: stages of two 3x3 convolutions (a 5x5 receptive field, fewer weights)."""

from __future__ import annotations

from models.stages import register_plain_family

vgg = register_plain_family(
    "vgg",
    stages=(32, 64, 128),
    default_kernel="3x3",
    description="Three stages of (conv3x3 -> norm -> ReLU) x 2 -> maxpool, then a linear head.",
)

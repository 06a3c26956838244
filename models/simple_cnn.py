"""The classic CIFAR tutorial network: 5x5 convolutions, each followed by 2x2 max pooling."""

from __future__ import annotations

from models.stages import register_plain_family

simple_cnn = register_plain_family(
    "simple_cnn",
    stages=(32, 64, 128),
    default_kernel="5x5",
    description="Three conv5x5 -> norm -> ReLU -> maxpool blocks and a linear head.",
)

"""A trial's network: built from its configuration, and trained with the [train] section's
settings and seeds."""

from __future__ import annotations

import torch
from torch import nn

import models
from hpo.core.spec import TrainSection
from hpo.core.trial_config import TrialConfig
from hpo.train.data import TensorDataset
from hpo.train.loop import EpochCallback, TrainResult, train


def build_network(config: TrialConfig, num_classes: int) -> nn.Module:
    """The trial's architecture, untrained."""
    return models.build_model(
        config.model, norm=config.norm, num_classes=num_classes, **config.model_kwargs()
    )


def seeded_network(
    config: TrialConfig, section: TrainSection, num_classes: int, device: torch.device
) -> nn.Module:
    """The configured network, initialized from the section's seed, on `device`."""
    torch.manual_seed(section.seed)
    return build_network(config, num_classes).to(device)


def train_network(
    model: nn.Module,
    config: TrialConfig,
    section: TrainSection,
    data: TensorDataset,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a network made by `seeded_network` with the section's training settings."""
    return train(
        model,
        data,
        config,
        epochs=section.epochs,
        seed=section.seed,
        augment_batches=section.augment,
        on_epoch=on_epoch,
    )


def train_model(
    config: TrialConfig,
    section: TrainSection,
    data: TensorDataset,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Build the configured network and train it with the section's seeds. Raises Diverged."""
    model = seeded_network(config, section, data.num_classes, device)
    return model, train_network(model, config, section, data, on_epoch)

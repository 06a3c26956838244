"""A trial's network: built from its configuration, and trained with the spec's seeds."""

from __future__ import annotations

import torch
from torch import nn

import models
from hpo.core.spec import Spec
from hpo.core.trial_config import TrialConfig
from hpo.train.data import TensorDataset
from hpo.train.loop import EpochCallback, TrainResult, train


def build_network(config: TrialConfig, num_classes: int) -> nn.Module:
    """The trial's architecture, untrained."""
    return models.build_model(
        config.model, norm=config.norm, num_classes=num_classes, **config.model_kwargs()
    )


def seeded_network(
    config: TrialConfig, spec: Spec, num_classes: int, device: torch.device
) -> nn.Module:
    """The configured network, initialized from the spec's seed, on `device`."""
    torch.manual_seed(spec.train.seed)
    return build_network(config, num_classes).to(device)


def train_network(
    model: nn.Module,
    config: TrialConfig,
    spec: Spec,
    data: TensorDataset,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a network made by `seeded_network` with the spec's training settings."""
    return train(
        model,
        data,
        config,
        epochs=spec.train.epochs,
        seed=spec.train.seed,
        augment_batches=spec.train.augment,
        on_epoch=on_epoch,
    )


def train_model(
    config: TrialConfig,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Build the configured network and train it with the spec's seeds. Raises Diverged."""
    model = seeded_network(config, spec, data.num_classes, device)
    return model, train_network(model, config, spec, data, on_epoch)

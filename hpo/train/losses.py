"""Training criteria for single-label classification: the `loss` names a spec may use.

Each criterion takes the network's logits (N x C) and the class indices (N) and returns the
mean loss. Those that compare probabilities or one-hot targets are computed in float32 (under
bf16 autocast the logits arrive in bf16, too coarse for a softmax compared with a one-hot).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional

from hpo.core.names import LOSSES
from hpo.core.trial_config import TrialConfig

Criterion = Callable[[Tensor, Tensor], Tensor]


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Float one-hot targets."""
    return functional.one_hot(labels.long(), num_classes).float()


def smoothed(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """Label-smoothed targets, as CrossEntropyLoss smooths them: (1 - s) one-hot + s / C."""
    return one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes


def make_criterion(config: TrialConfig) -> Criterion:
    """The criterion named by `config.loss` (label smoothing where it applies)."""
    name, smoothing = config.loss, config.label_smoothing or 0.0
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=smoothing)
    if name == "nll":
        nll = nn.NLLLoss()
        return lambda logits, labels: nll(functional.log_softmax(logits.float(), 1), labels)
    if name == "multi_margin":
        margin = nn.MultiMarginLoss()
        return lambda logits, labels: margin(logits.float(), labels)
    if name == "bce":
        bce = nn.BCEWithLogitsLoss()
        return lambda logits, labels: bce(logits.float(), one_hot(labels, logits.shape[1]))
    if name == "mse":
        mse = nn.MSELoss()
        return lambda logits, labels: mse(
            torch.softmax(logits.float(), 1), one_hot(labels, logits.shape[1])
        )
    if name == "kl":
        kl = nn.KLDivLoss(reduction="batchmean")  # "mean" would also divide by the classes

        def kl_to_smoothed(logits: Tensor, labels: Tensor) -> Tensor:
            targets = smoothed(labels, logits.shape[1], smoothing)
            return kl(functional.log_softmax(logits.float(), 1), targets)

        return kl_to_smoothed
    raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")

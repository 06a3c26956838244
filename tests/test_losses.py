"""Training criteria: each `loss` computes its textbook formula and trains through the loop."""

from __future__ import annotations

import pytest
import torch

from hpo.core.names import LOSSES
from hpo.core.trial_config import TrialConfig
from hpo.train.losses import Criterion, make_criterion


def criterion(loss: str, smoothing: float = 0.0) -> Criterion:
    config = TrialConfig.from_params({"loss": loss, "label_smoothing": smoothing})
    return make_criterion(config)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator) * 3
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    return logits, labels


def reference(loss: str, logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> float:
    """The criterion written out by hand, per its textbook definition."""
    n, classes = logits.shape
    onehot = torch.zeros(n, classes)
    onehot[torch.arange(n), labels] = 1.0
    smoothed = onehot * (1 - smoothing) + smoothing / classes
    log_q = logits.log_softmax(1)
    if loss == "cross_entropy":
        return float(-(smoothed * log_q).sum(1).mean())
    if loss == "nll":
        return float(-log_q[torch.arange(n), labels].mean())
    if loss == "multi_margin":
        correct = logits[torch.arange(n), labels].unsqueeze(1)
        hinge = (1 - correct + logits).clamp(min=0) * (1 - onehot)  # j != y only
        return float(hinge.sum(1).mean() / classes)
    if loss == "bce":
        p = logits.sigmoid()
        return float(-(onehot * p.log() + (1 - onehot) * (1 - p).log()).mean())
    if loss == "mse":
        return float(((logits.softmax(1) - onehot) ** 2).mean())
    assert loss == "kl"
    # KL(t || q) per sample (0 log 0 = 0), averaged over the batch.
    terms = torch.where(smoothed > 0, smoothed * (smoothed.log() - log_q), 0.0)
    return float(terms.sum(1).mean())


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_is_its_formula(loss: str, smoothing: float, batch) -> None:
    logits, labels = batch
    config = TrialConfig.from_params({"loss": loss, "label_smoothing": smoothing})
    # Smoothing applies to cross_entropy and kl only; the others never see it.
    used = config.label_smoothing or 0.0
    assert (used == smoothing) == (loss in ("cross_entropy", "kl") or smoothing == 0.0)
    value = float(make_criterion(config)(logits, labels))
    assert value == pytest.approx(reference(loss, logits, labels, used), rel=1e-5, abs=1e-6)


def test_kl_is_cross_entropy_minus_the_targets_entropy(batch) -> None:
    logits, labels = batch
    targets = torch.full((6, 5), 0.2 / 5)
    targets[torch.arange(6), labels] += 0.8
    entropy = float(-(targets * targets.log()).sum(1).mean())
    cross_entropy = float(criterion("cross_entropy", 0.2)(logits, labels))
    assert float(criterion("kl", 0.2)(logits, labels)) == pytest.approx(cross_entropy - entropy)
    # Without smoothing the targets are one-hot: KL, NLL and cross-entropy are one number.
    values = {float(criterion(name)(logits, labels)) for name in ("kl", "nll", "cross_entropy")}
    assert max(values) - min(values) < 1e-5


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_lowers_itself_by_gradient_steps(loss: str) -> None:
    torch.manual_seed(0)
    features, labels = torch.randn(32, 8), torch.randint(0, 4, (32,))
    model = torch.nn.Linear(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    compute = criterion(loss)
    first = compute(model(features), labels).item()
    for _ in range(30):
        optimizer.zero_grad()
        compute(model(features), labels).backward()
        optimizer.step()
    assert compute(model(features), labels).item() < first


def test_bf16_logits_are_compared_in_float32(batch) -> None:
    logits, labels = batch
    for loss in ("nll", "multi_margin", "bce", "mse", "kl"):
        value = criterion(loss)(logits.bfloat16(), labels)
        assert value.dtype == torch.float32, loss


def test_the_criteria_left_out_coincide_with_a_choice_on_one_label(batch) -> None:
    """What the README says of the torch.nn criteria that are not choices, on one-hot targets."""
    from torch import nn

    logits, labels = batch
    onehot = torch.nn.functional.one_hot(labels, 5).float()
    probabilities = logits.softmax(1)
    bce = criterion("bce")(logits, labels)
    torch.testing.assert_close(nn.SoftMarginLoss()(logits, 2 * onehot - 1), bce)
    torch.testing.assert_close(nn.MultiLabelSoftMarginLoss()(logits, onehot), bce)
    torch.testing.assert_close(nn.BCELoss()(logits.sigmoid(), onehot), bce)
    targets = torch.full((6, 5), -1)
    targets[:, 0] = labels  # one label, then the -1 that ends the list
    torch.testing.assert_close(
        nn.MultiLabelMarginLoss()(logits, targets), criterion("multi_margin")(logits, labels)
    )
    half_mse = criterion("mse")(logits, labels) / 2
    torch.testing.assert_close(nn.SmoothL1Loss()(probabilities, onehot), half_mse)
    torch.testing.assert_close(nn.HuberLoss()(probabilities, onehot), half_mse)
    true_class = probabilities[torch.arange(6), labels]
    torch.testing.assert_close(
        nn.L1Loss()(probabilities, onehot), (2 * (1 - true_class) / 5).mean()
    )

"""Training: all ten optimizers and all ten schedulers run; divergence is detected."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import models
from hpo.core.names import LOSSES, OPTIMIZERS, SCHEDULERS
from hpo.core.spec import DataSection
from hpo.core.trial_config import TrialConfig
from hpo.train.data import load_raw, prepare
from hpo.train.loop import Diverged, evaluate, memory_format_for, train
from hpo.train.optim import make_optimizer, make_scheduler


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("d") / "tiny.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, 80, dtype=np.uint8),
        x_test=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, 16, dtype=np.uint8),
    )
    section = DataSection(dataset=str(path), val_size=16)
    return prepare(load_raw(section), section, torch.device("cpu"))


def config(**params: object) -> TrialConfig:
    return TrialConfig.from_params({"model": "simple_cnn", "batch_size": 16, "lr": 0.01, **params})


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains(optimizer: str, tiny_data) -> None:
    torch.manual_seed(0)
    model = models.build_model("simple_cnn", norm="batch", width=0.25)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, tiny_data, config(optimizer=optimizer, lr=1e-3), epochs=1, seed=0)
    assert result.steps == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains(loss: str, tiny_data) -> None:
    torch.manual_seed(0)
    model = models.build_model("simple_cnn", norm="batch", width=0.25)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, tiny_data, config(loss=loss), epochs=1, seed=0)
    assert result.steps == 4 and result.final_loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_steps(scheduler: str) -> None:
    model = torch.nn.Linear(2, 2)
    cfg = config(scheduler=scheduler, optimizer="nesterov")
    optimizer = make_optimizer(cfg, list(model.parameters()))
    schedule = make_scheduler(cfg, optimizer, steps_per_epoch=10, epochs=3)
    rates = []
    for epoch in range(3):
        for _ in range(10):
            optimizer.step()
            schedule.after_batch()
            rates.append(optimizer.param_groups[0]["lr"])
        schedule.after_epoch(1.0 + epoch)  # a rising loss makes plateau decay
    assert all(r >= 0 for r in rates)
    assert len(set(rates)) > 1 or scheduler == "plateau"
    if scheduler == "plateau":
        assert optimizer.param_groups[0]["lr"] < cfg.lr


@pytest.mark.parametrize("warmup", [0.1, 0.5])
def test_onecycle_peaks_after_its_warmup_fraction(warmup: float) -> None:
    model = torch.nn.Linear(2, 2)
    cfg = config(scheduler="onecycle", optimizer="nesterov", lr=0.2, onecycle_warmup=warmup)
    optimizer = make_optimizer(cfg, list(model.parameters()))
    schedule = make_scheduler(cfg, optimizer, steps_per_epoch=10, epochs=10)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(100):
        optimizer.step()
        schedule.after_batch()
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) == pytest.approx(0.2)
    assert abs(rates.index(max(rates)) - warmup * 100) <= 1


@pytest.mark.parametrize("warmup", [0.1, 0.25, 0.3, 0.5])
@pytest.mark.parametrize("total", range(1, 13))
def test_onecycle_runs_over_a_few_steps(warmup: float, total: int) -> None:
    """A short trial (a small training set, a big batch) still gets its whole schedule."""
    model = torch.nn.Linear(2, 2)
    cfg = config(scheduler="onecycle", optimizer="nesterov", lr=0.2, onecycle_warmup=warmup)
    optimizer = make_optimizer(cfg, list(model.parameters()))
    schedule = make_scheduler(cfg, optimizer, steps_per_epoch=total, epochs=1)
    used = []  # the rate of each optimizer step
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_batch()
    assert all(0 < r <= 0.2 + 1e-12 for r in used)
    if total >= 3:  # room for a warm-up and a decay: the rate rises, then falls
        assert used[0] < max(used) > used[-1], used


def test_channels_last_only_for_norms_that_run_faster_in_it_on_cpu() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory_format_for(cpu, "batch") == torch.channels_last
    assert memory_format_for(cpu, "none") == torch.channels_last
    assert memory_format_for(cpu, "layer") == torch.channels_last
    assert memory_format_for(cpu, "group") == torch.contiguous_format
    assert memory_format_for(cpu, "instance") == torch.contiguous_format
    assert memory_format_for(cuda, "batch") == torch.contiguous_format


def test_channels_last_training_matches_nchw_and_returns_an_nchw_model(tiny_data) -> None:
    trained = {}
    for memory_format in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = models.build_model("simple_cnn", norm="batch", width=0.25)
        train(model, tiny_data, config(), epochs=1, seed=0, memory_format=memory_format)
        trained[memory_format] = model
    nchw, last = trained[torch.contiguous_format], trained[torch.channels_last]
    for a, b in zip(nchw.parameters(), last.parameters(), strict=True):
        assert b.is_contiguous()  # folding and export get the default layout back
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_train_picks_the_format_for_the_norm_and_restores_nchw_when_stopped(tiny_data) -> None:
    seen: dict[str, bool] = {}

    def stop_after_first_epoch(epoch: int, epochs: int, loss: float) -> None:
        weight = next(p for p in model.parameters() if p.dim() == 4)
        seen["channels_last"] = weight.is_contiguous(memory_format=torch.channels_last)
        seen["nchw"] = weight.is_contiguous()
        raise KeyboardInterrupt  # any exit from inside the loop: pruned, interrupted

    for norm, trains_channels_last in (("batch", True), ("group", False)):
        torch.manual_seed(0)
        model = models.build_model("simple_cnn", norm=norm, width=0.25)
        with pytest.raises(KeyboardInterrupt):
            train(
                model,
                tiny_data,
                config(norm=norm),
                epochs=2,
                seed=0,
                on_epoch=stop_after_first_epoch,
            )
        assert seen["channels_last"] is trains_channels_last
        assert seen["nchw"] is not trains_channels_last
        assert all(p.is_contiguous() for p in model.parameters())


class _Tutorial(torch.nn.Module):
    """PyTorch's CIFAR tutorial network with a BatchNorm: it `view`s its feature map as if it
    were contiguous, which channels-last memory is not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 5)
        self.bn = torch.nn.BatchNorm2d(6)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(6 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.view(-1, 6 * 14 * 14))


def test_a_network_that_views_its_maps_as_contiguous_trains_in_that_format(tiny_data) -> None:
    torch.manual_seed(0)
    model = _Tutorial()
    with pytest.raises(RuntimeError, match="view"):
        model(tiny_data.normalize(tiny_data.train.images[:2]).to(memory_format=torch.channels_last))
    statistics = model.bn.running_mean.clone()
    result = train(model, tiny_data, config(norm="batch"), epochs=1, seed=0)
    assert result.steps == 4 and math.isfinite(result.final_loss)
    assert not torch.equal(model.bn.running_mean, statistics), "it trained"
    assert all(p.is_contiguous() for p in model.parameters())


def test_divergence_is_detected(tiny_data) -> None:
    torch.manual_seed(0)
    model = models.build_model("simple_cnn", norm="none", width=0.25)
    with pytest.raises(Diverged, match="loss is"):
        train(
            model, tiny_data, config(optimizer="sgd", lr=1e6, scheduler="cosine"), epochs=3, seed=0
        )


def test_learns_on_the_real_sample(sample_path: Path) -> None:
    section = DataSection(dataset=str(sample_path), val_size=500, train_size=1500)
    data = prepare(load_raw(section), section, torch.device("cpu"))
    torch.manual_seed(0)
    model = models.build_model("vgg", norm="batch")
    train(
        model,
        data,
        config(model="vgg", optimizer="nesterov", lr=0.05, batch_size=128, scheduler="onecycle"),
        epochs=3,
        seed=0,
    )
    assert evaluate(model, data, data.val) > 0.25  # chance is 0.10

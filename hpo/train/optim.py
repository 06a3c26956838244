"""Optimizer and learning-rate schedule factories: the names a spec may use, as torch objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim import lr_scheduler

from hpo.core.trial_config import TrialConfig


def make_optimizer(config: TrialConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer named by the config, with its applicable settings."""
    name, lr, wd = config.optimizer, config.lr, config.weight_decay
    betas = (config.beta1 or 0.9, config.beta2 or 0.999)
    eps = config.eps or 1e-8
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name in ("sgd_momentum", "nesterov"):
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=config.momentum or 0.0,
            nesterov=name == "nesterov",
            weight_decay=wd,
        )
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum or 0.0, weight_decay=wd)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            params, lr=lr, betas=betas, eps=eps, weight_decay=wd, amsgrad=name == "amsgrad"
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


@dataclass
class Schedule:
    """A scheduler and how it is stepped: after every batch, or once per epoch on the loss."""

    scheduler: lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau
    per_epoch_on_loss: bool = False

    def after_batch(self) -> None:
        if not self.per_epoch_on_loss:
            self.scheduler.step()

    def after_epoch(self, mean_loss: float) -> None:
        if self.per_epoch_on_loss:
            self.scheduler.step(mean_loss)


def make_scheduler(
    config: TrialConfig, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, epochs: int
) -> Schedule:
    """The LR schedule named by the config.

    Every schedule but plateau steps once per batch, with its lengths given in epochs and
    converted to steps, so that even one-epoch trials see the whole shape of the schedule.
    """
    total = steps_per_epoch * epochs
    name = config.scheduler
    peak = config.lr * (config.max_lr_factor or 1.0)
    gamma = config.gamma or 0.5
    if name == "step":
        step = max(1, round((config.step_size or 1.0) * steps_per_epoch))
        return Schedule(lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma))
    if name == "multistep":
        milestones = sorted({max(1, int(total * f)) for f in (0.5, 0.75)})
        return Schedule(lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma))
    if name == "exponential":
        # `gamma` is the decay per epoch, spread evenly over its steps.
        per_step = gamma ** (1.0 / steps_per_epoch)
        return Schedule(lr_scheduler.ExponentialLR(optimizer, gamma=per_step))
    if name == "cosine":
        return Schedule(lr_scheduler.CosineAnnealingLR(optimizer, T_max=total))
    if name == "plateau":
        return Schedule(
            lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=gamma, patience=0),
            per_epoch_on_loss=True,
        )
    if name == "cyclic":
        return Schedule(
            lr_scheduler.CyclicLR(
                optimizer,
                base_lr=peak / 10,
                max_lr=peak,
                step_size_up=max(1, steps_per_epoch // 2),
                cycle_momentum=False,
            )
        )
    if name == "onecycle":
        return Schedule(
            lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=peak,
                total_steps=total,
                pct_start=_onecycle_warmup(config.onecycle_warmup or 0.3, total),
                cycle_momentum=False,
            )
        )
    if name == "cosine_warm_restarts":
        t0 = max(1, round((config.t0 or 1.0) * steps_per_epoch))
        return Schedule(
            lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=t0, T_mult=config.t_mult or 1)
        )
    if name == "lambda":
        warmup = max(1, int(total * (config.warmup_fraction or 0.0)))
        return Schedule(lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(warmup, total)))
    if name == "polynomial":
        return Schedule(
            lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=config.power or 1.0)
        )
    raise ValueError(f"unknown scheduler {name!r}")


def _warmup_then_linear(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _onecycle_warmup(warmup: float, total_steps: int) -> float:
    """The warm-up fraction OneCycleLR can run over `total_steps`.

    OneCycleLR divides by each phase's length in steps minus one, so a warm-up of exactly one
    step (e.g. 25 % of 4 steps) or a run of two steps divided by zero. A warm-up is at least two
    steps and leaves at least one for the decay; a run too short for that has none.
    """
    if total_steps < 3:
        return 0.0
    return min(max(warmup, 2 / total_steps), 1 - 1 / total_steps)

"""The training loop of one trial, and top-1 accuracy."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hpo.core.trial_config import TrialConfig
from hpo.train.data import Split, TensorDataset, augment
from hpo.train.losses import make_criterion
from hpo.train.optim import make_optimizer, make_scheduler

# Checking the loss forces a device sync; every few steps is enough to stop a diverged run early.
_DIVERGENCE_CHECK_EVERY = 25

# Norm layers that train faster in channels-last (NHWC) memory on CPU: oneDNN's convolutions and
# BatchNorm run NHWC natively. Measured by `benchmarks/throughput.py --formats` (one thread):
# 1.2-1.7x per step for batch and none, 1.1-1.4x for layer (GroupNorm with one group) across the
# families. InstanceNorm2d converts back to NCHW every layer (0.74-0.95x) and GroupNorm with
# several groups ran 0.77-1.2x, so both stay NCHW.
_CHANNELS_LAST_NORMS = frozenset({"batch", "layer", "none"})


def memory_format_for(device: torch.device, norm: str) -> torch.memory_format:
    """The memory format a network with `norm` trains fastest in on `device`."""
    # CUDA keeps the default: the channels-last speedup there was never measured on a GPU.
    if device.type == "cpu" and norm in _CHANNELS_LAST_NORMS:
        return torch.channels_last
    return torch.contiguous_format


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    epochs: int
    steps: int
    seconds: float
    images_per_second: float
    final_loss: float


# Called after each epoch with (epoch, epochs, mean training loss).
EpochCallback = Callable[[int, int, float], None]


def train(
    model: nn.Module,
    data: TensorDataset,
    config: TrialConfig,
    *,
    epochs: int,
    seed: int,
    augment_batches: bool = True,
    on_epoch: EpochCallback | None = None,
    memory_format: torch.memory_format | None = None,
) -> TrainResult:
    """Train `model` in place; raises Diverged when the loss stops being finite.

    Training runs in `memory_format` (default: `memory_format_for` the device and norm); the
    model is returned in the default format, as folding and export expect."""
    device = data.train.images.device
    memory_format = memory_format or memory_format_for(device, config.norm)
    if memory_format == torch.channels_last and not _runs_channels_last(model, data):
        memory_format = torch.contiguous_format
    model.to(memory_format=memory_format)
    try:
        return _train_epochs(
            model, data, config, epochs, seed, augment_batches, on_epoch, memory_format
        )
    finally:
        # Back to the default format on every exit (Diverged, pruned, interrupted included):
        # folding, export and evaluation expect it.
        model.to(memory_format=torch.contiguous_format)


def _runs_channels_last(model: nn.Module, data: TensorDataset) -> bool:
    """Whether `model` computes on channels-last images: a network of one's own may `view` its
    feature maps as if they were contiguous (`x.view(-1, 16 * 5 * 5)`, as PyTorch's CIFAR
    tutorial does), which raises on channels-last memory. One forward pass of two images in
    eval mode, so that no BatchNorm statistic moves."""
    images = data.normalize(data.train.images[:2]).contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.to(memory_format=torch.channels_last).eval()
    try:
        with torch.no_grad():
            model(images)
    except RuntimeError:
        return False
    finally:
        model.to(memory_format=torch.contiguous_format).train(was_training)
    return True


def _train_epochs(
    model: nn.Module,
    data: TensorDataset,
    config: TrialConfig,
    epochs: int,
    seed: int,
    augment_batches: bool,
    on_epoch: EpochCallback | None,
    memory_format: torch.memory_format,
) -> TrainResult:
    """The epochs of `train`, with the model already in `memory_format`."""
    device = data.train.images.device
    generator = torch.Generator().manual_seed(seed)
    n = len(data.train)
    batch_size = min(config.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the ragged last batch: BatchNorm hates batches of 1
    optimizer = make_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    schedule = make_scheduler(config, optimizer, steps_per_epoch=steps_per_epoch, epochs=epochs)
    criterion = make_criterion(config)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    start, steps, mean_loss = time.perf_counter(), 0, math.nan
    outside = 0.0  # seconds spent in the epoch callback: not training time
    for epoch in range(epochs):
        model.train()  # again each epoch: the epoch callback may have evaluated the model
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            images = data.normalize(data.train.images[index])
            if augment_batches:
                images = augment(images, generator, config.translate)
            images = images.contiguous(memory_format=memory_format)
            with autocast:
                loss = criterion(model(images), data.train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.after_batch()
            loss_sum += loss.detach().float()
            steps += 1
            if step % _DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                raise Diverged(f"loss is {loss_sum.item()} at epoch {epoch + 1}, step {step + 1}")
        mean_loss = loss_sum.item() / steps_per_epoch
        if not math.isfinite(mean_loss):
            raise Diverged(f"loss is {mean_loss} at the end of epoch {epoch + 1}")
        schedule.after_epoch(mean_loss)
        if on_epoch is not None:
            called = time.perf_counter()
            on_epoch(epoch + 1, epochs, mean_loss)
            outside += time.perf_counter() - called
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start - outside
    return TrainResult(epochs, steps, seconds, steps * batch_size / seconds, mean_loss)


@torch.inference_mode()
def evaluate(model: nn.Module, data: TensorDataset, split: Split, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` on `split`, in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(split), batch_size):
        images = data.normalize(split.images[start : start + batch_size])
        logits = model(images)
        correct += int((logits.argmax(1) == split.labels[start : start + batch_size]).sum())
    return correct / len(split)

"""Checkpoints: trained weights plus the input normalization, as a tensor-only dict.

`torch.load(weights_only=True)` reads them back, so loading a checkpoint never runs code.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn

from hpo.core.errors import HpoError


def checkpoint_bytes(
    model: nn.Module, mean: torch.Tensor, std: torch.Tensor, num_classes: int
) -> bytes:
    """The trained weights and input normalization as a tensor-only dict (weights_only-safe)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {
        "state_dict": state,
        "mean": mean.cpu(),
        "std": std.cpu(),
        "num_classes": num_classes,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def read_checkpoint(content: bytes, where: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint read back (tensors only: torch.load with weights_only=True); HpoError
    (one line) for content that is not one, cut short or damaged."""
    try:
        checkpoint = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged bytes (RuntimeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HpoError(f"{where} cannot be read ({first})") from None
    if not isinstance(checkpoint, dict) or not checkpoint.keys() >= _CHECKPOINT_KEYS:
        raise HpoError(f"{where} is not an hpo checkpoint")
    return checkpoint


# What `checkpoint_bytes` writes.
_CHECKPOINT_KEYS = {"state_dict", "mean", "std", "num_classes"}

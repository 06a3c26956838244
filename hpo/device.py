"""The device a study trains and times on, and the process settings fast CPU math needs."""

from __future__ import annotations

import torch

from hpo.core.errors import HpoError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def select_device(name: str) -> torch.device:
    """The device named by `[train] device`; asking for CUDA without one is an HpoError."""
    device = resolve_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HpoError("[train] device: cuda requested but no CUDA device; allowed here: auto, cpu")
    return device


def flush_denormals() -> None:
    """Treat denormal floats as zero (process-wide): they slowed CPU math 3-100x at random."""
    torch.set_flush_denormal(True)


def prepare_process(device: torch.device) -> None:
    """Settings for a process that trains on `device`, made once before the first trial."""
    # torch imports torch._dynamo (and triton) lazily when the first optimizer is built; a Ctrl-C
    # or SIGTERM in the middle of that import aborted the process (SIGABRT at exit). Import it
    # now, before any trial runs, so an interrupted trial always ends as FAIL and exits cleanly.
    import torch._dynamo  # noqa: F401

    if device.type == "cpu":
        flush_denormals()

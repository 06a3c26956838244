"""Latencies comparable across machines: a fixed reference network and a device fingerprint.

Raw milliseconds depend on the CPU, its clock and its load. Every worker therefore times a fixed,
seeded reference network in the same process, on the same backend, threads and protocol, in
rounds interleaved with the model's, and records `latency_ratio` = model / reference next to the
raw figure. The ratio cancels most of the machine's speed, so trials timed on different hardware
can be ranked together (`hpo best --rank-by latency_ratio`).
"""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any

import torch
from torch import nn

from hpo.measure.protocol import timing_conditions
from hpo.measure.runtimes import Runtime, backend_version, cpu_model, make_runtime

# Changing the reference network changes every ratio: bump the version with it, so ratios measured
# against different references are never mistaken for comparable ones.
REFERENCE_NAME = "reference-cnn-v1"
_REFERENCE_SEED = 20240601


def reference_network() -> nn.Module:
    """The fixed reference CNN: a small VGG-like stack (3x3 convs, pooling, a linear head)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(_REFERENCE_SEED)
        network = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
    finally:
        # Building the reference must not shift the seeded stream a trial relies on.
        torch.random.set_rng_state(generator_state)
    return network.eval()


@cache
def reference_runtime(backend: str, threads: int, device: str) -> Runtime:
    """The reference network prepared for `backend`, built once per process (export is slow)."""
    with timing_conditions(threads):
        return make_runtime(
            reference_network(), backend, threads=threads, device=torch.device(device)
        )


def device_fingerprint(backend: str, threads: int, device: torch.device) -> dict[str, Any]:
    """What the latency depends on besides the model: CPU, cores, threads, software, device."""
    fingerprint: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "threads": threads,
        "machine": platform.machine(),
        "torch_version": torch.__version__,
        "backend": backend_version(backend),
        "device": str(device),
        "reference": REFERENCE_NAME,
    }
    if device.type == "cuda":
        fingerprint["gpu"] = torch.cuda.get_device_name(device)
    return fingerprint

"""Latency probes: an architecture's latency, measured on its untrained, folded network.

Latency depends only on the architecture, never on the trained weights, so it is measured
before training, once per architecture and device. A probe times the folded network on the
study's runtime next to the reference network (the objective latency and its ratio); for an
architecture within the latency budget it also times the eager network unfused and folded (the
folding speedup). An architecture over the budget costs only the first part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from hpo.core.spec import LatencySection
from hpo.measure import calibration
from hpo.measure.fused import measure_fold_speedup, measure_objective_latency
from hpo.measure.fusion import fold_batchnorm
from hpo.measure.latency_result import LatencyResult
from hpo.measure.protocol import Protocol
from hpo.measure.runtimes import resolve_backend

# Weights of a probed network: fixed, so a probe never depends on the random stream.
_PROBE_SEED = 0


def probe_context(
    num_classes: int, section: LatencySection, device: torch.device
) -> dict[str, Any]:
    """What a probe's result depends on besides the architecture: head size, device
    (fingerprint: CPU, cores, threads, software, runtime) and the measurement protocol."""
    backend = resolve_backend(section.backend, device)
    return {
        "num_classes": num_classes,
        "fingerprint": calibration.device_fingerprint(backend, section.threads, device),
        "protocol": asdict(Protocol.from_section(section)),
    }


def probe_identity(architecture: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a probe's result depends on."""
    return {"architecture": dict(sorted(architecture.items())), **context}


def measure_network_latency(
    network: nn.Module,
    section: LatencySection,
    device: torch.device,
    max_latency: float | None = None,
) -> LatencyResult:
    """The latency of `network` (untrained is fine), timed folded; the folding speedup is
    measured too unless the latency is over `max_latency`."""
    unfused = network.eval().to(device)
    folded, _ = fold_batchnorm(unfused)
    result = measure_objective_latency(folded, section, device)
    if max_latency is None or result.median_ms <= max_latency:
        result = result.with_fold(measure_fold_speedup(unfused, folded, section, device))
    return result


def seeded(build: Any) -> nn.Module:
    """Build a network with fixed weights, leaving the caller's random stream as it was."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(_PROBE_SEED)
        return build()
    finally:
        torch.random.set_rng_state(state)

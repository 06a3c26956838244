"""Latency probes of a study's architectures on this worker's device, kept in the database.

A probe is measured once per architecture and device (any worker's probe serves every worker
with the same device fingerprint) and cached in this process too. The latency-aware sampler
uses `known()` and calls the probe for candidates; the trial calls `probe()` for its own
architecture before training.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from hpo.core.keys import digest
from hpo.core.spec import Spec
from hpo.core.trial_config import TrialConfig
from hpo.measure import calibration
from hpo.measure.latency_result import LatencyResult
from hpo.measure.probe import measure_network_latency, probe_context, probe_identity, seeded
from hpo.measure.runtimes import resolve_backend
from hpo.run.context import WorkerContext
from hpo.store import probes
from hpo.store.connect import StoredStudy
from hpo.store.hpo_tables import ensure_tables
from hpo.train.model import build_network
from models import user


def study_probe_context(spec: Spec, num_classes: int, device: torch.device) -> dict[str, Any]:
    """What the probes of `spec`'s architectures depend on besides the architecture
    (`probe_context`), and for a user's model factory its file: an edited file builds another
    network, whose latency the old one's probes must not give (probes outlive a study)."""
    context = probe_context(num_classes, spec.latency, device)
    if spec.model_ref is not None:
        context["model_factory_sha256"] = user.loaded(spec.model_ref).sha256
    return context


class StudyLatencies:
    """Latencies of a study's architectures (dicts of architecture params) on this worker's
    device: `probe()` gives an architecture's probe record, calling it gives the latency."""

    def __init__(
        self,
        stored: StoredStudy,
        spec: Spec,
        device: torch.device,
        num_classes: int,
        worker: str,
    ) -> None:
        self.stored = stored
        self.spec = spec
        self.device = device
        self.num_classes = num_classes
        self.worker = worker
        self.context = study_probe_context(spec, num_classes, device)
        self.context_key = digest(self.context)
        self._memory: dict[str, probes.ProbeRecord] = {}
        self.seconds = 0.0  # time spent measuring (not reading cached probes)
        ensure_tables(stored.storage)
        # The reference network is timed next to every probe; prepare it once, up front, so
        # no trial (e.g. an over-budget one, which must end fast) pays for its export.
        backend = resolve_backend(spec.latency.backend, device)
        calibration.reference_runtime(backend, spec.latency.threads, str(device))

    @classmethod
    def for_worker(cls, context: WorkerContext) -> StudyLatencies:
        return cls(
            context.stored,
            context.spec,
            context.device,
            context.data.num_classes,
            context.worker,
        )

    def probe(self, architecture: Mapping[str, Any]) -> probes.ProbeRecord:
        """The architecture's probe: from this process, from the database, or measured now."""
        canonical = TrialConfig.from_params(architecture).architecture()
        identity = probe_identity(canonical, self.context)
        key = digest(identity)
        if key in self._memory:
            return self._memory[key]
        result = probes.get_or_measure(
            self.stored.storage,
            key,
            identity,
            self.context_key,
            lambda: self._measure(canonical),
            self.worker,
        )
        if not result.cached:
            self.seconds += result.latency.probe_seconds or 0.0
        self._memory[key] = probes.ProbeRecord(result.latency, cached=True)
        return result

    def _measure(self, architecture: dict[str, Any]) -> LatencyResult:
        started = time.perf_counter()
        config = TrialConfig.from_params(architecture)
        network = seeded(lambda: build_network(config, self.num_classes))
        result = measure_network_latency(
            network, self.spec.latency, self.device, self.spec.study.max_latency_ms
        )
        return result.with_probe_seconds(time.perf_counter() - started)

    def known(self) -> list[tuple[dict[str, Any], float]]:
        """Every architecture probed on this device (by any worker) with its latency in ms."""
        return probes.known(self.stored.storage, self.context_key)

    def __call__(self, architecture: dict[str, Any]) -> float:
        return self.probe(architecture).latency_ms

"""A network's latency as one typed record, and its stored form (the trial's latency attributes).

A probe's result is stored in the database and recorded as trial user attributes as a flat dict
(`latency` holds the statistics, `speedup` sits next to it, ...). `LatencyResult` is that dict
typed: `from_attrs` reads it (every layout written so far, keys it does not know kept as they
are) and `as_attrs` writes it back unchanged, so old studies and probes read as before. It is a
read-only mapping of its stored form too, for code that records it as attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hpo.core.trial_attrs import (
    CPU_MODEL_ATTR,
    DEVICE_FINGERPRINT_ATTR,
    FUSED_EAGER_ATTR,
    LATENCY_ATTR,
    LATENCY_BACKEND_ATTR,
    LATENCY_DEVICE_ATTR,
    LATENCY_RATIO_ATTR,
    LATENCY_REFERENCE_ATTR,
    LATENCY_REFERENCE_MS_ATTR,
    PROBE_MEASURE_SECONDS_ATTR,
    SPEEDUP_ATTR,
    THREADS_ATTR,
    TORCH_VERSION_ATTR,
    UNFUSED_EAGER_ATTR,
)


@dataclass(frozen=True)
class FoldSpeedup:
    """Eager latency statistics of the unfused and the folded network, and their ratio."""

    unfused: dict[str, Any]
    folded: dict[str, Any]
    speedup: float


@dataclass(frozen=True)
class LatencyResult(Mapping[str, Any]):
    """The objective latency of a folded network, with what makes the figure meaningful.

    Fields other than `stats` are None where a layout did not record them; `fold` is None
    when the folding speedup was not measured (an architecture over the latency budget).
    """

    stats: dict[str, Any]  # LatencyStats.as_dict() of the timed runtime
    backend: str | None = None
    device: str | None = None
    ratio: float | None = None  # median / the reference network's median
    reference_ms: float | None = None
    reference: dict[str, Any] | None = None
    device_fingerprint: dict[str, Any] | None = None
    threads: int | None = None
    torch_version: str | None = None
    cpu_model: str | None = None
    fold: FoldSpeedup | None = None
    probe_seconds: float | None = None  # how long the probe took, where one measured it
    extra: dict[str, Any] = field(default_factory=dict)  # keys of layouts this one does not know

    @property
    def median_ms(self) -> float:
        """The objective: median latency in ms."""
        return float(self.stats["median_ms"])

    @property
    def iqr_ms(self) -> float:
        """The spread of the timed rounds (interquartile range, ms): latencies closer than
        this are equal for dominance."""
        return float(self.stats["iqr_ms"])

    def with_fold(self, fold: FoldSpeedup) -> LatencyResult:
        return replace(self, fold=fold)

    def with_probe_seconds(self, seconds: float) -> LatencyResult:
        return replace(self, probe_seconds=seconds)

    def as_attrs(self) -> dict[str, Any]:
        """The stored form: the attributes a trial records (and a probe row keeps)."""
        values: dict[str, Any] = {
            LATENCY_ATTR: self.stats,
            LATENCY_BACKEND_ATTR: self.backend,
            LATENCY_DEVICE_ATTR: self.device,
            LATENCY_RATIO_ATTR: self.ratio,
            LATENCY_REFERENCE_MS_ATTR: self.reference_ms,
            LATENCY_REFERENCE_ATTR: self.reference,
            DEVICE_FINGERPRINT_ATTR: self.device_fingerprint,
            THREADS_ATTR: self.threads,
            TORCH_VERSION_ATTR: self.torch_version,
            CPU_MODEL_ATTR: self.cpu_model,
        }
        if self.fold is not None:
            values[UNFUSED_EAGER_ATTR] = self.fold.unfused
            values[FUSED_EAGER_ATTR] = self.fold.folded
            values[SPEEDUP_ATTR] = self.fold.speedup
        values[PROBE_MEASURE_SECONDS_ATTR] = self.probe_seconds
        stored = {key: value for key, value in values.items() if value is not None}
        return {**stored, **self.extra}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> LatencyResult:
        """Read the stored form back (a probe row, or a trial's latency attributes)."""
        rest = dict(attrs)
        fold = None
        if SPEEDUP_ATTR in rest:
            fold = FoldSpeedup(
                rest.pop(UNFUSED_EAGER_ATTR, None) or {},
                rest.pop(FUSED_EAGER_ATTR, None) or {},
                float(rest.pop(SPEEDUP_ATTR)),
            )
        return cls(
            stats=dict(rest.pop(LATENCY_ATTR)),
            backend=rest.pop(LATENCY_BACKEND_ATTR, None),
            device=rest.pop(LATENCY_DEVICE_ATTR, None),
            ratio=rest.pop(LATENCY_RATIO_ATTR, None),
            reference_ms=rest.pop(LATENCY_REFERENCE_MS_ATTR, None),
            reference=rest.pop(LATENCY_REFERENCE_ATTR, None),
            device_fingerprint=rest.pop(DEVICE_FINGERPRINT_ATTR, None),
            threads=rest.pop(THREADS_ATTR, None),
            torch_version=rest.pop(TORCH_VERSION_ATTR, None),
            cpu_model=rest.pop(CPU_MODEL_ATTR, None),
            fold=fold,
            probe_seconds=rest.pop(PROBE_MEASURE_SECONDS_ATTR, None),
            extra=rest,
        )

    # Read-only mapping of the stored form.
    def __getitem__(self, key: str) -> Any:
        return self.as_attrs()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_attrs())

    def __len__(self) -> int:
        return len(self.as_attrs())

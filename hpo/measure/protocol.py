"""The latency measurement protocol: how single-image inference is timed.

Fixed intra-op thread count, denormals flushed, `torch.inference_mode()`, garbage collection off
while timing, warmup runs, then rounds of timed runs until the interquartile range is below
`target_iqr` of the median, `max_rounds` is reached or `max_seconds` have passed. Several
networks are compared by interleaving their rounds (A B A B ...), so load on a noisy machine hits
them alike; CUDA is synchronized after every run on a GPU. The defaults are the spec's `[latency]`
defaults.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from hpo.core.spec import LatencySection
from hpo.device import flush_denormals

Runner = Callable[[], object]
# The spec's [latency] defaults are the protocol's: one place to change them.
_SPEC_DEFAULTS = LatencySection()


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed runs, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    iqr_ms: float
    min_ms: float
    loops: int
    rounds: int

    @property
    def relative_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Protocol:
    """How long and how carefully to measure."""

    threads: int = _SPEC_DEFAULTS.threads
    warmup: int = _SPEC_DEFAULTS.warmup
    loops: int = _SPEC_DEFAULTS.loops
    max_rounds: int = _SPEC_DEFAULTS.max_rounds
    min_rounds: int = 2
    target_iqr: float = _SPEC_DEFAULTS.target_iqr
    max_seconds: float = _SPEC_DEFAULTS.max_seconds

    @classmethod
    def from_section(cls, section: LatencySection) -> Protocol:
        """The protocol configured by a spec's [latency] table."""
        return cls(
            threads=section.threads,
            warmup=section.warmup,
            loops=section.loops,
            max_rounds=section.max_rounds,
            target_iqr=section.target_iqr,
            max_seconds=section.max_seconds,
        )


def summarize(samples_ms: list[float], rounds: int = 1) -> LatencyStats:
    """Median, mean, std, p90 and IQR of the samples."""
    if not samples_ms:
        raise ValueError("no latency samples")
    q1, median, q3, p90 = np.percentile(samples_ms, [25, 50, 75, 90])
    return LatencyStats(
        median_ms=float(median),
        mean_ms=statistics.fmean(samples_ms),
        std_ms=statistics.pstdev(samples_ms),
        p90_ms=float(p90),
        iqr_ms=float(q3 - q1),
        min_ms=min(samples_ms),
        loops=len(samples_ms),
        rounds=rounds,
    )


@contextmanager
def timing_conditions(threads: int) -> Iterator[None]:
    """Fixed thread count, flushed denormals, GC off; everything restored afterwards.

    With the collector off no collection can fall inside a timed run; a full `gc.collect()`
    first is not needed for that, and took 0.45 s in a process with torch loaded.
    """
    previous_threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    torch.set_num_threads(threads)
    flush_denormals()
    gc.disable()
    try:
        yield
    finally:
        if gc_was_enabled:
            gc.enable()
        torch.set_num_threads(previous_threads)


def _time_round(run: Runner, loops: int, synchronize: Callable[[], None]) -> list[float]:
    samples = []
    for _ in range(loops):
        start = time.perf_counter_ns()
        run()
        synchronize()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _no_sync() -> None:
    return None


def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else _no_sync


def measure_rounds(
    runners: list[Runner], protocol: Protocol, device: torch.device | None = None
) -> list[list[list[float]]]:
    """Interleaved rounds (A B A B ...): for each runner, its samples (ms) round by round.

    Stops after `min_rounds` once every runner's IQR/median is within `target_iqr`, or when
    `max_rounds` is reached, or after the round in which `max_seconds` (warmup included) pass.
    """
    synchronize = _synchronizer(device or torch.device("cpu"))
    rounds: list[list[list[float]]] = [[] for _ in runners]
    with timing_conditions(protocol.threads):
        # The cap counts the warmup too: a slow network is timed for about max_seconds in all.
        deadline = time.perf_counter() + protocol.max_seconds
        for run in runners:
            for _ in range(protocol.warmup):
                run()
            synchronize()
        done = 0
        while done < protocol.max_rounds:
            for run, per_round in zip(runners, rounds, strict=True):
                per_round.append(_time_round(run, protocol.loops, synchronize))
            done += 1
            if time.perf_counter() > deadline:
                break  # checked after each round: one round at least
            if done < protocol.min_rounds:
                continue
            if all(summarize(_flat(r)).relative_iqr <= protocol.target_iqr for r in rounds):
                break
    return rounds


def _flat(rounds: list[list[float]]) -> list[float]:
    return [sample for samples in rounds for sample in samples]


def measure_runners(
    runners: list[Runner], protocol: Protocol, device: torch.device | None = None
) -> list[LatencyStats]:
    """Time several runners with interleaved rounds (A B A B ...); one LatencyStats each."""
    return [
        summarize(_flat(rounds), len(rounds))
        for rounds in measure_rounds(runners, protocol, device)
    ]

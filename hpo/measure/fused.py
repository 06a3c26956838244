"""The latency a trial records: its folded network on the study's runtime, with the context
that makes the figure meaningful (the reference-network ratio, the device fingerprint, the eager
speedup from folding), and the check that the timed graph computes what the network does."""

from __future__ import annotations

from typing import Any

import torch

from hpo.core.spec import LatencySection
from hpo.core.trial_attrs import BACKEND_MAX_ABS_DIFF_ATTR
from hpo.measure import calibration
from hpo.measure.fusion import check_outputs
from hpo.measure.latency_result import FoldSpeedup, LatencyResult
from hpo.measure.protocol import Protocol, measure_runners, timing_conditions
from hpo.measure.runtimes import (
    Runtime,
    backend_version,
    cpu_model,
    make_runtime,
    resolve_backend,
)


def runtime_of(folded: torch.nn.Module, section: LatencySection, device: torch.device) -> Runtime:
    """The folded network prepared for the spec's runtime (`auto` resolved for `device`)."""
    backend = resolve_backend(section.backend, device)
    with timing_conditions(section.threads):
        return make_runtime(folded, backend, threads=section.threads, device=device)


def measure_objective_latency(
    folded: torch.nn.Module, section: LatencySection, device: torch.device
) -> LatencyResult:
    """The objective latency (folded net, spec's runtime) and its ratio to the reference net.

    The two are timed in interleaved rounds (A B A B ...), so background load hits both alike;
    the ratio model / reference cancels most of the machine's speed.
    """
    backend = resolve_backend(section.backend, device)
    timed = runtime_of(folded, section, device)
    reference = calibration.reference_runtime(backend, section.threads, str(timed.device))
    stats, reference_stats = measure_runners(
        [timed.run, reference.run], Protocol.from_section(section), device
    )
    return LatencyResult(
        stats=stats.as_dict(),
        backend=backend_version(backend),
        device=str(timed.device),
        ratio=stats.median_ms / reference_stats.median_ms,
        reference_ms=reference_stats.median_ms,
        reference={"name": calibration.REFERENCE_NAME, **reference_stats.as_dict()},
        device_fingerprint=calibration.device_fingerprint(backend, section.threads, timed.device),
        threads=section.threads,
        torch_version=torch.__version__,
        cpu_model=cpu_model(),
    )


def measure_fold_speedup(
    unfused: torch.nn.Module,
    folded: torch.nn.Module,
    section: LatencySection,
    device: torch.device,
) -> FoldSpeedup:
    """Eager latency of the unfused and the folded net (interleaved) and their ratio."""
    with timing_conditions(section.threads):
        runners = [
            make_runtime(unfused, "eager", device=device).run,
            make_runtime(folded, "eager", device=device).run,
        ]
    unfused_stats, folded_stats = measure_runners(runners, Protocol.from_section(section), device)
    return FoldSpeedup(
        unfused=unfused_stats.as_dict(),
        folded=folded_stats.as_dict(),
        speedup=unfused_stats.median_ms / folded_stats.median_ms,
    )


def check_runtime_outputs(
    unfused: torch.nn.Module,
    folded: torch.nn.Module,
    section: LatencySection,
    device: torch.device,
    images: torch.Tensor,
) -> dict[str, Any]:
    """Check the graph the runtime times (traced, exported) computes what `unfused` does.

    Eager runs the folded module itself, already checked by the folding check; other runtimes
    run their own graph, checked here on a few images. Returns the max abs difference.
    """
    backend = resolve_backend(section.backend, device)
    if backend == "eager":
        return {}
    with torch.inference_mode():
        # Copies: a forward that changes its input in place must not change the other's.
        expected = unfused.eval()(images.to(device, copy=True))
    predicted = runtime_of(folded, section, device).predict(images.clone())
    return {
        BACKEND_MAX_ABS_DIFF_ATTR: check_outputs(
            expected.cpu(), predicted, what=f"the {backend} runtime"
        )
    }

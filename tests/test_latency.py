"""Latency: the statistics are right, and a real measurement behaves like one."""

from __future__ import annotations

import time
import warnings

import pytest
import torch

import models
from hpo.measure.fusion import check_outputs, fold_batchnorm
from hpo.measure.protocol import (
    LatencyStats,
    Protocol,
    _synchronizer,
    measure_runners,
    summarize,
    timing_conditions,
)
from hpo.measure.runtimes import make_runner, make_runtime, measure_latency, resolve_backend
from hpo.measure.serialize import onnx_bytes as export_onnx


def test_summary_statistics() -> None:
    stats = summarize([1.0, 2.0, 3.0, 4.0, 5.0], rounds=1)
    assert stats.median_ms == 3.0
    assert stats.mean_ms == 3.0
    assert stats.std_ms == pytest.approx(2**0.5)
    assert stats.iqr_ms == 2.0
    assert stats.p90_ms == pytest.approx(4.6)
    assert stats.min_ms == 1.0 and stats.loops == 5


def test_measure_latency_of_a_real_model() -> None:
    model = models.build_model("simple_cnn", norm="batch").eval()
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not the protocol's 1, so a missing restore shows
    try:
        stats = measure_latency(model, threads=1, warmup=3, loops=10, max_rounds=2)
        assert torch.get_num_threads() == 2  # thread count restored, not left at 1 forever
    finally:
        torch.set_num_threads(before)
    assert isinstance(stats, LatencyStats)
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert stats.loops >= 20 and stats.rounds >= 2


def test_bigger_model_is_slower_in_interleaved_rounds() -> None:
    small = models.build_model("simple_cnn", norm="none", width=0.25).eval()
    large = models.build_model("vgg", norm="none", width=2.0).eval()
    protocol = Protocol(warmup=3, loops=10, max_rounds=3)
    small_stats, large_stats = measure_runners(
        [make_runner(small, "eager"), make_runner(large, "eager")], protocol
    )
    assert large_stats.median_ms > small_stats.median_ms


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_other_backends_run(backend: str) -> None:
    model = models.build_model("simple_cnn", norm="batch").eval()
    stats = measure_latency(model, backend=backend, warmup=2, loops=5, max_rounds=2)
    assert stats.median_ms > 0


def test_timing_conditions_fix_threads_and_gc_then_restore() -> None:
    import gc

    before = torch.get_num_threads()
    with timing_conditions(1):
        assert torch.get_num_threads() == 1
        assert not gc.isenabled()
    assert torch.get_num_threads() == before and gc.isenabled()


def test_rounds_are_interleaved() -> None:
    calls: list[str] = []
    protocol = Protocol(warmup=1, loops=3, min_rounds=3, max_rounds=3, target_iqr=10.0)
    a, b = measure_runners([lambda: calls.append("A"), lambda: calls.append("B")], protocol)
    timed = calls[2:]  # after one warmup run of each
    assert timed == (["A"] * 3 + ["B"] * 3) * 3
    assert a.rounds == b.rounds == 3 and a.loops == b.loops == 9


def test_stops_when_stable_or_out_of_time() -> None:
    model = models.build_model("simple_cnn", norm="none", width=0.25).eval()
    run = make_runner(model, "eager")
    # Any spread is "stable" under a huge target: stops as soon as min_rounds allow.
    (stable,) = measure_runners([run], Protocol(warmup=1, loops=5, max_rounds=50, target_iqr=1e9))
    assert stable.rounds == 2
    # No spread is small enough under a zero target: only the time cap ends it, early.
    (capped,) = measure_runners(
        [run], Protocol(warmup=1, loops=5, max_rounds=10_000, target_iqr=0.0, max_seconds=0.2)
    )
    assert 1 <= capped.rounds < 10_000  # a loaded machine may pass the cap in one round


def test_the_time_cap_holds_for_a_slow_network() -> None:
    """Past `max_seconds` (warmup included) no round starts, even before min_rounds."""
    timed: list[float] = []

    def slow() -> None:
        time.sleep(0.02)
        timed.append(time.perf_counter())

    protocol = Protocol(warmup=5, loops=5, max_rounds=10, target_iqr=0.0, max_seconds=0.15)
    (capped,) = measure_runners([slow], protocol)
    assert capped.rounds == 1 and len(timed) == 5 + 5


def test_cuda_devices_are_synchronized() -> None:
    assert _synchronizer(torch.device("cuda")) is torch.cuda.synchronize
    assert _synchronizer(torch.device("cpu")) is not torch.cuda.synchronize


def test_auto_backend_resolves_by_device() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "onnxruntime"
    assert resolve_backend("auto", torch.device("cuda")) == "eager"
    assert resolve_backend("torchscript", torch.device("cuda")) == "torchscript"
    with pytest.raises(ValueError, match="allowed: auto, eager, torchscript, onnxruntime"):
        resolve_backend("tensorrt")


def test_export_leaves_the_model_alone() -> None:
    model = models.build_model("simple_cnn", norm="batch", width=0.25).train()
    onnx_bytes = export_onnx(model)
    assert onnx_bytes[:2] and model.training  # the caller's model is not switched to eval


def test_export_is_quiet_about_what_it_could_not_constant_fold() -> None:
    # Reflect padding exports as strided slices, which the exporter warns it cannot fold.
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("norm", models.NORMS)
@pytest.mark.parametrize("name", models.list_models())
def test_runtimes_compute_what_eager_computes(name: str, norm: str) -> None:
    torch.manual_seed(0)
    extra = {"depth": 8} if name == "resnet" else {}
    model = models.build_model(name, norm=norm, width=0.5, **extra).eval()
    folded, _ = fold_batchnorm(model)
    images = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        expected = model(images)
    backends = ["onnxruntime", "torchscript"] if norm in ("batch", "group") else ["onnxruntime"]
    for backend in backends:
        runtime = make_runtime(folded, backend)
        assert runtime.backend == backend
        check_outputs(expected, runtime.predict(images), what=backend)
        runtime.run()

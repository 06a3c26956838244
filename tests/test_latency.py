"""Latency: the statistics are right, and a real measurement behaves like one."""

from __future__ import annotations

import pytest
import torch

import models
from hpo.latency import (
    LatencyStats,
    Protocol,
    make_runner,
    measure_latency,
    measure_runners,
    summarize,
)


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
    stats = measure_latency(model, threads=1, warmup=3, loops=10, max_rounds=2)
    assert isinstance(stats, LatencyStats)
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
    assert stats.loops >= 20 and stats.rounds >= 2
    assert torch.get_num_threads() >= 1  # thread count restored, not left at 1 forever


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

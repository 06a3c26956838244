"""The typed latency result reads and writes the stored layout unchanged."""

from hpo.measure.latency_result import LatencyResult

STATS = {"median_ms": 0.5, "iqr_ms": 0.01, "loops": 50, "rounds": 3}


def test_a_stored_probe_reads_back_and_writes_the_same_attributes() -> None:
    stored = {
        "latency": STATS,
        "latency_backend": "eager (torch 2.x)",
        "latency_device": "cpu",
        "latency_ratio": 1.25,
        "latency_reference_ms": 0.4,
        "latency_reference": {"name": "reference", **STATS},
        "device_fingerprint": {"cpu_model": "some CPU"},
        "threads": 1,
        "torch_version": "2.x",
        "cpu_model": "some CPU",
        "latency_unfused_eager": STATS,
        "latency_fused_eager": STATS,
        "speedup": 1.5,
        "probe_seconds": 2.0,
    }
    result = LatencyResult.from_attrs(stored)
    assert result.as_attrs() == stored
    assert dict(result) == stored
    assert result.median_ms == 0.5 and result.fold is not None and result.fold.speedup == 1.5


def test_an_older_layout_keeps_its_keys_and_lacks_no_speedup_it_had() -> None:
    older = {"latency": STATS, "latency_ratio": 1.25, "something_older": [1, 2]}
    result = LatencyResult.from_attrs(older)
    assert result.as_attrs() == older
    assert result.fold is None and "speedup" not in result

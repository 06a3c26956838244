"""The layout of a trial's user attributes: rounded scalars for people, one `details` attribute."""

from __future__ import annotations

from hpo.core.trial_attrs import DETAILS_ATTR, flat, readable


def test_scalars_are_rounded_and_structures_gathered() -> None:
    attrs = {
        "test_accuracy": 0.5929203539823009,
        "n_params": 288746,
        "latency_backend": "onnxruntime 1.31.1",
        "latency": {"median_ms": 0.3981565, "iqr_ms": 0.0123456},
        "fold_report": {"n_folded": 6, "folded": [{"layer": "0.1"}]},
        "cost_layers": [{"layer": "0.0", "macs": 884736}],
        "config": {"model": "vgg", "lr": 0.0102149},
        "val_accuracy_curve": [0.2, 0.31],
        "probe_cached": True,
    }
    shown = readable(attrs)
    assert shown["test_accuracy"] == 0.5929 and shown["n_params"] == 288746
    assert shown["latency_iqr_ms"] == 0.01235 and shown["probe_cached"] is True
    # The rebuild recipe and the live curve stay attributes of their own, unrounded.
    assert shown["config"] == attrs["config"] and shown["val_accuracy_curve"] == [0.2, 0.31]
    assert set(shown[DETAILS_ATTR]) == {"latency", "fold_report", "cost_layers"}
    assert not any(
        isinstance(v, dict | list)
        for k, v in shown.items()
        if k in attrs and k not in ("config", "val_accuracy_curve")
    )
    assert flat(shown)["fold_report"] == attrs["fold_report"]


def test_flat_reads_studies_made_before_details_existed() -> None:
    old = {"test_accuracy": 0.5929203539823009, "fold_report": {"n_folded": 6}}
    assert flat(old) == old

"""The layout of a trial's attributes: rounded scalars for people, structures out of sight."""

from __future__ import annotations

from hpo.core.trial_attrs import (
    CONFIG_SYSTEM_ATTR,
    DETAIL_SYSTEM_PREFIX,
    flat,
    laid_out,
    stored_config,
)


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
    layout = laid_out(attrs)
    shown = layout.shown
    assert shown["test_accuracy"] == 0.5929 and shown["n_params"] == 288746
    assert shown["latency_iqr_ms"] == 0.01235 and shown["probe_cached"] is True
    # The live curve stays a user attribute, unrounded; every other structure is hidden.
    assert shown["val_accuracy_curve"] == [0.2, 0.31]
    assert not any(
        isinstance(v, dict | list) for k, v in shown.items() if k != "val_accuracy_curve"
    )
    assert set(layout.hidden) == {
        CONFIG_SYSTEM_ATTR,
        *(DETAIL_SYSTEM_PREFIX + k for k in ("latency", "fold_report", "cost_layers")),
    }
    merged = flat(shown, layout.hidden)
    assert merged["fold_report"] == attrs["fold_report"] and merged["config"] == attrs["config"]
    assert stored_config(shown, layout.hidden) == attrs["config"]


def test_flat_reads_studies_made_before_details_existed() -> None:
    old = {"test_accuracy": 0.5929203539823009, "fold_report": {"n_folded": 6}}
    assert flat(old) == old


def test_flat_reads_studies_that_gathered_structures_in_details() -> None:
    older = {
        "test_accuracy": 0.59,
        "details": {"fold_report": {"n_folded": 6}},
        "config": {"lr": 1},
    }
    assert flat(older) == {
        "test_accuracy": 0.59,
        "fold_report": {"n_folded": 6},
        "config": {"lr": 1},
    }
    assert stored_config(older) == {"lr": 1}


def test_reasons_show_their_head_and_keep_the_whole_sentence() -> None:
    reason = "stopped at epoch 1: accuracy 21.00% at 0.77 ms is dominated at rung 0"
    layout = laid_out({"stop_reason": reason, "fail_reason": "interrupted"})
    assert layout.shown == {"stop_reason": "stopped at epoch 1", "fail_reason": "interrupted"}
    assert flat(layout.shown, layout.hidden)["stop_reason"] == reason

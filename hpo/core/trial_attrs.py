"""What a trial records, laid out for people: short scalars as user attributes, structures
kept out of sight.

The dashboard shows every user attribute of a trial on its page and as a column of its trial
table. So each figure a person reads (accuracy, test accuracy, latency median and IQR, latency
ratio, size, MACs, folded/kept counts, times, why it stopped) is a scalar of its own, rounded to
4 significant digits. The structures (the configuration, the fold report, per-layer cost,
latency statistics per runtime, device fingerprint) are trial *system* attributes, which the
dashboard never lists: one line per trial in its table instead of a 550 px JSON cell. Older
studies kept them as user attributes (`config`, `details`, or one attribute per structure):
`flat` and `stored_config` read every layout alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Every attribute key a study or a trial stores, spelled here only.

# Study user attribute holding the spec as given (after overrides): workers read it from there.
SPEC_ATTR = "spec"

# Trial user attributes written while a trial runs.
CONFIG_ATTR = "config"  # the configuration's params, from which the trial is rebuilt
WORKER_ATTR = "worker"  # host:pid of the worker running the trial
# Trial system attribute: the grace period (s) of the worker running the trial.
GRACE_ATTR = "hpo:grace_period"
SUGGEST_SECONDS_ATTR = "suggest_seconds"
PROBE_CACHED_ATTR = "latency_probe_cached"
PROBE_SECONDS_ATTR = "latency_probe_seconds"  # the trial's wait for its probe
# The latency known before training, named like the objective it becomes.
LATENCY_MS_ATTR = "latency_ms"
# Validation accuracy after each epoch, rewritten while the trial trains, and the last epoch.
VAL_CURVE_ATTR = "val_accuracy_curve"
EPOCH_ATTR = "epoch"
RUNG_ATTR = "rung"
# Why a trial was stopped (PRUNED) or failed (FAIL); an unexpected error's traceback.
STOP_REASON_ATTR = "stop_reason"
FAIL_REASON_ATTR = "fail_reason"
TRACEBACK_ATTR = "traceback"
ARTIFACT_ERROR_ATTR = "artifact_error"

# Trial user attributes of a trained trial.
VAL_ACCURACY_ATTR = "val_accuracy"
TEST_ACCURACY_ATTR = "test_accuracy"
N_PARAMS_ATTR = "n_params"
TRAIN_SECONDS_ATTR = "train_seconds"
TRAIN_IMAGES_PER_SECOND_ATTR = "train_images_per_second"
FINAL_TRAIN_LOSS_ATTR = "final_train_loss"
FOLD_REPORT_ATTR = "fold_report"
N_FOLDED_ATTR = "n_folded"
N_KEPT_ATTR = "n_kept"
FOLD_MAX_ABS_DIFF_ATTR = "fold_max_abs_diff"
MACS_ATTR = "macs"
N_PARAMS_FOLDED_ATTR = "n_params_folded"
COST_LAYERS_ATTR = "cost_layers"
DATASET_ATTR = "dataset"

# Latency attributes (`hpo.measure.latency_result` converts them to and from a record).
LATENCY_ATTR = "latency"  # statistics of the objective latency
LATENCY_IQR_ATTR = "latency_iqr_ms"
LATENCY_BACKEND_ATTR = "latency_backend"
LATENCY_DEVICE_ATTR = "latency_device"
LATENCY_RATIO_ATTR = "latency_ratio"
LATENCY_REFERENCE_MS_ATTR = "latency_reference_ms"
LATENCY_REFERENCE_ATTR = "latency_reference"
DEVICE_FINGERPRINT_ATTR = "device_fingerprint"
THREADS_ATTR = "threads"
TORCH_VERSION_ATTR = "torch_version"
CPU_MODEL_ATTR = "cpu_model"
UNFUSED_EAGER_ATTR = "latency_unfused_eager"
FUSED_EAGER_ATTR = "latency_fused_eager"
SPEEDUP_ATTR = "speedup"
PROBE_MEASURE_SECONDS_ATTR = "probe_seconds"  # how long measuring the probe took
BACKEND_MAX_ABS_DIFF_ATTR = "latency_backend_max_abs_diff"

# The user attribute that held every structure in studies made before they became system
# attributes (read, never written).
DETAILS_ATTR = "details"
# Trial system attributes holding the structures: the configuration a trial is rebuilt from,
# and every other structure keyed by its attribute name (`hpo:detail:fold_report`, ...).
CONFIG_SYSTEM_ATTR = "hpo:config"
DETAIL_SYSTEM_PREFIX = "hpo:detail:"
# Every trial system attribute hpo writes about one run of a trial starts with this (the
# configuration, the details, the worker's grace period): a retry of the trial starts without.
RUN_SYSTEM_PREFIX = "hpo:"
# The one structure that stays a user attribute: the learning curve, which the dashboard shows
# live and the pruner reads while trials run (a short list of numbers).
SHOWN_STRUCTURES = frozenset({VAL_CURVE_ATTR})
# Why a trial ended: its user attribute holds the short head ("stopped at epoch 1",
# "diverged"), which fits a table cell; the whole sentence is a detail (and the trial's note).
REASON_ATTRS = frozenset({STOP_REASON_ATTR, FAIL_REASON_ATTR})
_DIGITS = 4


@dataclass(frozen=True)
class Layout:
    """Attributes split for storage: `shown` as user attributes, `hidden` as system ones."""

    shown: dict[str, Any]
    hidden: dict[str, Any]


def laid_out(attrs: Mapping[str, Any]) -> Layout:
    """`attrs` as a trial records them: rounded scalars shown, structures hidden."""
    shown: dict[str, Any] = {}
    hidden: dict[str, Any] = {}
    for key, value in attrs.items():
        if key == CONFIG_ATTR:
            hidden[CONFIG_SYSTEM_ATTR] = value
        elif key in REASON_ATTRS and isinstance(value, str):
            shown[key] = short_reason(value)
            if shown[key] != value:
                hidden[DETAIL_SYSTEM_PREFIX + key] = value
        elif isinstance(value, dict | list) and key not in SHOWN_STRUCTURES:
            hidden[DETAIL_SYSTEM_PREFIX + key] = value
        else:
            shown[key] = rounded(value)
    latency = attrs.get(LATENCY_ATTR)
    if isinstance(latency, dict) and "iqr_ms" in latency:
        shown[LATENCY_IQR_ATTR] = rounded(latency["iqr_ms"])
    return Layout(shown, hidden)


def short_reason(reason: str) -> str:
    """The head of a reason, before its first ": " (the whole reason when it has none)."""
    return reason.split(": ", 1)[0]


def readable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes `attrs` become (`laid_out(attrs).shown`)."""
    return laid_out(attrs).shown


def flat(
    user_attrs: Mapping[str, Any], system_attrs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A trial's attributes in one dict, its structures and whole reasons included (every
    layout)."""
    details = user_attrs.get(DETAILS_ATTR)
    merged = {k: v for k, v in user_attrs.items() if k != DETAILS_ATTR}
    if isinstance(details, dict):
        merged.update(details)
    for key, value in (system_attrs or {}).items():
        if key.startswith(DETAIL_SYSTEM_PREFIX):
            merged[key.removeprefix(DETAIL_SYSTEM_PREFIX)] = value
    config = stored_config(user_attrs, system_attrs)
    if config is not None:
        merged[CONFIG_ATTR] = config
    return merged


def stored_config(
    user_attrs: Mapping[str, Any], system_attrs: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The configuration a trial stored: its system attribute, or the older user attribute."""
    for config in ((system_attrs or {}).get(CONFIG_SYSTEM_ATTR), user_attrs.get(CONFIG_ATTR)):
        if isinstance(config, dict):
            return config
    return None


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits (a person reads 0.5929, not 0.5929203539823009)."""
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return float(f"{value:.{_DIGITS}g}")
    return value

"""What a trial records, laid out for people: short scalars, and one attribute of details.

The dashboard shows every user attribute of a trial on its page and as a column of its trial
table. So each figure a person reads (accuracy, test accuracy, latency median and IQR, latency
ratio, size, MACs, folded/kept counts, times) is a scalar of its own, rounded to 4 significant
digits; every structure (fold report, per-layer cost, latency statistics per runtime, device
fingerprint) goes into the one attribute `details`. Studies made before stored the structures
as attributes of their own: `flat` reads both layouts alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DETAILS_ATTR = "details"
# Structures that stay attributes of their own: the configuration a trial is rebuilt from, and
# the learning curve that the dashboard shows live and the pruner reads while trials run.
OWN_ATTRS = frozenset({"config", "val_accuracy_curve"})
_DIGITS = 4


def readable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """`attrs` as a trial records them: rounded scalars, structures gathered in `details`."""
    recorded: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, dict | list) and key not in OWN_ATTRS:
            details[key] = value
        else:
            recorded[key] = rounded(value)
    latency = attrs.get("latency")
    if isinstance(latency, dict) and "iqr_ms" in latency:
        recorded["latency_iqr_ms"] = rounded(latency["iqr_ms"])
    if details:
        recorded[DETAILS_ATTR] = details
    return recorded


def flat(user_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's attributes in one dict, its details included (either layout)."""
    details = user_attrs.get(DETAILS_ATTR)
    merged = {k: v for k, v in user_attrs.items() if k != DETAILS_ATTR}
    if isinstance(details, dict):
        merged.update(details)
    return merged


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits (a person reads 0.5929, not 0.5929203539823009)."""
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return float(f"{value:.{_DIGITS}g}")
    return value

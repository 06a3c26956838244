"""Canonical text of JSON-like values, so equal configurations always get equal keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def _canonical(value: Any) -> Any:
    # 1 and 1.0 are the same width: numbers compare as floats (booleans stay booleans).
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def canonical_json(value: Mapping[str, Any]) -> str:
    """Sorted-key JSON with numbers as floats: the same for equal configurations."""
    return json.dumps(_canonical(value), sort_keys=True, default=str)


def digest(value: Mapping[str, Any]) -> str:
    """A short stable key of a JSON-like mapping (hex SHA-256 of its canonical JSON)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()

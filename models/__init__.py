"""CIFAR CNN architectures: one file per family, registered by name.

The names (`NORMS`, `HEADS`, `family_names`) come from `models.catalog` and need no torch; the
builders (`build_model`, ...) import torch and the family modules on first use.
"""

from __future__ import annotations

from typing import Any

from models.catalog import FAMILIES, HEADS, NORMS, family_names

_LAZY = {
    "build_model": "models.registry",
    "count_parameters": "models.registry",
    "list_models": "models.registry",
    "model_info": "models.registry",
    "register_model": "models.registry",
    "make_norm": "models.norm",
}

__all__ = ["FAMILIES", "HEADS", "NORMS", "family_names", *_LAZY]


def __getattr__(name: str) -> Any:
    # Builders are imported lazily so that `import models` (for the names) costs no torch import.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")

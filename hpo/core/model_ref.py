"""A spec's `model` that names a user's network factory instead of a built-in family: plain text.

Three forms, told apart by what comes before the last colon:

- `nets/tiny.py:build`: a Python file (ending in .py), relative to the spec or a `--models` folder;
- `mypkg.nets:build`: an importable module;
- `torchvision:resnet18`: a torchvision classification model by name (no pretrained weights).

Parsing only reads the text; importing (running the user's code) happens in `models.user`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hpo.core.errors import SpecError

TORCHVISION = "torchvision"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
FORMS = "FILE.py:NAME, module.path:NAME or torchvision:NAME"

RefKind = Literal["file", "module", "torchvision"]


@dataclass(frozen=True)
class ModelRef:
    """Where a model factory lives: a file, a module, or torchvision; `name` is the callable."""

    kind: RefKind
    source: str  # the file path as written, the module's dotted name, or "torchvision"
    name: str

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


def is_model_ref(value: object) -> bool:
    """Whether a `model` value names a factory (has a colon) rather than a built-in family."""
    return isinstance(value, str) and ":" in value


def parse_model_ref(text: str) -> ModelRef:
    """The factory named by `text`; a SpecError says which form it should have taken."""
    source, _, name = text.rpartition(":")
    if not source or not _IDENTIFIER.fullmatch(name):
        raise SpecError(f"model {text!r}: expected {FORMS} (NAME a Python identifier)")
    if source == TORCHVISION:
        return ModelRef("torchvision", source, name)
    if source.endswith(".py"):
        return ModelRef("file", source, name)
    if _MODULE.fullmatch(source):
        return ModelRef("module", source, name)
    raise SpecError(f"model {text!r}: {source!r} is neither a .py file nor a module; use {FORMS}")

"""The package's import contract: one-way layers, no cycles, one Optuna boundary.

Layers, lowest first; a module may import from its own package and from lower layers only,
never from a higher layer or from a sibling package of its own layer:

    models.catalog    names of model families, norms, heads (plain data)
    hpo.core          errors, names, the hyperparameter catalog, specs, trial configs, results
    models            the networks (torch)
    hpo.device        the device and process settings
    hpo.measure | hpo.train | hpo.search
    hpo.store         the database
    hpo.run | hpo.present
    hpo.cli           (and above it the `hpo` entry point and `python -m hpo`)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS: list[tuple[str, ...]] = [
    ("models.catalog",),
    ("hpo.core", "hpo"),
    ("models",),
    ("hpo.device",),
    ("hpo.measure", "hpo.train", "hpo.search"),
    ("hpo.store",),
    ("hpo.run", "hpo.present"),
    ("hpo.cli",),
    ("hpo.entry",),
    ("hpo.__main__",),
]
BOUNDARY = "hpo.store.optuna_internals"
# Strings that name Optuna's internal attributes rather than a public API.
OPTUNA_INTERNAL_KEYS = {"failed_trial", "_backend", "_storage"}


def module_files() -> dict[str, Path]:
    """Every module of hpo and models by dotted name."""
    found = {}
    for package in ("hpo", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = module_files()


def owner(name: str) -> str | None:
    """The project module an imported dotted name lives in (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    """Project modules `module` imports, at module level or inside functions."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    owners = {owner(name) for name in names}
    return {o for o in owners if o is not None and o != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry it belongs to) for a project module."""
    best: tuple[int, str] | None = None
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or module.startswith(entry + ".")
            if matches and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_imports_follow_the_layers() -> None:
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        level, entry = layer_of(module)
        for target in sorted(targets):
            target_level, target_entry = layer_of(target)
            upward = target_level > level
            sideways = target_level == level and target_entry != entry
            if upward or sideways:
                wrong.append(f"{module} ({entry}) imports {target} ({target_entry})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_spec_layer_needs_no_torch() -> None:
    for module, targets in GRAPH.items():
        if layer_of(module)[0] <= 1:
            assert not any(layer_of(t)[0] > 1 for t in targets), module
            source = MODULES[module].read_text(encoding="utf-8")
            assert "import torch" not in source, f"{module} imports torch"


def test_optuna_private_api_only_at_the_boundary() -> None:
    offenders = []
    for module, path in sorted(MODULES.items()):
        if module == BOUNDARY:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names]
                for name in names:
                    if name.startswith("optuna") and any(
                        part.startswith("_") for part in name.split(".")
                    ):
                        offenders.append(f"{module}: imports {name}")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    offenders.append(f"{module}:{node.lineno}: uses .{node.attr}")
            elif isinstance(node, ast.Constant) and node.value in OPTUNA_INTERNAL_KEYS:
                offenders.append(f"{module}:{node.lineno}: names {node.value!r}")
    assert not offenders, "private API outside " + BOUNDARY + ":\n" + "\n".join(offenders)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_contract_sees_every_module() -> None:
    # A sanity check of the checker itself: known edges are found, in both directions.
    assert "hpo.core.spec" in GRAPH["hpo.run.runner"]
    assert "hpo.store.connect" in GRAPH["hpo.cli"], "imports inside functions count"
    assert "models.catalog" in GRAPH["hpo.core.params"]

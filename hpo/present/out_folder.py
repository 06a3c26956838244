"""Output folders of `hpo report` and `hpo export`: never lose a file hpo did not write.

A folder given with --out may hold a person's own files. The files a command writes are
recorded with their content digest in a small manifest; a later run replaces a file only when
it is still what hpo wrote there. Any other file of the same name (the person's own, or one
they edited since) is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from hpo.core.errors import HpoError

MANIFEST = ".hpo-written.json"


def check_replaceable(out: Path, names: Iterable[str]) -> None:
    """Refuse `out` when one of `names` is there and hpo did not write it as it is now."""
    names = tuple(names)  # read twice below
    if out.exists() and not out.is_dir():
        raise HpoError(f"--out {out}: exists and is not a folder")
    for name in (*names, MANIFEST):
        path = out / name
        # hpo writes plain files only: a link could send the write outside the folder, and a
        # folder or device of that name cannot be replaced by one.
        if path.is_symlink():
            raise HpoError(
                f"--out {out}: {name} is a link, which hpo does not replace; give another "
                f"folder, or remove the link"
            )
        if path.exists() and not path.is_file():
            raise HpoError(
                f"--out {out}: {name} is there already and is not a file; give another "
                f"folder, or move it away"
            )
    written = _manifest(out)
    for name in names:
        path = out / name
        if path.exists() and written.get(name) != _digest(path):
            raise HpoError(
                f"--out {out}: {name} is there already and was not written by hpo (or was "
                f"changed since); give another folder, or move the file away"
            )


def record_written(out: Path, names: Iterable[str]) -> None:
    """Note that hpo wrote `names` in `out` as they are now (so a later run may replace them)."""
    written = _manifest(out)
    written.update({name: _digest(out / name) for name in names})
    (out / MANIFEST).write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")


def _manifest(out: Path) -> dict[str, str]:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: no file counts as hpo's
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

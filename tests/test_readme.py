"""The README's spec reference is the one generated from the schema."""

from __future__ import annotations

from hpo.core.reference import readme_block
from tests.conftest import ROOT


def test_readme_spec_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_block() in readme, "README is stale: paste the output of `hpo spec-reference`"

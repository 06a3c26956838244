"""`report --out` and `export --out` never replace a file they did not write."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import synthetic
from tests.conftest import CliResult, invoke


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    return url


def report(url: str, out: Path) -> CliResult:
    return invoke("report", "--storage", url, "--study-name", "synthetic", "--out", str(out))


def assert_refused(result: CliResult, out: Path, name: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"--out {out}: {name} is there already and was not written by hpo" in result.stderr


def test_report_keeps_a_persons_own_files_and_replaces_its_own(url: str, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.json").write_text("my own notes\n")
    assert_refused(report(url, out), out, "report.json")
    assert (out / "report.json").read_text() == "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"], "nothing half-written"

    fresh = tmp_path / "fresh"
    assert report(url, fresh).returncode == 0
    assert report(url, fresh).returncode == 0, "its own files are replaced on a second run"
    (fresh / "index.html").write_text("edited by hand\n")
    assert_refused(report(url, fresh), fresh, "index.html")
    assert (fresh / "index.html").read_text() == "edited by hand\n"


@pytest.mark.parametrize("name", ["model.onnx", "model-card.json"])
def test_export_keeps_a_persons_own_files(url: str, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"mine")
    result = invoke(
        "export", "--storage", url, "--study-name", "synthetic", "--trial", "0", "--out", str(out)
    )
    assert_refused(result, out, name)
    assert (out / name).read_bytes() == b"mine"

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


@pytest.mark.parametrize("name", ["pareto.png", ".hpo-written.json", "index.html"])
@pytest.mark.parametrize("what", ["folder", "dangling link", "link"])
def test_report_refuses_what_is_no_plain_file_before_writing(
    url: str, tmp_path: Path, name: str, what: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere.html"
    if what == "folder":
        (out / name).mkdir()
    elif what == "dangling link":
        (out / name).symlink_to(elsewhere)  # a write would land outside --out
    else:
        elsewhere.write_text("mine\n")
        (out / name).symlink_to(elsewhere)
    result = report(url, out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and f"--out {out}: {name} is " in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [name], "nothing written"
    assert not elsewhere.exists() or elsewhere.read_text() == "mine\n"


def test_export_refuses_a_folder_where_its_model_goes(url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "model.onnx").mkdir(parents=True)
    result = invoke(
        "export", "--storage", url, "--study-name", "synthetic", "--trial", "0", "--out", str(out)
    )
    assert result.returncode == 2 and "model.onnx is there already and is not a file" in (
        result.stderr
    )
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("command", ["report", "export"])
def test_out_dash_is_refused(
    url: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a folder named - would appear
    extra = ["--trial", "0"] if command == "export" else []
    result = invoke(command, "--storage", url, "--study-name", "synthetic", *extra, "--out", "-")
    assert result.returncode == 2 and "'-' is not a folder" in result.stderr
    assert not Path("-").exists()

"""Archives whose arrays would not fit in memory are refused from their headers, before reading."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from hpo.train.data_check import MAX_NPZ_BYTES
from tests.conftest import ROOT, invoke

QUICKSTART = ROOT / "studies" / "quickstart.toml"
SMALL = {
    "y_train": np.zeros(8, np.uint8),
    "x_test": np.zeros((8, 32, 32, 3), np.uint8),
    "y_test": np.zeros(8, np.uint8),
}


def write_archive(path: Path, x_train_shape: tuple[int, ...], *, fill: bool) -> None:
    """An .npz with the given x_train header; its data written in full (zeros, compressed) when
    `fill`, else cut short after the header, as a damaged or hostile file would be."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            header = {"descr": "|u1", "fortran_order": False, "shape": x_train_shape}
            npy_format.write_array_header_1_0(member, header)
            left = math.prod(x_train_shape) if fill else 0
            chunk = bytes(1 << 24)
            while left > 0:
                member.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        for key, array in SMALL.items():
            with archive.open(f"{key}.npy", "w") as member:
                npy_format.write_array(member, array)


def assert_refused(data: Path, tmp_path: Path) -> str:
    result = invoke(
        "create",
        str(QUICKSTART),
        "--data",
        str(data),
        "--storage",
        f"sqlite:///{tmp_path / 'd.db'}",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "d.db").exists()  # refused before the database is touched
    return result.stderr


def test_a_header_claiming_a_huge_shape_is_refused_before_reading(tmp_path: Path) -> None:
    data = tmp_path / "claims.npz"
    write_archive(data, (10**9, 32, 32, 3), fill=False)
    message = assert_refused(data, tmp_path)
    assert "x_train: 3,072.00 GB" in message and "allowed: at most 1.07 GB" in message


@pytest.mark.slow
def test_compressed_zeros_beyond_the_size_limit_are_refused(tmp_path: Path) -> None:
    """A small file (compressed zeros) that would expand past the limit."""
    data = tmp_path / "bomb.npz"
    images = MAX_NPZ_BYTES // (32 * 32 * 3) + 1
    write_archive(data, (images, 32, 32, 3), fill=True)
    assert data.stat().st_size < MAX_NPZ_BYTES // 100
    assert "allowed: at most" in assert_refused(data, tmp_path)

"""Data: .npz loading, the seeded split, subsets, augmentation, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hpo.core.errors import DataError
from hpo.core.spec import DataSection
from hpo.train.data import augment, load_raw, prepare

CPU = torch.device("cpu")


def test_sample_split_sizes(sample_path: Path) -> None:
    section = DataSection(dataset=str(sample_path), val_size=1000, train_size=2000)
    data = prepare(load_raw(section), section, CPU)
    assert (len(data.train), len(data.val), len(data.test)) == (2000, 1000, 1017)
    assert data.num_classes == 10
    assert data.train.images.shape[1:] == (3, 32, 32) and data.train.images.dtype == torch.uint8
    normalized = data.normalize(data.train.images)
    assert normalized.mean().abs() < 0.05 and (normalized.std() - 1).abs() < 0.05


def test_split_is_seeded_and_disjoint(tiny_npz: Path) -> None:
    section = DataSection(dataset=str(tiny_npz), val_size=16, split_seed=3)
    first = prepare(load_raw(section), section, CPU)
    again = prepare(load_raw(section), section, CPU)
    assert torch.equal(first.val.images, again.val.images)
    train_rows = {bytes(x.numpy()) for x in first.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in first.val.images)


def test_missing_file_names_data_flag(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found.*--data"):
        load_raw(DataSection(dataset=str(tmp_path / "nope.npz")))


def test_npz_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="missing array"):
        load_raw(DataSection(dataset=str(path)))


def test_val_size_too_big(tiny_npz: Path) -> None:
    section = DataSection(dataset=str(tiny_npz), val_size=500)
    with pytest.raises(DataError, match="val_size"):
        prepare(load_raw(section), section, CPU)


def test_augment_crops_and_flips() -> None:
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert not torch.equal(out, images)
    again = augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # With padding 0 a crop is the identity, so only flips remain.
    flipped = augment(images, torch.Generator().manual_seed(1), padding=0)
    for original, result in zip(images, flipped, strict=True):
        assert torch.equal(result, original) or torch.equal(result, original.flip(2))


def test_a_failed_download_leaves_no_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.error import URLError

    from torchvision import datasets

    from hpo.train.data import _load_torchvision

    def offline(root: str, **_: object) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)  # as torchvision does before fetching
        raise URLError("no network")

    monkeypatch.setattr(datasets, "CIFAR10", offline)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="cannot download cifar10 into"):
        _load_torchvision("cifar10", root)
    assert not root.exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    with pytest.raises(DataError):
        _load_torchvision("cifar10", kept)
    assert kept.is_dir(), "a folder the user had is never removed"

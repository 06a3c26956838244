"""Datasets as device-resident tensors, a seeded validation split, and batch augmentation.

Images stay on the device as one uint8 tensor and are normalized and augmented a batch at a
time (as in airbench): no DataLoader worker processes, which only cost time on 2 cores.
"""

from __future__ import annotations

import contextlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.lib.npyio import NpzFile
from torch import Tensor

from hpo.core.errors import DataError
from hpo.core.spec import DataSection
from hpo.train.data_check import ARRAY_KEYS, check_arrays, check_npz_sizes, check_split

TORCHVISION_DATASETS: dict[str, int] = {"cifar10": 10, "cifar100": 100}
TORCHVISION_TRAIN_IMAGES = 50_000  # CIFAR-10 and CIFAR-100 alike


@dataclass(frozen=True)
class RawDataset:
    """HWC uint8 images and int64 labels as loaded from disk, checked (hpo/train/data_check.py)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str

    @property
    def shape(self) -> DataShape:
        return DataShape(self.num_classes, len(self.y_train))


@dataclass(frozen=True)
class DataShape:
    """What a study's trials depend on in its data, recorded when the study is created: the
    classes (the network's outputs) and the training images (the split is drawn from them).
    A copy of the same data elsewhere has the same shape; other data does not."""

    classes: int
    train_images: int

    def describe(self) -> str:
        return f"{self.classes} classes and {self.train_images} training images"


@dataclass(frozen=True)
class Split:
    """NCHW uint8 images and int64 labels on one device."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class TensorDataset:
    """Train/validation/test splits plus the per-channel normalization of the train split."""

    train: Split
    val: Split
    test: Split
    mean: Tensor
    std: Tensor
    num_classes: int
    source: str

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 NCHW -> float, standardized with the train statistics."""
        return (images.float() / 255.0 - self.mean) / self.std


# How a zip (an .npz is one; a local file header, or the end record of an empty one) and an
# .npy file begin: numpy's own tests.
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a keras-layout .npz (allow_pickle stays off: no code runs on load)."""
    layout = f"an .npz needs {', '.join(ARRAY_KEYS)} (keras layout, HWC uint8)"
    try:
        with path.open("rb") as file:
            start = file.read(len(_NPY_MAGIC))
        if not start.startswith((*_ZIP_MAGICS, _NPY_MAGIC)):
            # numpy would take it for a pickle and suggest allow_pickle, which runs its code.
            raise DataError(f"{path}: not an .npz archive (a zip of .npy arrays); {layout}")
        archive = np.load(path)
        if not isinstance(archive, NpzFile):
            raise DataError(f"{path}: a single array, not an .npz archive; {layout}")
        with archive:
            missing = [key for key in ARRAY_KEYS if key not in archive]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; {layout}")
            check_npz_sizes(archive, str(path))
            return {key: archive[key] for key in ARRAY_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path} as .npz ({reason}); {layout}") from None


def _raw(arrays: dict[str, np.ndarray], source: str, num_classes: int | None) -> RawDataset:
    """A checked RawDataset (labels flattened to int64)."""
    count = check_arrays(arrays, source, num_classes)
    labels = {key: arrays[key].reshape(-1).astype(np.int64) for key in ("y_train", "y_test")}
    return RawDataset(
        x_train=arrays["x_train"],
        y_train=labels["y_train"],
        x_test=arrays["x_test"],
        y_test=labels["y_test"],
        num_classes=count,
        source=source,
    )


def read_npz(path: Path) -> RawDataset:
    """Read and check an .npz (layout, dtypes, labels; the split is checked against a spec)."""
    return _raw(_read_npz(path), str(path), None)


def _load_torchvision(name: str, root: Path) -> RawDataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    existed = root.exists()
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises URLError/RuntimeError/OSError when offline
        if not existed:
            # Leave no empty folder behind; one with files in it (another worker's download,
            # a partial file) is kept.
            with contextlib.suppress(OSError):
                root.rmdir()
        raise DataError(
            f"cannot download {name} into {root} ({type(exc).__name__}); offline, pass a local "
            f"copy with --data PATH.npz (keras layout x_train, y_train, x_test, y_test)"
        ) from None
    arrays = {
        "x_train": np.asarray(train.data),
        "y_train": np.asarray(train.targets),
        "x_test": np.asarray(test.data),
        "y_test": np.asarray(test.targets),
    }
    return _raw(arrays, f"torchvision:{name}", TORCHVISION_DATASETS[name])


def check_data_path(data: Path) -> None:
    """Refuse a --data that names no readable file (nor a torchvision dataset), as --data's."""
    _check_found(DataSection(dataset=str(data)), "--data")


def _check_found(section: DataSection, where: str = "[data] dataset") -> None:
    if section.dataset in TORCHVISION_DATASETS:
        return
    allowed = f"use {', '.join(TORCHVISION_DATASETS)} or a path to an .npz (--data PATH)"
    if not section.dataset.strip():
        raise DataError(f"{where}: empty; {allowed}")
    path = Path(section.dataset).expanduser()
    if path.is_dir():
        raise DataError(f"{where}: {path} is a folder, not an .npz file; {allowed}")
    if path.exists() and not path.is_file():
        # A device (/dev/zero would be read forever), a pipe or a socket.
        raise DataError(f"{where}: {path} is not a regular file; {allowed}")
    if not path.is_file():
        what = "a link to nothing (or a loop of links)" if path.is_symlink() else "file not found"
        raise DataError(f"{where}: {what}: {path}; {allowed}")


def check_dataset(section: DataSection) -> DataShape:
    """Check the spec's data where it is named, without keeping it (for `hpo create`); its
    classes and training images.

    An .npz is read and checked whole. cifar10/cifar100 are downloaded by each worker, so only
    the split is checked here, against their 50,000 training images.
    """
    _check_found(section)
    if section.dataset in TORCHVISION_DATASETS:
        check_split(TORCHVISION_TRAIN_IMAGES, section, f"torchvision:{section.dataset}")
        return DataShape(TORCHVISION_DATASETS[section.dataset], TORCHVISION_TRAIN_IMAGES)
    return load_raw(section).shape


def load_raw(section: DataSection) -> RawDataset:
    """Load the dataset named by the spec (torchvision or an .npz) and check all of it."""
    _check_found(section)
    if section.dataset in TORCHVISION_DATASETS:
        raw = _load_torchvision(section.dataset, Path(section.root).expanduser())
    else:
        raw = read_npz(Path(section.dataset).expanduser())
    check_split(len(raw.y_train), section, raw.source)
    return raw


def local_npz(data: Path | None) -> RawDataset | None:
    """The .npz a command got with --data, read and checked before any database is opened.

    None without --data or when it names a torchvision dataset (loaded with the spec's root).
    """
    if data is None or str(data) in TORCHVISION_DATASETS:
        return None
    check_data_path(data)
    return read_npz(data.expanduser())


def _to_split(images: np.ndarray, labels: np.ndarray, device: torch.device) -> Split:
    nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return Split(nchw.to(device), torch.from_numpy(labels).to(device))


def prepare(raw: RawDataset, section: DataSection, device: torch.device) -> TensorDataset:
    """Seeded validation split (and optional train subset), moved to `device`."""
    n_train = len(raw.y_train)
    check_split(n_train, section, raw.source)
    order = np.random.default_rng(section.split_seed).permutation(n_train)
    val_idx, train_idx = order[: section.val_size], order[section.val_size :]
    if section.train_size is not None:
        train_idx = train_idx[: section.train_size]
    train = _to_split(raw.x_train[train_idx], raw.y_train[train_idx], device)
    pixels = train.images.float() / 255.0
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
    std = pixels.std(dim=(0, 2, 3), keepdim=True)
    return TensorDataset(
        train=train,
        val=_to_split(raw.x_train[val_idx], raw.y_train[val_idx], device),
        test=_to_split(raw.x_test, raw.y_test, device),
        mean=mean,
        std=std,
        num_classes=raw.num_classes,
        source=raw.source,
    )


def augment(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random crop with reflect padding (each image shifted by up to `padding` pixels) and random
    horizontal flip, for a whole batch at once."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4, mode="reflect")
    device = images.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
    rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    cropped = padded[batch, channel, rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)[:, None, None, None]
    return torch.where(flip, cropped.flip(3), cropped)

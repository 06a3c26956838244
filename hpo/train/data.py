"""Datasets as device-resident tensors, a seeded validation split, and batch augmentation.

Images stay on the device as one uint8 tensor and are normalized and augmented a batch at a
time (as in airbench): no DataLoader worker processes, which only cost time on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hpo.core.errors import DataError
from hpo.core.spec import DataSection

TORCHVISION_DATASETS: dict[str, int] = {"cifar10": 10, "cifar100": 100}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class RawDataset:
    """HWC uint8 images and integer labels, as loaded from disk."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str


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


def _load_npz(path: Path) -> RawDataset:
    try:
        with np.load(path) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; "
                    f"an .npz needs {', '.join(NPZ_KEYS)} (keras layout, HWC uint8)"
                )
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}") from None
    for key in ("x_train", "x_test"):
        shape = arrays[key].shape
        if arrays[key].ndim != 4 or shape[-1] != 3:
            raise DataError(f"{path}: {key} has shape {shape}; expected (N, H, W, 3) uint8 images")
    for key in ("y_train", "y_test"):
        arrays[key] = arrays[key].reshape(-1).astype(np.int64)
    num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    return RawDataset(**arrays, num_classes=num_classes, source=str(path))


def _load_torchvision(name: str, root: Path) -> RawDataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises URLError/RuntimeError/OSError when offline
        raise DataError(
            f"cannot download {name} into {root} ({type(exc).__name__}); offline, pass a local "
            f"copy with --data PATH.npz (keras layout x_train, y_train, x_test, y_test)"
        ) from None
    return RawDataset(
        x_train=np.asarray(train.data),
        y_train=np.asarray(train.targets, dtype=np.int64),
        x_test=np.asarray(test.data),
        y_test=np.asarray(test.targets, dtype=np.int64),
        num_classes=TORCHVISION_DATASETS[name],
        source=f"torchvision:{name}",
    )


def check_dataset(section: DataSection) -> None:
    """Fail early (before any study is created) when the dataset cannot be found."""
    if section.dataset in TORCHVISION_DATASETS:
        return
    path = Path(section.dataset).expanduser()
    if not path.is_file():
        allowed = ", ".join(TORCHVISION_DATASETS)
        raise DataError(
            f"[data] dataset: file not found: {path}; use {allowed} or a path to an .npz "
            f"(--data PATH)"
        )


def load_raw(section: DataSection) -> RawDataset:
    """Load the dataset named by the spec from torchvision or an .npz file."""
    check_dataset(section)
    if section.dataset in TORCHVISION_DATASETS:
        return _load_torchvision(section.dataset, Path(section.root).expanduser())
    return _load_npz(Path(section.dataset).expanduser())


def _to_split(images: np.ndarray, labels: np.ndarray, device: torch.device) -> Split:
    nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return Split(nchw.to(device), torch.from_numpy(labels).to(device))


def prepare(raw: RawDataset, section: DataSection, device: torch.device) -> TensorDataset:
    """Seeded validation split (and optional train subset), moved to `device`."""
    n_train = len(raw.y_train)
    if section.val_size >= n_train:
        raise DataError(
            f"[data] val_size: {section.val_size} leaves no training images "
            f"({n_train} in {raw.source}); allowed: 1..{n_train - 1}"
        )
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
    """Random crop with reflect padding and random horizontal flip, for a whole batch at once."""
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

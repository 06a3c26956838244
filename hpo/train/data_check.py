"""The one check of a dataset, run before any study is created, for every source.

What is allowed (the keras/torchvision layout of CIFAR):

- `x_train`, `x_test`: uint8 images of shape (N, 32, 32, 3), height x width x RGB. Float images
  are refused, not converted: the message says how to convert them.
- `y_train`, `y_test`: integer class indices, shape (N,) or (N, 1), one per image. One-hot,
  float and negative labels are refused.
- Classes: 0 .. K-1. K is 10 for cifar10 and 100 for cifar100; for an .npz it is the largest
  label + 1, and every class 0 .. K-1 must have a training image (so a stray label of 200 is
  refused instead of growing a 201-class head). `y_test` labels must be below K.
- Enough images: at least one test image, and `[data] val_size` + `train_size` within x_train.
- Size: the four arrays of an .npz hold at most MAX_NPZ_BYTES together (five times the full
  CIFAR-10), judged from the arrays' headers before any array is read: a small compressed
  file can hold an array of many gigabytes.

Each failure is a DataError of one line: the source, the array, what was found, what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.lib import format as npy_format
from numpy.lib.npyio import NpzFile

from hpo.core.errors import DataError
from hpo.core.spec import DataSection

IMAGE_SHAPE = (32, 32, 3)
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
_LABELS = "integer class indices of shape (N,) or (N, 1)"
# The full CIFAR-10 or CIFAR-100 (60,000 images and labels) holds about 184 MB.
MAX_NPZ_BYTES = 1 << 30


def check_npz_sizes(archive: NpzFile, source: str) -> None:
    """Refuse an archive whose arrays would need more than MAX_NPZ_BYTES, from their headers
    alone (a header may claim any shape; reading the array would try to allocate it)."""
    sizes = {key: _stored_bytes(archive, key, source) for key in ARRAY_KEYS}
    total = sum(sizes.values())
    if total > MAX_NPZ_BYTES:
        largest = max(sizes, key=lambda key: sizes[key])
        raise DataError(
            f"{source}: the arrays would need {_gigabytes(total)} in memory ({largest}: "
            f"{_gigabytes(sizes[largest])}); allowed: at most {_gigabytes(MAX_NPZ_BYTES)} "
            f"together (the full CIFAR-10 needs 0.18 GB)"
        )


def _stored_bytes(archive: NpzFile, key: str, source: str) -> int:
    """The bytes array `key` would take once read, from its .npy header."""
    with archive.zip.open(f"{key}.npy") as member:
        version = npy_format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(member)
        else:
            shape, _, dtype = npy_format.read_array_header_2_0(member)
    return math.prod(shape) * dtype.itemsize


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:,.2f} GB"


def check_arrays(arrays: Mapping[str, np.ndarray], source: str, num_classes: int | None) -> int:
    """Check the four arrays of a dataset; returns its class count K.

    `num_classes` is the known class count of a named dataset; None takes it from `y_train`.
    """
    for split in ("train", "test"):
        images, labels = f"x_{split}", f"y_{split}"
        _check_images(arrays[images], images, source)
        _check_labels(arrays[labels], labels, source, len(arrays[images]), images)
    count = num_classes if num_classes is not None else _class_count(arrays["y_train"], source)
    for key in ("y_train", "y_test"):
        _check_range(arrays[key], key, source, count, known=num_classes is not None)
    return count


def check_split(n_train: int, section: DataSection, source: str) -> None:
    """Enough training images for `[data] val_size` and `train_size`."""
    if section.val_size >= n_train:
        raise DataError(
            f"[data] val_size: {section.val_size} leaves no training images "
            f"({n_train} in x_train of {source}); allowed: 1..{n_train - 1}"
        )
    left = n_train - section.val_size
    if section.train_size is not None and section.train_size > left:
        raise DataError(
            f"[data] train_size: {section.train_size} but only {left} images are left after "
            f"val_size {section.val_size} ({n_train} in x_train of {source}); allowed: 1..{left}"
        )


def _check_images(x: np.ndarray, key: str, source: str) -> None:
    where = f"{source}: {key}"
    allowed = f"uint8 images of shape (N, {', '.join(map(str, IMAGE_SHAPE))})"
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        hint = " (channels first: x.transpose(0, 2, 3, 1))" if x.shape[1:] == (3, 32, 32) else ""
        raise DataError(f"{where} has shape {x.shape}; allowed: {allowed}{hint}")
    if len(x) == 0:
        raise DataError(f"{where} holds no images; allowed: at least 1")
    if x.dtype == np.uint8:
        return
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        found = f"{bad:,} NaN or infinite values" if bad else f"values {x.min():.4g}..{x.max():.4g}"
        raise DataError(
            f"{where} is {x.dtype} ({found}); allowed: {allowed}, pixels 0-255 "
            f"(from floats in [0, 1]: (x * 255).round().astype('uint8'))"
        )
    raise DataError(f"{where} is {x.dtype}; allowed: {allowed}, pixels 0-255")


def _check_labels(y: np.ndarray, key: str, source: str, n_images: int, images: str) -> None:
    where = f"{source}: {key}"
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(
            f"{where} has shape {y.shape}, one-hot or several labels per image; "
            f"allowed: {_LABELS} (one-hot: y.argmax(1))"
        )
    if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise DataError(f"{where} has shape {y.shape}; allowed: {_LABELS}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where} is {y.dtype}; allowed: {_LABELS}")
    if len(y) != n_images:
        raise DataError(
            f"{where} has {len(y):,} labels for {n_images:,} images in {images}; "
            f"allowed: one label per image"
        )


def _class_count(y_train: np.ndarray, source: str) -> int:
    """K from the training labels: the largest + 1, with every class 0..K-1 present."""
    labels = y_train.reshape(-1)
    _check_not_negative(labels, "y_train", source)
    present = np.unique(labels)
    count = int(present[-1]) + 1
    if count < 2:
        raise DataError(
            f"{source}: y_train holds only class 0; allowed: at least 2 classes, 0..K-1"
        )
    if len(present) < count:
        missing = sorted(set(range(min(count, len(present) + 1))) - set(present.tolist()))
        raise DataError(
            f"{source}: y_train labels go up to {count - 1} ({count} classes) but "
            f"{count - len(present):,} of them have no image (first: class {missing[0]}); "
            f"allowed: class indices 0..K-1 with every class in y_train"
        )
    return count


def _check_not_negative(labels: np.ndarray, key: str, source: str) -> None:
    if labels.size and labels.min() < 0:
        index = int(np.argmin(labels))
        raise DataError(
            f"{source}: {key} has label {labels[index]} at index {index}; "
            f"allowed: class indices 0..K-1, never negative"
        )


def _check_range(y: np.ndarray, key: str, source: str, count: int, *, known: bool) -> None:
    labels = y.reshape(-1)
    _check_not_negative(labels, key, source)
    if labels.size and labels.max() >= count:
        index = int(np.argmax(labels))
        whose = "the dataset's" if known else "y_train's"
        raise DataError(
            f"{source}: {key} has label {labels[index]} at index {index}; "
            f"allowed: 0..{count - 1} ({whose} {count} classes)"
        )

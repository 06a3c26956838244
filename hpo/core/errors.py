"""Errors a user can cause. The CLI prints them as one line on stderr and exits with code 2."""

from __future__ import annotations

from collections.abc import Callable


class HpoError(Exception):
    """Bad input: a malformed spec, an unknown name, a wrong URL, missing data."""


class SpecError(HpoError):
    """The study spec (TOML or --set override) is malformed or names something unknown."""


class DataError(HpoError):
    """The dataset cannot be found or read."""


class StorageError(HpoError):
    """The storage URL is malformed or the database cannot be reached."""


class SettingError(HpoError):
    """An HPO_* environment variable (other than the storage URL) holds a value it cannot take."""


def find_in_chain(
    exc: BaseException, wanted: Callable[[BaseException], bool]
) -> BaseException | None:
    """The first exception in `exc`'s cause/context chain (itself included) that is `wanted`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if wanted(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None

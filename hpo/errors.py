"""Errors a user can cause. The CLI prints them as one line on stderr and exits with code 2."""


class HpoError(Exception):
    """Bad input: a malformed spec, an unknown name, a wrong URL, missing data."""


class SpecError(HpoError):
    """The study spec (TOML or --set override) is malformed or names something unknown."""


class DataError(HpoError):
    """The dataset cannot be found or read."""


class StorageError(HpoError):
    """The storage URL is malformed or the database cannot be reached."""

"""What every supported database stores in the columns user strings reach.

SQLite stores any string; PostgreSQL and MySQL do not, so a study that SQLite accepts could never
move to them. Checked before anything is created:

- A study name goes into Optuna's `studies.study_name`, a VARCHAR(512) (Optuna's
  `MAX_INDEXED_STRING_LENGTH`); PostgreSQL refuses longer names and any text with a NUL.
- The spec is stored as JSON in a TEXT column (`study_user_attributes.value_json`); MySQL's
  TEXT holds 65,535 bytes. JSON escapes control characters, so only its size matters.

Every other string hpo writes (attribute keys, param names, categorical values) comes from
hpo's own catalogs, not from the user.
"""

from __future__ import annotations

import unicodedata

# Optuna's MAX_INDEXED_STRING_LENGTH (optuna/storages/_rdb/models.py): VARCHAR(512) columns.
MAX_NAME_LENGTH = 512
# MySQL's TEXT type, which Optuna's Text() columns become there.
MAX_TEXT_BYTES = 65_535
# Spaces, line and paragraph separators, and format characters (zero-width space, ...).
_BLANK_CATEGORIES = {"Zs", "Zl", "Zp", "Cf"}


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a study name in every supported database (a phrase), or None."""
    if not name:
        return f"is empty; allowed: 1 to {MAX_NAME_LENGTH} characters"
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"is {len(name):,} characters long; allowed: at most {MAX_NAME_LENGTH} "
            f"(what PostgreSQL and MySQL store)"
        )
    for position, char in enumerate(name):
        if unicodedata.category(char) == "Cc":
            return (
                f"holds the control character U+{ord(char):04X} at position {position}; "
                f"allowed: printable characters"
            )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid text ({exc.reason} at position {exc.start}); allowed: UTF-8"
    return None


def blank(name: str) -> bool:
    """Whether `name` shows nothing: only spaces, separators and zero-width characters."""
    return all(unicodedata.category(char) in _BLANK_CATEGORIES for char in name)


def text_problem(size_bytes: int) -> str | None:
    """Why a stored text of `size_bytes` bytes is too long for every supported database, or None."""
    if size_bytes > MAX_TEXT_BYTES:
        return (
            f"is {size_bytes:,} bytes as stored; allowed: at most {MAX_TEXT_BYTES:,} "
            f"(a MySQL TEXT column)"
        )
    return None


def shorten(value: object, keep: int = 40) -> str:
    """`repr(value)` cut after `keep` characters: a long value must not flood a one-line error."""
    text = repr(value)
    return text if len(text) <= keep else f"{text[:keep]}..."

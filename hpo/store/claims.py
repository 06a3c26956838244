"""Claims on configurations: at most one trial per configuration in a study, across workers.

Table `hpo_config_claims` has a unique (study, configuration key) pair; inserting it is the
claim, so two workers that choose the same configuration at the same instant cannot both get it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from hpo.store.connect import StoredStudy
from hpo.store.hpo_tables import claims, ensure_tables


def claimer(stored: StoredStudy) -> Callable[[str], bool]:
    """A function that claims a configuration (its canonical text) for this study: True when
    this call got it, False when it was claimed before."""
    ensure_tables(stored.storage)

    def claim(configuration: str) -> bool:
        key = hashlib.sha256(configuration.encode("utf-8")).hexdigest()  # fits the column
        statement = claims.insert().values(study_id=stored.study_id, config_key=key)

        def insert() -> None:
            with stored.storage.engine.begin() as connection:
                connection.execute(statement)

        try:
            stored.storage.retrying(insert)
        except IntegrityError:
            return False
        return True

    return claim


def forget_claims(stored: StoredStudy) -> None:
    """Drop every claim filed under this study's id: a new study on SQLite can reuse the id of
    a deleted one, and must not inherit its claims."""
    ensure_tables(stored.storage)
    statement = claims.delete().where(claims.c.study_id == stored.study_id)

    def delete() -> None:
        with stored.storage.engine.begin() as connection:
            connection.execute(statement)

    stored.storage.retrying(delete)

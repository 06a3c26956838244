"""hpo's own tables in the study database, next to Optuna's: latency probes and config claims.

Created on first use by whichever worker gets there first; creating them twice at once is
harmless (the loser finds them there).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hpo.store.resilience import ResilientRDBStorage

metadata = sa.MetaData()

# One row per probe key (architecture + context); `context_key` lists one device's probes.
probes = sa.Table(
    "hpo_latency_probes",
    metadata,
    sa.Column("probe_key", sa.String(64), primary_key=True),
    sa.Column("identity_json", sa.Text, nullable=False),
    sa.Column("architecture_json", sa.Text, nullable=False),
    sa.Column("context_key", sa.String(64), nullable=False, index=True),
    sa.Column("latency_ms", sa.Float(precision=53)),
    sa.Column("attrs_json", sa.Text),
    sa.Column("worker", sa.String(255)),
    sa.Column("started", sa.DateTime, nullable=False),
    sa.Column("seconds", sa.Float),
)

# A unique (study, configuration) pair: inserting it is the claim on that configuration.
claims = sa.Table(
    "hpo_config_claims",
    metadata,
    sa.Column("study_id", sa.Integer, primary_key=True),
    sa.Column("config_key", sa.String(64), primary_key=True),
)


def ensure_tables(storage: ResilientRDBStorage) -> None:
    """Create hpo's own tables if they are missing."""

    def create() -> None:
        try:
            metadata.create_all(storage.engine, checkfirst=True)
        except (IntegrityError, OperationalError, ProgrammingError):
            # Another worker created them between our check and our CREATE.
            inspector = sa.inspect(storage.engine)
            if not all(inspector.has_table(table.name) for table in metadata.sorted_tables):
                raise

    storage.retrying(create)

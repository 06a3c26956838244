"""Optuna's tables as SQLAlchemy Core declarations: the columns hpo reads directly.

Optuna's ORM models are private (`optuna.storages._rdb.models`); these declarations name only the
columns hpo's queries and views use, as Optuna 5.0 creates them. If Optuna changes its schema, the
SQL tests against SQLite and PostgreSQL fail here, not every command at import time.
"""

from __future__ import annotations

import enum
import math

import sqlalchemy as sa
from optuna.trial import TrialState

from hpo.core.db_limits import MAX_NAME_LENGTH

# Optuna's `String(MAX_INDEXED_STRING_LENGTH)` columns: study names, attribute keys, param names.
MAX_INDEXED_STRING_LENGTH = MAX_NAME_LENGTH


class TrialValueType(enum.Enum):
    """How Optuna stores an objective value: finite in `value`, or an infinity in the type."""

    FINITE = 1
    INF_POS = 2
    INF_NEG = 3


metadata = sa.MetaData()

studies = sa.Table(
    "studies",
    metadata,
    sa.Column("study_id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(MAX_INDEXED_STRING_LENGTH)),
)
trials = sa.Table(
    "trials",
    metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("number", sa.Integer),
    sa.Column("study_id", sa.Integer),
    sa.Column("state", sa.Enum(TrialState)),
    sa.Column("datetime_start", sa.DateTime),
    sa.Column("datetime_complete", sa.DateTime),
)
trial_values = sa.Table(
    "trial_values",
    metadata,
    sa.Column("trial_value_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("objective", sa.Integer),
    sa.Column("value", sa.Float(precision=53)),
    sa.Column("value_type", sa.Enum(TrialValueType)),
)
trial_params = sa.Table(
    "trial_params",
    metadata,
    sa.Column("param_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("param_name", sa.String(MAX_INDEXED_STRING_LENGTH)),
    sa.Column("param_value", sa.Float(precision=53)),
    sa.Column("distribution_json", sa.Text),
)
trial_user_attributes = sa.Table(
    "trial_user_attributes",
    metadata,
    sa.Column("trial_user_attribute_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("key", sa.String(MAX_INDEXED_STRING_LENGTH)),
    sa.Column("value_json", sa.Text),
)
trial_system_attributes = sa.Table(
    "trial_system_attributes",
    metadata,
    sa.Column("trial_system_attribute_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("key", sa.String(MAX_INDEXED_STRING_LENGTH)),
    sa.Column("value_json", sa.Text),
)
study_user_attributes = sa.Table(
    "study_user_attributes",
    metadata,
    sa.Column("study_user_attribute_id", sa.Integer, primary_key=True),
    sa.Column("study_id", sa.Integer),
    sa.Column("key", sa.String(MAX_INDEXED_STRING_LENGTH)),
    sa.Column("value_json", sa.Text),
)
trial_heartbeats = sa.Table(
    "trial_heartbeats",
    metadata,
    sa.Column("trial_heartbeat_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("heartbeat", sa.DateTime),
)


def stored_value(value: float | None, value_type: TrialValueType) -> float:
    """An objective value as Optuna wrote it (infinities live in `value_type`)."""
    if value_type == TrialValueType.INF_POS:
        return math.inf
    if value_type == TrialValueType.INF_NEG:
        return -math.inf
    return float(value) if value is not None else math.nan

"""`hpo db views`: a SQL view `hpo_trials` over Optuna's tables, for people who query the database.

One row per trial: study, number, state, accuracy, latency_ms, and one column per param. Optuna
stores a categorical param as an index into its choices, so the view decodes it from the row's
`distribution_json` (json_extract on SQLite, json_extract_path_text on PostgreSQL). The view reads
the tables live; only a param name that first appears later needs the view created again.

The statements are SQLAlchemy constructs (CreateView renders names and literals with the
dialect's quoting), never strings built from names found in the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.ddl import CreateView, DropView

from hpo.errors import StorageError
from hpo.output import LEADING_PARAMS

VIEW_NAME = "hpo_trials"
OBJECTIVE_COLUMNS = ("accuracy", "latency_ms")  # objective 0 and 1, as in hpo.study
FIXED_COLUMNS = ("study", "number", "state", *OBJECTIVE_COLUMNS)
SUPPORTED = ("sqlite", "postgresql")
CATEGORICAL = "CategoricalDistribution"

_studies = sa.table("studies", sa.column("study_id"), sa.column("study_name"))
_trials = sa.table(
    "trials", sa.column("trial_id"), sa.column("number"), sa.column("study_id"), sa.column("state")
)
_values = sa.table(
    "trial_values", sa.column("trial_id"), sa.column("objective"), sa.column("value")
)
_params = sa.table(
    "trial_params",
    sa.column("trial_id"),
    sa.column("param_name"),
    sa.column("param_value"),
    sa.column("distribution_json"),
)

_SQL_TYPES: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "integer": sa.Integer,
    "float": sa.Float,
    "text": sa.Text,
}


@dataclass(frozen=True)
class ViewColumn:
    """A column of the view: its name and SQL type (integer, float or text)."""

    name: str
    type: str
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "param": self.param}


def _choice_kind(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "text"
    return "integer" if isinstance(value, int) else "float"


def distribution_kind(distribution_json: str) -> str:
    """integer, float or text: the SQL type a param with this Optuna distribution decodes to."""
    try:
        distribution = json.loads(distribution_json)
        name = distribution["name"]
        attributes = distribution.get("attributes", {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return "text"
    if name == "IntDistribution":
        return "integer"
    if name == CATEGORICAL:
        return _widest([_choice_kind(choice) for choice in attributes.get("choices", [])])
    return "float"


def _widest(kinds: list[str]) -> str:
    for kind in ("text", "float"):
        if kind in kinds:
            return kind
    return "integer"


def param_kinds(engine: Engine) -> dict[str, str]:
    """Every param name in the database with the SQL type its column gets."""
    query = sa.select(_params.c.param_name, _params.c.distribution_json).distinct()
    seen: dict[str, list[str]] = {}
    with engine.connect() as connection:
        for name, distribution_json in connection.execute(query):
            seen.setdefault(name, []).append(distribution_kind(distribution_json or ""))
    return {name: _widest(kinds) for name, kinds in sorted(seen.items())}


def _decoded(alias: Any, dialect: str) -> tuple[Any, Any]:
    """(is categorical, the chosen value as JSON scalar) for one trial_params row."""
    index = sa.cast(sa.cast(alias.c.param_value, sa.Integer), sa.Text)
    if dialect == "sqlite":
        path = sa.literal("$.attributes.choices[", sa.Text) + index + sa.literal("]", sa.Text)
        name = sa.func.json_extract(alias.c.distribution_json, "$.name")
        return name == CATEGORICAL, sa.func.json_extract(alias.c.distribution_json, path)
    document = sa.cast(alias.c.distribution_json, sa.JSON)
    name = sa.func.json_extract_path_text(document, "name")
    choice = sa.func.json_extract_path_text(document, "attributes", "choices", index)
    return name == CATEGORICAL, choice


def _param_column(alias: Any, kind: str, dialect: str, label: str) -> Any:
    is_categorical, choice = _decoded(alias, dialect)
    sql_type = _SQL_TYPES[kind]
    value = sa.case(
        (is_categorical, sa.cast(choice, sql_type)), else_=sa.cast(alias.c.param_value, sql_type)
    )
    return value.label(label)


def _param_order(name: str) -> tuple[int, str]:
    # The params people filter by first (as in `hpo best`), then the rest alphabetically.
    leading = list(LEADING_PARAMS)
    return (leading.index(name) if name in leading else len(leading), name)


def view_columns(kinds: dict[str, str]) -> list[ViewColumn]:
    """The view's columns; a param whose name clashes with a fixed column gets a `param_` prefix."""
    columns = [
        ViewColumn("study", "text"),
        ViewColumn("number", "integer"),
        ViewColumn("state", "text"),
        ViewColumn("accuracy", "float"),
        ViewColumn("latency_ms", "float"),
    ]
    taken = set(FIXED_COLUMNS)
    for param, kind in sorted(kinds.items(), key=lambda item: _param_order(item[0])):
        name = param if param not in taken else f"param_{param}"
        taken.add(name)
        columns.append(ViewColumn(name, kind, param))
    return columns


def view_select(columns: list[ViewColumn], dialect: str) -> sa.Select:
    """The SELECT behind the view: trials joined to their study, objectives and params."""
    selected: list[Any] = [
        _studies.c.study_name.label("study"),
        _trials.c.number.label("number"),
        sa.cast(_trials.c.state, sa.String(16)).label("state"),
    ]
    source: Any = _trials.join(_studies, _studies.c.study_id == _trials.c.study_id)
    for objective, name in enumerate(OBJECTIVE_COLUMNS):
        value = _values.alias(f"v{objective}")
        source = source.outerjoin(
            value, sa.and_(value.c.trial_id == _trials.c.trial_id, value.c.objective == objective)
        )
        selected.append(sa.cast(value.c.value, sa.Float).label(name))
    for position, column in enumerate(c for c in columns if c.param is not None):
        param = _params.alias(f"p{position}")
        source = source.outerjoin(
            param,
            sa.and_(param.c.trial_id == _trials.c.trial_id, param.c.param_name == column.param),
        )
        selected.append(_param_column(param, column.type, dialect, column.name))
    return sa.select(*selected).select_from(source)


def create_views(engine: Engine) -> list[ViewColumn]:
    """(Re)create the `hpo_trials` view; returns its columns."""
    dialect = engine.dialect.name
    if dialect not in SUPPORTED:
        raise StorageError(f"SQL views need {' or '.join(SUPPORTED)}; this database is {dialect}")
    view = sa.Table(VIEW_NAME, sa.MetaData())
    try:
        columns = view_columns(param_kinds(engine))
        with engine.begin() as connection:
            connection.execute(DropView(view, if_exists=True))
            connection.execute(CreateView(view_select(columns, dialect), VIEW_NAME))
    except SQLAlchemyError as exc:
        # e.g. no CREATE privilege; the driver's message names the cause, never the password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot create view {VIEW_NAME}: {reason}") from None
    return columns

"""`hpo db views`: a SQL view `hpo_trials` over Optuna's tables, for people who query the database.

One row per trial: study, number, state, accuracy, latency_ms, the figures people filter by
(test_accuracy, latency_iqr_ms, latency_ratio, n_params, macs, on_front, has_model, fail_reason,
stop_reason) and one column per param. Optuna
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
from optuna.trial import TrialState
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.ddl import CreateView, DropView

from hpo.core.errors import StorageError
from hpo.core.names import LEADING_PARAMS, METRIC_NAMES
from hpo.core.trial_attrs import (
    FAIL_REASON_ATTR,
    LATENCY_IQR_ATTR,
    LATENCY_MS_ATTR,
    LATENCY_RATIO_ATTR,
    MACS_ATTR,
    N_PARAMS_ATTR,
    SPEC_ATTR,
    STOP_REASON_ATTR,
    TEST_ACCURACY_ATTR,
)
from hpo.store.optuna_internals import ARTIFACT_ATTR_PREFIX
from hpo.store.tables import studies as _studies
from hpo.store.tables import study_user_attributes as _study_attrs
from hpo.store.tables import trial_params as _params
from hpo.store.tables import trial_system_attributes as _system_attrs
from hpo.store.tables import trial_user_attributes as _user_attrs
from hpo.store.tables import trial_values as _values
from hpo.store.tables import trials as _trials

VIEW_NAME = "hpo_trials"
OBJECTIVE_COLUMNS = METRIC_NAMES  # objective 0 and 1
# Columns read from a trial's user attributes: (column, attribute, key inside it or None, type).
ATTRIBUTE_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    (TEST_ACCURACY_ATTR, TEST_ACCURACY_ATTR, None, "float"),
    (LATENCY_IQR_ATTR, LATENCY_IQR_ATTR, None, "float"),
    (LATENCY_RATIO_ATTR, LATENCY_RATIO_ATTR, None, "float"),
    (N_PARAMS_ATTR, N_PARAMS_ATTR, None, "integer"),
    (MACS_ATTR, MACS_ATTR, None, "integer"),
)
# The latency's spread (IQR, ms): on_front counts latencies within it as equal.
SPREAD_COLUMN = LATENCY_IQR_ATTR
REASON_COLUMNS = (FAIL_REASON_ATTR, STOP_REASON_ATTR)
FIXED_COLUMNS = (
    "study",
    "number",
    "state",
    *OBJECTIVE_COLUMNS,
    *(column for column, *_ in ATTRIBUTE_COLUMNS),
    "on_front",
    "has_model",
    *REASON_COLUMNS,
)
SUPPORTED = ("sqlite", "postgresql")
CATEGORICAL = "CategoricalDistribution"

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
    """The view's columns; a param whose name clashes with a fixed column's or an earlier
    param's gets a `param_` prefix (more than one where needed). Names are compared ignoring
    case, as SQL compares identifiers: `Accuracy` would otherwise be a second `accuracy`."""
    columns = [
        ViewColumn("study", "text"),
        ViewColumn("number", "integer"),
        ViewColumn("state", "text"),
        *(ViewColumn(column, "float") for column in OBJECTIVE_COLUMNS),
        *(ViewColumn(column, kind) for column, _, _, kind in ATTRIBUTE_COLUMNS),
        ViewColumn("on_front", "integer"),
        ViewColumn("has_model", "integer"),
        *(ViewColumn(column, "text") for column in REASON_COLUMNS),
    ]
    taken = {column.lower() for column in FIXED_COLUMNS}
    for param, kind in sorted(kinds.items(), key=lambda item: _param_order(item[0])):
        name = param
        while name.lower() in taken:
            name = f"param_{name}"
        taken.add(name.lower())
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
    objectives = []
    for objective, name in enumerate(OBJECTIVE_COLUMNS):
        value = _values.alias(f"v{objective}")
        source = source.outerjoin(
            value, sa.and_(value.c.trial_id == _trials.c.trial_id, value.c.objective == objective)
        )
        objectives.append(value.c.value)
        shown = value.c.value
        if name == LATENCY_MS_ATTR:
            # A trial stopped early has no objective values, but its latency was measured:
            # the one it recorded (on_front still reads the objectives only).
            measured = _user_attrs.alias("a_measured_latency")
            source = source.outerjoin(
                measured,
                sa.and_(
                    measured.c.trial_id == _trials.c.trial_id, measured.c.key == LATENCY_MS_ATTR
                ),
            )
            recorded_ms = sa.cast(_json_value(measured.c.value_json, dialect, None), sa.Float)
            shown = sa.func.coalesce(value.c.value, recorded_ms)
        selected.append(sa.cast(shown, sa.Float).label(name))
    attributes = [(c, a, k, t) for c, a, k, t in ATTRIBUTE_COLUMNS]
    attributes += [(column, column, None, "text") for column in REASON_COLUMNS]
    recorded: dict[str, Any] = {}
    for column, attribute, key, kind in attributes:
        found = _user_attrs.alias(f"a_{column}")
        source = source.outerjoin(
            found, sa.and_(found.c.trial_id == _trials.c.trial_id, found.c.key == attribute)
        )
        recorded[column] = sa.cast(_json_value(found.c.value_json, dialect, key), _SQL_TYPES[kind])
        if column not in REASON_COLUMNS:
            selected.append(recorded[column].label(column))
    selected.append(_on_front(*objectives, recorded[SPREAD_COLUMN], dialect).label("on_front"))
    has_model = sa.exists().where(
        _system_attrs.c.trial_id == _trials.c.trial_id,
        _system_attrs.c.key.startswith(ARTIFACT_ATTR_PREFIX, autoescape=True),
    )
    selected.append(sa.case((has_model, 1), else_=0).label("has_model"))
    # In the order of `view_columns` (and the README): the reasons after on_front, has_model.
    selected += [recorded[column].label(column) for column in REASON_COLUMNS]
    for position, column in enumerate(c for c in columns if c.param is not None):
        param = _params.alias(f"p{position}")
        source = source.outerjoin(
            param,
            sa.and_(param.c.trial_id == _trials.c.trial_id, param.c.param_name == column.param),
        )
        selected.append(_param_column(param, column.type, dialect, column.name))
    return sa.select(*selected).select_from(source)


def _json_value(value_json: Any, dialect: str, key: str | None, *inner: str) -> Any:
    """The JSON document's top-level scalar (or its member `key`, and within it `inner`'s
    members) as SQL text/number. Keys are hpo's own names, never a user's."""
    if dialect == "sqlite":
        return sa.func.json_extract(value_json, "$" + "".join(f".{k}" for k in (key, *inner) if k))
    document = sa.cast(value_json, sa.JSON)
    if key is None:
        return document.op("#>>")(sa.literal_column("'{}'"))
    return sa.func.json_extract_path_text(document, key, *inner)


def _study_budget(study_id: Any, dialect: str) -> Any:
    """The study's latency budget (`[study] max_latency_ms` of its stored spec), NULL if none."""
    budget = _json_value(_study_attrs.c.value_json, dialect, "study", "max_latency_ms")
    return (
        sa.select(sa.cast(budget, sa.Float))
        .where(_study_attrs.c.study_id == study_id, _study_attrs.c.key == SPEC_ATTR)
        .correlate(_trials)  # the view's own trial (else a join over every trial)
        .scalar_subquery()
    )


def _on_front(accuracy: Any, latency: Any, spread: Any, dialect: str) -> Any:
    """1 for a COMPLETE trial no other COMPLETE trial of its study dominates, else 0; in a study
    with a latency budget, among the trials within it (as `hpo best` has the front).

    The rule of `hpo.core.dominance`, written in SQL so the view stays live: latencies within
    the larger of the two trials' IQRs (`latency_iqr_ms`, 0 where not recorded) are equal.
    """
    budget = _study_budget(_trials.c.study_id, dialect)
    other = _trials.alias("other")
    other_accuracy = _values.alias("other_accuracy")
    other_latency = _values.alias("other_latency")
    other_iqr = _user_attrs.alias("other_iqr")
    other_spread = (
        sa.select(sa.cast(_json_value(other_iqr.c.value_json, dialect, None), sa.Float))
        .where(other_iqr.c.trial_id == other.c.trial_id, other_iqr.c.key == SPREAD_COLUMN)
        .scalar_subquery()
    )
    own, theirs = sa.func.coalesce(spread, 0.0), sa.func.coalesce(other_spread, 0.0)
    tolerance = sa.case((own >= theirs, own), else_=theirs)
    dominated = sa.exists().where(
        other.c.study_id == _trials.c.study_id,
        other.c.state == TrialState.COMPLETE,
        other.c.trial_id != _trials.c.trial_id,
        other_accuracy.c.trial_id == other.c.trial_id,
        other_accuracy.c.objective == 0,
        other_latency.c.trial_id == other.c.trial_id,
        other_latency.c.objective == 1,
        other_accuracy.c.value >= accuracy,
        other_latency.c.value <= latency + tolerance,
        sa.or_(other_accuracy.c.value > accuracy, other_latency.c.value < latency - tolerance),
        sa.or_(budget.is_(None), other_latency.c.value <= budget),
    )
    feasible = sa.or_(budget.is_(None), latency <= budget)
    return sa.case(
        (sa.and_(_trials.c.state == TrialState.COMPLETE, feasible, sa.not_(dominated)), 1),
        else_=0,
    )


def create_views(engine: Engine) -> list[ViewColumn]:
    """(Re)create the `hpo_trials` view; returns its columns."""
    dialect = engine.dialect.name
    if dialect not in SUPPORTED:
        raise StorageError(f"SQL views need {' or '.join(SUPPORTED)}; this database is {dialect}")
    view = sa.Table(VIEW_NAME, sa.MetaData())
    try:
        _check_the_name_is_free(engine)
        columns = view_columns(param_kinds(engine))
        with engine.begin() as connection:
            connection.execute(DropView(view, if_exists=True))
            connection.execute(CreateView(view_select(columns, dialect), VIEW_NAME))
    except SQLAlchemyError as exc:
        # e.g. no CREATE privilege; the driver's message names the cause, never the password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"cannot create view {VIEW_NAME}: {reason}") from None
    return columns


# Columns every `hpo_trials` view hpo made has had: a view without them is someone else's.
_OWN_COLUMNS = frozenset({"study", "number", "state", *OBJECTIVE_COLUMNS})


def _check_the_name_is_free(engine: Engine) -> None:
    """Refuse to replace a table, or a view hpo did not make, named `hpo_trials`: it is the
    user's, and a view is only ever hpo's to drop."""
    inspector = sa.inspect(engine)
    if VIEW_NAME in inspector.get_table_names():
        raise StorageError(
            f"a table named {VIEW_NAME} is in this database, not hpo's view; it is kept: "
            "rename it to create the view"
        )
    if VIEW_NAME in inspector.get_view_names():
        existing = {column["name"].lower() for column in inspector.get_columns(VIEW_NAME)}
        if not existing >= _OWN_COLUMNS:
            raise StorageError(
                f"a view named {VIEW_NAME} that hpo did not make is in this database (it has no "
                f"{', '.join(sorted(_OWN_COLUMNS - existing))} column); it is kept: rename it "
                "to create hpo's"
            )

"""Render results for people (rich tables) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from hpo.core.names import LEADING_PARAMS, MISSION_PARAMS
from hpo.core.results import RESULT_NAMES, StudyOverview, TrialResult, ms_text
from hpo.core.trial_attrs import (
    LATENCY_MS_ATTR,
    LATENCY_RATIO_ATTR,
)


class Format(StrEnum):
    """Output formats of the data-printing commands."""

    table = "table"
    json = "json"
    csv = "csv"


class SummaryFormat(StrEnum):
    """Output formats of commands that print a summary rather than rows of trials."""

    table = "table"
    json = "json"


def print_summary(console: Console, data: dict[str, Any], fmt: SummaryFormat, title: str) -> None:
    """Print a flat summary: aligned key/value lines for people, JSON for programs."""
    if fmt == SummaryFormat.json:
        console.file.write(json.dumps(data, indent=2) + "\n")
        return
    # Plain "key  value" lines: paths stay whole (a table would wrap them) and copyable.
    lines = [title] if title else []
    width = max((len(key) for key in data), default=0)
    for key, value in data.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
        elif isinstance(value, list):
            shown = ", ".join(_fmt(v) for v in value)
        else:
            shown = _fmt(value)
        lines.append(f"  {key:<{width}}  {shown}")
    console.file.write("\n".join(lines) + "\n")


def _param_columns(results: Sequence[TrialResult]) -> list[str]:
    """Leading params first, then the rest alphabetically."""
    names = {name for r in results for name in r.params}
    leading = [n for n in LEADING_PARAMS if n in names]
    return leading + sorted(names - set(leading))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_table(
    results: Sequence[TrialResult],
    title: str,
    *,
    wide: bool = False,
    rank_by: str = LATENCY_MS_ATTR,
) -> Table:
    """A table of trials with their objectives and decoded params.

    Narrow (the default) fits an 80-column terminal: the objectives and the mission params
    (norm, optimizer, lr, scheduler), never truncated. `wide` adds the test accuracy and every
    other param, one column each; json and csv always carry everything. Trials chosen by their
    latency ratio (`rank_by`) show it beside the latency.
    """
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False
    )
    by_ratio = rank_by == LATENCY_RATIO_ATTR
    objectives = [
        "trial",
        "accuracy",
        "latency ms",
        *(["latency ratio"] if by_ratio else []),
        *(["test acc"] if wide else []),
    ]
    for column in objectives:
        table.add_column(column, justify="right", no_wrap=True)
    present = _param_columns(results)
    params = present if wide else [name for name in MISSION_PARAMS if name in present]
    for name in params:
        table.add_column(name, no_wrap=True)
    hidden = [name for name in present if name not in params]
    if hidden:
        table.caption = f"{len(hidden)} more params: --wide or --format json"
    for r in results:
        test = ["-" if r.test_accuracy is None else f"{r.test_accuracy:.2%}"] if wide else []
        ratio = ["-" if r.latency_ratio is None else f"{r.latency_ratio:.3f}"] if by_ratio else []
        table.add_row(
            str(r.number),
            f"{r.accuracy:.2%}",
            ms_text(r.latency_ms),
            *ratio,
            *test,
            *(_fmt(r.params.get(name)) for name in params),
        )
    return table


def trials_csv(results: Sequence[TrialResult]) -> str:
    """CSV with one row per trial: the fields of the JSON output, then one column per param."""
    params = _param_columns(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fixed = [key for key in RESULT_NAMES if key not in ("trial", "params")]
    writer.writerow(fixed + params)
    for r in results:
        row = r.as_dict()
        writer.writerow([row[k] for k in fixed] + [r.params.get(name, "") for name in params])
    return buffer.getvalue()


def print_trials(
    console: Console,
    results: Sequence[TrialResult],
    fmt: Format,
    title: str,
    *,
    wide: bool = False,
    rank_by: str = LATENCY_MS_ATTR,
) -> None:
    """Print trials in the chosen format on stdout (`wide`: every param as a table column;
    `rank_by`: the latency they were chosen by)."""
    if fmt == Format.json:
        console.file.write(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    elif fmt == Format.csv:
        console.file.write(trials_csv(results))
    else:
        table = trials_table(results, title, wide=wide, rank_by=rank_by)
        # Every column whole: a table wider than the terminal (--wide, or long names such as
        # cosine_warm_restarts) runs past it (the terminal wraps the lines) rather than have
        # rich shrink the columns and cut their contents.
        terminal = console.width
        console.width = max(
            terminal, Measurement.get(console, console.options.update_width(10_000), table).maximum
        )
        try:
            console.print(table)
        finally:
            console.width = terminal


# The trial states `hpo studies` counts: (state, CSV column, table column). Pruned and waiting
# came last, after the CSV's first columns: programs reading by position keep theirs.
_STUDY_STATES = (
    ("COMPLETE", "complete", "complete"),
    ("FAIL", "fail", "failed"),
    ("RUNNING", "running", "running"),
    ("PRUNED", "pruned", "pruned"),
    ("WAITING", "waiting", "waiting"),
)


def print_studies(console: Console, overviews: Sequence[StudyOverview], fmt: Format) -> None:
    """Print the study list in the chosen format."""
    if fmt == Format.json:
        console.file.write(json.dumps([o.as_dict() for o in overviews], indent=2) + "\n")
        return
    rows = [
        [o.name, o.n_trials, o.target, *(o.states.get(state, 0) for state, _, _ in _STUDY_STATES)]
        for o in overviews
    ]
    if fmt == Format.csv:
        header = ["name", "n_trials", "target", *(column for _, column, _ in _STUDY_STATES)]
        console.file.write(rows_csv(header, rows))
        return
    table = Table(title="studies")
    for column in ["study", "trials", "target", *(column for _, _, column in _STUDY_STATES)]:
        table.add_column(column, justify="left" if column == "study" else "right")
    for name, trials, target, *counts in rows:
        table.add_row(name, str(trials), _fmt(target), *map(str, counts))
    console.print(table)


def rows_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """`rows` under `header` as CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def print_models(console: Console, rows: Sequence[dict[str, Any]], fmt: Format) -> None:
    """The model families (name, params, description) in the chosen format."""
    if fmt == Format.json:
        console.file.write(json.dumps(list(rows), indent=2) + "\n")
        return
    columns = ("name", "params", "description")
    if fmt == Format.csv:
        console.file.write(rows_csv(columns, [[row[c] for c in columns] for row in rows]))
        return
    table = Table(title="models (width 1, BatchNorm, 10 classes)")
    for column in ("model", "params", "description"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in rows:
        table.add_row(row["name"], f"{row['params']:,}", row["description"])
    console.print(table)

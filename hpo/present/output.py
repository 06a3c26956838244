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
from hpo.core.results import StudyOverview, TrialResult
from hpo.core.trial_attrs import (
    LATENCY_BACKEND_ATTR,
    LATENCY_MS_ATTR,
    LATENCY_RATIO_ATTR,
    N_FOLDED_ATTR,
    TEST_ACCURACY_ATTR,
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


def trials_table(results: Sequence[TrialResult], title: str, *, wide: bool = False) -> Table:
    """A table of trials with their objectives and decoded params.

    Narrow (the default) fits an 80-column terminal: the objectives and the mission params
    (norm, optimizer, lr, scheduler), never truncated. `wide` adds the test accuracy and every
    other param, one column each; json and csv always carry everything.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    objectives = ["trial", "accuracy", "latency ms", *(["test acc"] if wide else [])]
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
        table.add_row(
            str(r.number),
            f"{r.accuracy:.2%}",
            f"{r.latency_ms:.3f}",
            *test,
            *(_fmt(r.params.get(name)) for name in params),
        )
    return table


def trials_csv(results: Sequence[TrialResult]) -> str:
    """CSV with one row per trial and one column per param."""
    params = _param_columns(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fixed = [
        "number",
        "accuracy",
        LATENCY_MS_ATTR,
        TEST_ACCURACY_ATTR,
        LATENCY_RATIO_ATTR,
        N_FOLDED_ATTR,
        LATENCY_BACKEND_ATTR,
    ]
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
) -> None:
    """Print trials in the chosen format on stdout (`wide`: every param as a table column)."""
    if fmt == Format.json:
        console.file.write(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    elif fmt == Format.csv:
        console.file.write(trials_csv(results))
    else:
        table = trials_table(results, title, wide=wide)
        # --wide asks for every column whole: let the lines run past the terminal (it wraps
        # them) rather than have rich shrink the columns and cut their contents.
        if not wide:
            console.print(table)
            return
        terminal = console.width
        console.width = max(
            terminal, Measurement.get(console, console.options.update_width(10_000), table).maximum
        )
        try:
            console.print(table)
        finally:
            console.width = terminal


def print_studies(console: Console, overviews: Sequence[StudyOverview], fmt: Format) -> None:
    """Print the study list in the chosen format."""
    if fmt == Format.json:
        console.file.write(json.dumps([o.as_dict() for o in overviews], indent=2) + "\n")
        return
    if fmt == Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "n_trials", "target", "complete", "fail", "running"])
        for o in overviews:
            writer.writerow(
                [
                    o.name,
                    o.n_trials,
                    o.target,
                    o.states.get("COMPLETE", 0),
                    o.states.get("FAIL", 0),
                    o.states.get("RUNNING", 0),
                ]
            )
        console.file.write(buffer.getvalue())
        return
    table = Table(title="studies")
    for column in ("study", "trials", "target", "complete", "failed", "running"):
        table.add_column(column, justify="left" if column == "study" else "right")
    for o in overviews:
        table.add_row(
            o.name,
            str(o.n_trials),
            _fmt(o.target),
            str(o.states.get("COMPLETE", 0)),
            str(o.states.get("FAIL", 0)),
            str(o.states.get("RUNNING", 0)),
        )
    console.print(table)

"""`hpo report`: an HTML page with the Pareto front, the hypervolume history and the best trials.

Reads a finished (or running) study: storage -> results -> here. The page embeds the dashboard's
interactive plotly figures (hover shows each trial and its params) plus accuracy vs MACs, with
plotly.js written next to it (works offline); the two headline plots are also PNGs drawn with
matplotlib's Agg canvas (no display, no pyplot global state), for places that cannot run scripts.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.offline
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from hpo.core import results
from hpo.core.errors import HpoError
from hpo.core.results import TrialResult
from hpo.core.spec import dump_toml
from hpo.core.trial_attrs import MACS_ATTR, SPEC_ATTR, VAL_CURVE_ATTR
from hpo.present import figures
from hpo.present.out_folder import check_replaceable, record_written
from hpo.present.study_view import EndedTrial, StudyView, study_view
from hpo.store import queries
from hpo.store.artifacts import artifact_dir
from hpo.store.connect import StoredStudy

PARETO_PNG = "pareto.png"
HYPERVOLUME_PNG = "hypervolume.png"
INDEX_HTML = "index.html"
REPORT_JSON = "report.json"
PLOTLY_JS = "plotly.min.js"
GROUP_KEYS = ("norm", "optimizer", "scheduler")


@dataclass(frozen=True)
class GroupBest:
    """The most accurate trial among those sharing one value of one param (e.g. norm = batch);
    a value tried only by trials that stopped early has no best, only its stopped trials."""

    key: str
    value: Any
    n_trials: int
    best: TrialResult | None
    stopped: tuple[EndedTrial, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "n_trials": self.n_trials,
            "n_stopped": len(self.stopped),
            **self._best(),
        }

    def _best(self) -> dict[str, Any]:
        if self.best is None:
            return {"trial": None, "accuracy": None, "latency_ms": None}
        return {
            "trial": self.best.number,
            "accuracy": self.best.accuracy,
            "latency_ms": self.best.latency_ms,
        }


def best_per_group(
    finished: list[TrialResult],
    keys: tuple[str, ...] = GROUP_KEYS,
    stopped: list[EndedTrial] | None = None,
) -> list[GroupBest]:
    """For each key and each value it took (in a complete or a stopped trial), the most
    accurate complete trial (faster breaks ties) and the trials with it that stopped early."""
    stopped = stopped or []
    rows = []
    for key in keys:
        tried = [r.params for r in finished] + [e.params for e in stopped]
        values = sorted({p.get(key) for p in tried if key in p}, key=str)
        for value in values:
            members = [r for r in finished if r.params.get(key) == value]
            ended = tuple(e for e in stopped if e.params.get(key) == value)
            best = min(members, key=lambda r: (-r.accuracy, r.latency_ms, r.number), default=None)
            rows.append(GroupBest(key, value, len(members), best, ended))
    return rows


@dataclass(frozen=True)
class Report:
    """Everything the page shows, computed once."""

    study_name: str
    finished: list[TrialResult]
    front: list[TrialResult]
    reference: tuple[float, float]
    history: list[tuple[int, float]]
    groups: list[GroupBest]
    n_trials: int
    spec_toml: str | None
    ended_early: list[tuple[int, str, str]]
    macs: dict[int, float]
    curves: dict[int, list[float]]
    view: StudyView

    @property
    def final_hypervolume(self) -> float:
        return self.history[-1][1] if self.history else 0.0


def build_report(stored: StoredStudy) -> Report:
    """Collect the results a report shows; a study without complete trials is an HpoError."""
    study = stored.study
    finished = queries.completed(stored)
    if not finished:
        progress = study_view(stored).progress
        if progress.done and progress.grid_done:
            raise HpoError(
                f"study {study.study_name!r} is finished without a COMPLETE trial: every point "
                f"of its grid is done ({progress.finished} stopped early or failed, "
                f"{progress.over_budget} over the latency budget); change the grid's lists, or "
                "raise [study] max_latency_ms"
            )
        if progress.done:
            raise HpoError(
                f"study {study.study_name!r} is finished without a COMPLETE trial: its "
                f"{progress.finished} trials were stopped early or failed; raise its n_trials "
                "(hpo create SPEC --n-trials N) to run more"
            )
        raise HpoError(
            f"study {study.study_name!r} has no COMPLETE trials yet; run it first "
            f"(hpo run SPEC --study-name {study.study_name})"
        )
    reference = results.reference_point(finished)
    raw = study.user_attrs.get(SPEC_ATTR)
    folder = artifact_dir(stored.storage.url)
    view = study_view(stored, str(folder.resolve()) if folder is not None else None)
    return Report(
        study_name=study.study_name,
        finished=finished,
        front=view.front,
        reference=reference,
        history=results.hypervolume_history(view.feasible, reference),
        groups=best_per_group(finished, stopped=view.stopped),
        n_trials=len(study.get_trials(deepcopy=False)),
        spec_toml=dump_toml(raw) if isinstance(raw, dict) else None,
        ended_early=[(e.number, e.state, e.reason) for e in view.ended],
        macs=queries.numeric_attribute(stored, MACS_ATTR),
        curves=queries.attribute_values(stored, VAL_CURVE_ATTR),
        view=view,
    )


def _color(norm: Any) -> str:
    return figures.norm_color(norm)


def plot_pareto(report: Report, path: Path) -> None:
    """Accuracy vs latency of every complete trial, colored by norm type, front as a step line."""
    figure = Figure(figsize=(7.5, 5), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    norms = sorted({str(r.params.get("norm")) for r in report.finished}, key=_norm_order)
    for norm in norms:
        members = [r for r in report.finished if str(r.params.get("norm")) == norm]
        axes.scatter(
            [r.latency_ms for r in members],
            [r.accuracy for r in members],
            s=36,
            c=_color(norm),
            label=f"norm = {norm} ({len(members)})",
            zorder=3,
        )
    # Front trials get a black ring on top of their norm color.
    axes.scatter(
        [r.latency_ms for r in report.front],
        [r.accuracy for r in report.front],
        s=120,
        facecolors="none",
        edgecolors="black",
        linewidths=1.2,
        label="on the Pareto front",
        zorder=4,
    )
    front = report.front
    axes.step(
        [r.latency_ms for r in front] + [report.reference[1]],
        [r.accuracy for r in front] + [front[-1].accuracy],
        where="post",
        color="black",
        linewidth=1.0,
        linestyle="--",
        label="Pareto front",
        zorder=2,
    )
    for r in front:
        axes.annotate(
            f"#{r.number}", (r.latency_ms, r.accuracy), xytext=(4, 4), textcoords="offset points"
        )
    axes.set_xlabel(
        "latency_ms (median single-image latency of the folded net, ms; lower is better)"
    )
    axes.set_ylabel("accuracy (validation; higher is better)")
    axes.set_title(f"{report.study_name}: Pareto front of {len(report.finished)} complete trials")
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.savefig(path)


_norm_order = figures.norm_order


def plot_hypervolume(report: Report, path: Path) -> None:
    """Hypervolume of the trials completed so far, against trial number."""
    figure = Figure(figsize=(7.5, 4), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    numbers = [n for n, _ in report.history]
    volumes = [v for _, v in report.history]
    last = report.view.progress.last_trial
    if last is not None and last > numbers[-1]:  # no gain after the last complete trial
        numbers.append(last)
        volumes.append(volumes[-1])
    axes.step(numbers, volumes, where="post", color="#1f77b4")
    axes.plot(numbers, volumes, "o", color="#1f77b4", markersize=4)
    ref_accuracy, ref_latency = report.reference
    axes.set_xlabel("trial number")
    axes.set_ylabel("hypervolume (accuracy x ms)")
    axes.set_title(
        f"{report.study_name}: hypervolume history "
        f"(reference accuracy {ref_accuracy:g}, latency_ms {ref_latency:.4g})\n"
        f"{report.view.progress.line()}",
        fontsize="medium",
    )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.set_ylim(0, max(volumes) * 1.08 or 1.0)
    figure.savefig(path)


@dataclass(frozen=True)
class Markup:
    """A table cell that is already HTML (a link, a command), shown as it is."""

    html: str


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return value.html
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape("-" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]], left: tuple[int, ...] = ()) -> str:
    """An HTML table; numbers right-aligned, the columns in `left` (text) left-aligned."""

    def align(i: int) -> str:
        return " class='text'" if i in left else ""

    head = "".join(f"<th{align(i)}>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{align(i)}>{_cell(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _trial_columns(r: TrialResult) -> list[Any]:
    return [
        r.number,
        f"{r.accuracy:.2%}",
        r.latency_ms,
        None if r.test_accuracy is None else f"{r.test_accuracy:.2%}",
        r.params.get("model"),
        r.params.get("norm"),
        r.params.get("optimizer"),
        r.params.get("lr"),
        r.params.get("scheduler"),
    ]


_TRIAL_HEADER = [
    "trial",
    "accuracy",
    "latency_ms",
    "test accuracy",
    "model",
    "norm",
    "optimizer",
    "lr",
    "scheduler",
]

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
th.text, td.text { text-align: left; }
code { background: #f6f6f6; padding: 0 0.2em; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 1em; }
"""


def constant_choices(report: Report) -> dict[str, Any]:
    """The grouping params that took one value in every trained trial: nothing to compare."""
    tried = [r.params for r in report.finished] + [e.params for e in report.view.stopped]
    found = {}
    for key in GROUP_KEYS:
        values = {str(p[key]) for p in tried if key in p}
        if len(values) <= 1:
            found[key] = values.pop() if values else None
    return found


def _interactive(report: Report) -> list[str]:
    """The plotly figures as HTML fragments (plotly.js is loaded once, from PLOTLY_JS); figures
    where nothing varies are left out and said so."""
    constant = constant_choices(report)
    shown = [
        figure
        for figure_id, figure in figures.dashboard_figures(report.view, links=False).items()
        if figure_id.removeprefix("hpo-accuracy-by-") not in constant
        and figure_id not in figures.DASHBOARD_ONLY
    ]
    macs = figures.accuracy_vs_macs_figure(report.finished, report.macs)
    notes = [
        f"{key} was {value} in every trained trial" if value else f"{key} was not searched"
        for key, value in constant.items()
    ]
    if macs is None:
        notes.append("no MACs differ between complete trials (no accuracy-vs-compute figure)")
    else:
        shown.append(macs)
    parts = [f.to_html(full_html=False, include_plotlyjs=False) for f in shown]
    if notes:
        parts.append(f"<p>Not drawn: {html.escape('; '.join(notes))}.</p>")
    return parts


def _model_cell(report: Report, number: int) -> Markup:
    """How to get a front trial's model: its stored ONNX file, and the export command."""
    source = report.view.sources.get(number)
    if source is None:
        return Markup("-")
    command = f"<code>{html.escape(source.export_command)}</code>"
    if source.command_note:
        command += f" ({html.escape(source.command_note)})"
    if source.onnx_path is None:
        return Markup(f"no stored model; {command}")
    link = html.escape(Path(source.onnx_path).as_uri())
    return Markup(f"<a href='{link}' download='trial-{number}.onnx'>ONNX</a>; {command}")


def _budget_rows(report: Report) -> list[list[Any]]:
    """One row per front trial: from its latency on, it is the most accurate choice."""
    return [
        [f"<= {r.latency_ms:.4g} ms", *_trial_columns(r), _model_cell(report, r.number)]
        for r in report.front
    ]


def _group_row(g: GroupBest) -> list[Any]:
    stopped = f" + {len(g.stopped)} stopped" if g.stopped else ""
    if g.best is not None:
        return [f"{g.key} = {g.value}", f"{g.n_trials}{stopped}", *_trial_columns(g.best)]
    last = max(g.stopped, key=lambda e: (e.last_accuracy or 0.0, -e.number))
    gap = [None] * (len(_TRIAL_HEADER) - 1)
    return [
        f"{g.key} = {g.value}",
        f"0{stopped}",
        f"none complete; best stopped: trial {last.number} at {last.last_accuracy:.2%} "
        f"after {len(last.curve)} epoch(s)",
        *gap,
    ]


def render_html(report: Report) -> str:
    """The report page: both plots, the best trial per norm/optimizer/scheduler, the front."""
    name = html.escape(report.study_name)
    ref_accuracy, ref_latency = report.reference
    group_rows = [_group_row(g) for g in report.groups]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>hpo report: {name}</title>",
        f"<style>{_STYLE}</style><script src='{PLOTLY_JS}'></script></head><body>",
        f"<h1>Study {name}</h1>",
        f"<p><b>{html.escape(report.view.progress.line())}.</b> "
        f"{len(report.finished)} complete of {report.n_trials} trials; "
        f"{len(report.front)} on the Pareto front (validation accuracy up, fused latency down). "
        f"Final hypervolume {report.final_hypervolume:.4g} (accuracy x ms).</p>",
        "<h2>Best model within a latency budget</h2>",
        "<p>Read down to your budget: each row is the most accurate trial whose latency fits "
        "it (latencies within their measured spread count as equal). Download its folded "
        "ONNX model, or write it with the command shown (TorchScript, ONNX and a model "
        "card).</p>",
        _table(
            ["latency budget", *_TRIAL_HEADER, "model"],
            _budget_rows(report),
            left=(0, *range(5, len(_TRIAL_HEADER) + 2)),
        ),
        "<h2>Interactive figures</h2>",
        "<p>The dashboard's figures (hover a point for the trial and its params), and accuracy "
        "against the folded network's multiply-accumulates.</p>",
        *_interactive(report),
        "<h2>Pareto front</h2>",
        f"<img src='{PARETO_PNG}' alt='accuracy vs latency_ms of every complete trial, "
        "colored by norm type, with the Pareto front'>",
        _table(_TRIAL_HEADER, [_trial_columns(r) for r in report.front]),
        "<h2>Hypervolume history</h2>",
        f"<p>Area dominated by the trials completed so far, measured up to the reference point "
        f"accuracy {ref_accuracy:g} and latency_ms {ref_latency:.4g} (1.1 x the slowest complete "
        f"trial), so it only grows.</p>",
        f"<img src='{HYPERVOLUME_PNG}' alt='hypervolume against trial number'>",
        "<h2>Best trial per norm type, optimizer and scheduler</h2>",
        "<p>For every value each of these took, the most accurate complete trial with it "
        "(the faster one on ties), and how many trials with it stopped early; a value tried "
        "only by stopped trials shows its best stopped one.</p>",
        _table(["group", "trials", *_TRIAL_HEADER], group_rows, left=(0, *range(6, 11))),
    ]
    parts += [
        f"<h2>All complete trials ({len(report.finished)})</h2>",
        _table(_TRIAL_HEADER, [_trial_columns(r) for r in report.finished]),
    ]
    if report.ended_early:
        parts += [
            "<h2>Trials that ended early</h2>",
            "<p>PRUNED: stopped on purpose (e.g. an architecture over the latency budget is "
            "never trained); FAIL: the reason it failed.</p>",
            _table(
                ["trial", "state", "reason"],
                [list(row) for row in report.ended_early],
                left=(1, 2),
            ),
        ]
    if report.spec_toml is not None:
        parts += ["<h2>Spec</h2>", f"<pre>{html.escape(report.spec_toml)}</pre>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote, and the figures it shows."""

    html: Path
    pngs: list[Path]
    hypervolume: float
    reference: tuple[float, float]
    n_complete: int
    n_front: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "pngs": [str(p) for p in self.pngs],
            "hypervolume": self.hypervolume,
            "reference_point": {"accuracy": self.reference[0], "latency_ms": self.reference[1]},
            "n_complete": self.n_complete,
            "n_front": self.n_front,
        }


def write_report(stored: StoredStudy, out: Path) -> ReportFiles:
    """Write index.html, pareto.png and hypervolume.png (plus report.json) into `out`."""
    report = build_report(stored)
    names = [PARETO_PNG, HYPERVOLUME_PNG, PLOTLY_JS, INDEX_HTML, REPORT_JSON]
    check_replaceable(out, names)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpoError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    pareto, volume = out / PARETO_PNG, out / HYPERVOLUME_PNG
    plot_pareto(report, pareto)
    plot_hypervolume(report, volume)
    (out / PLOTLY_JS).write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    page = out / INDEX_HTML
    page.write_text(render_html(report), encoding="utf-8")
    files = ReportFiles(
        page,
        [pareto, volume],
        report.final_hypervolume,
        report.reference,
        len(report.finished),
        len(report.front),
    )
    data = {
        **files.as_dict(),
        "study": report.study_name,
        "hypervolume_history": [{"trial": n, "hypervolume": v} for n, v in report.history],
        "best_per_group": [g.as_dict() for g in report.groups],
        "front": [r.as_dict() for r in report.front],
    }
    (out / REPORT_JSON).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    record_written(out, names)
    return files

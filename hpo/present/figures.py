"""Study figures as plotly objects, for the dashboard (custom plots) and the HTML report.

optuna-dashboard shows plotly figures saved to a study with its public
`save_plotly_graph_object`; `publish` saves these under fixed ids, so each save replaces the
last one, and the runner redraws them as trials end (`FigureRefresh`: every trial when trials
are long, every 10 s or so when they are short), so the figures stay current while a study
runs. The report embeds the same figures (interactive: hover shows the trial and its params).
"""

from __future__ import annotations

import html
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from hpo.core import results
from hpo.core.names import MISSION_PARAMS
from hpo.core.results import TrialResult, ms_text
from hpo.present.study_view import EndedTrial, ModelSource, Progress, StudyView, study_view
from hpo.store.connect import StoredStudy
from hpo.store.optuna_internals import save_trial_note, trial_notes
from models.catalog import NORMS

# One color per norm type, the same in every figure (and in the report's PNGs).
NORM_COLORS = {
    "batch": "#1f77b4",
    "group": "#ff7f0e",
    "layer": "#2ca02c",
    "instance": "#d62728",
    "none": "#7f7f7f",
}
OTHER_COLOR = "#9467bd"
FRONT_COLOR = "#111111"
STOPPED_COLOR = "#888888"
# Captions of the dashboard's own panels: the report has none of those.
DASHBOARD_ONLY = frozenset({"hpo-reading-guide"})
# Below this many complete trials the dashboard's stock panels mislead: fANOVA importance fits
# a handful of points (on the quickstart's 3 complete trials it gave lr 0.96 of the latency's
# importance, which lr cannot change), the stock Pareto plot colours by trial number (its best
# trial near-white), and the contour plot pairs stopped trials' params with other trials'
# values. 20 is a rule of thumb, not a measurement: about 5 complete trials per searched param
# of the quickstart's four.
TRUSTED_STOCK_PANELS = 20
# Below this many points a box plot draws quartiles of almost nothing: show the points alone.
BOX_MIN_POINTS = 5
# Dashboard figure ids (valid HTML ids); saving under the same id replaces the figure. The
# latency-budget answer comes first: it is what most people open the dashboard for.
DASHBOARD_FIGURES = (
    "hpo-reading-guide",
    "hpo-latency-budget",
    "hpo-pareto-front",
    "hpo-hypervolume",
    "hpo-learning-curves",
    "hpo-latency-by-norm",
    "hpo-accuracy-by-norm",
    "hpo-accuracy-by-optimizer",
    "hpo-accuracy-by-scheduler",
)


def norm_color(norm: Any) -> str:
    return NORM_COLORS.get(str(norm), OTHER_COLOR)


def norm_order(norm: str) -> tuple[int, str]:
    return (NORMS.index(norm) if norm in NORMS else len(NORMS), norm)


def _hover(r: TrialResult) -> str:
    params = "<br>".join(f"{k} = {_short(v)}" for k, v in _shown_params(r.params).items())
    return (
        f"trial {r.number}<br>accuracy {r.accuracy:.2%}<br>latency {r.latency_ms:.4g} ms"
        f"<br>{params}"
    )


def _shown_params(params: Mapping[str, Any]) -> dict[str, Any]:
    leading = {k: params[k] for k in ("model", *MISSION_PARAMS) if k in params}
    return {**leading, **{k: v for k, v in sorted(params.items()) if k not in leading}}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _by_norm(finished: Sequence[TrialResult]) -> list[tuple[str, list[TrialResult]]]:
    """The trials of each norm type, the norms in their fixed order."""
    norms = sorted({str(r.params.get("norm")) for r in finished}, key=norm_order)
    return [(norm, [r for r in finished if str(r.params.get("norm")) == norm]) for norm in norms]


def _norm_markers(
    norm: str, members: Sequence[TrialResult], x: Sequence[float], *, name: str
) -> go.Scatter:
    """One norm type's trials as markers in its color (accuracy up), hover naming each trial."""
    return go.Scatter(
        x=x,
        y=[r.accuracy for r in members],
        mode="markers",
        name=name,
        marker={"color": norm_color(norm), "size": 9},
        hovertext=[_hover(r) for r in members],
        hoverinfo="text",
    )


def _layout(figure: go.Figure, title: str, x: str, y: str) -> go.Figure:
    figure.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 60, "r": 20, "t": 60, "b": 60},
    )
    return figure


def pareto_figure(
    finished: Sequence[TrialResult], front: Sequence[TrialResult], reference: tuple[float, float]
) -> go.Figure:
    """Accuracy vs latency of every complete trial, colored by norm, with the front line."""
    figure = go.Figure()
    for norm, members in _by_norm(finished):
        latencies = [r.latency_ms for r in members]
        figure.add_trace(
            _norm_markers(norm, members, latencies, name=f"norm = {norm} ({len(members)})")
        )
    if front:
        figure.add_trace(
            go.Scatter(
                x=[r.latency_ms for r in front] + [reference[1]],
                y=[r.accuracy for r in front] + [front[-1].accuracy],
                mode="lines",
                line={"shape": "hv", "color": FRONT_COLOR, "dash": "dash", "width": 1.5},
                name=f"Pareto front ({len(front)})",
                hoverinfo="skip",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=[r.latency_ms for r in front],
                y=[r.accuracy for r in front],
                mode="markers+text",
                text=[f"#{r.number}" for r in front],
                textposition="top left",
                marker={
                    "size": 16,
                    "color": "rgba(0,0,0,0)",
                    "line": {"color": FRONT_COLOR, "width": 2},
                },
                name="on the front",
                hovertext=[_hover(r) for r in front],
                hoverinfo="text",
            )
        )
    figure.update_yaxes(tickformat=".1%")
    return _layout(
        figure,
        f"Pareto front of {len(finished)} complete trials",
        "latency_ms (folded net, median single-image; lower is better)",
        "validation accuracy (higher is better)",
    )


def budget_figure(
    front: Sequence[TrialResult],
    reference: tuple[float, float],
    sources: Mapping[int, ModelSource],
    progress: Progress,
    *,
    links: bool = True,
) -> go.Figure:
    """The best accuracy reachable within each latency budget: a step over the Pareto front,
    each step naming its trial and how to get its model (`links`: ONNX downloads served by the
    dashboard)."""
    figure = go.Figure()
    latencies = [r.latency_ms for r in front]
    accuracies = [r.accuracy for r in front]
    figure.add_trace(
        go.Scatter(
            x=[*latencies, reference[1]],
            y=[*accuracies, accuracies[-1]],
            mode="lines",
            line={"shape": "hv", "color": FRONT_COLOR, "width": 2},
            name="best accuracy within the budget",
            hoverinfo="skip",
        )
    )
    hover = []
    for r in front:
        source = sources.get(r.number)
        how = (
            "ONNX on its trial page (Artifacts)"
            if source and source.onnx_url
            else "no stored model"
        )
        command = html.escape(source.export_command) if source else ""
        if source and source.command_note:
            command += f"<br>({html.escape(source.command_note)})"
        hover.append(
            f"budget >= {ms_text(r.latency_ms)} ms: trial {r.number}, accuracy {r.accuracy:.2%}"
            f"<br>{_shown(r.params)}<br>model: {how}<br>{command}"
        )
    figure.add_trace(
        go.Scatter(
            x=latencies,
            y=accuracies,
            mode="markers",
            marker={"size": 10, "color": FRONT_COLOR},
            name="front trial (hover: how to get its model)",
            hovertext=hover,
            hoverinfo="text",
        )
    )
    for r in front:
        source = sources.get(r.number)
        label = f"#{r.number} {r.accuracy:.1%} @ {ms_text(r.latency_ms)} ms"
        if links and source is not None and source.onnx_url is not None:
            label += f" <a href='{source.onnx_url}'>ONNX</a>"
        else:
            label += f" (hpo export --trial {r.number})"
        figure.add_annotation(
            x=r.latency_ms, y=r.accuracy, text=label, showarrow=False, xanchor="left", yshift=12
        )
    figure.update_yaxes(tickformat=".1%")
    figure.update_layout(showlegend=True)
    return _layout(
        figure,
        f"Best accuracy within a latency budget<br><sup>{progress.line()}</sup>",
        "latency budget (ms, folded net, median single-image)",
        "best validation accuracy within the budget",
    )


def reading_guide_figure(n_complete: int, n_stopped: int, progress: Progress) -> go.Figure:
    """A caption for the page: the study's status, and how far to trust the stock panels."""
    if n_complete < TRUSTED_STOCK_PANELS:
        advice = (
            f"{n_complete} complete trials (fewer than {TRUSTED_STOCK_PANELS}): read the stock "
            "panels above with care.<br>Hyperparameter Importance fits a handful of points "
            "(any param can look decisive, even for latency);<br>the stock Pareto Front colours "
            "trials by number, not by quality; the contour plot mixes stopped trials' params "
            "with others' values.<br>The figures below use every trained trial "
            f"({n_complete} complete, {n_stopped} stopped)."
        )
    else:
        advice = (
            f"{n_complete} complete trials: enough for the stock panels above; "
            f"the figures below also show the {n_stopped} trials that stopped early."
        )
    figure = go.Figure()
    figure.add_annotation(
        text=advice, x=0, y=1, xref="paper", yref="paper", showarrow=False, align="left",
        xanchor="left", yanchor="top",
    )  # fmt: skip
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(
        title=f"Study status: {progress.line()}",
        template="plotly_white",
        height=220,
        margin={"l": 20, "r": 20, "t": 60, "b": 20},
    )
    return figure


def _shown(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_short(params[k])}" for k in MISSION_PARAMS if k in params)


def hypervolume_figure(
    history: Sequence[tuple[int, float]], reference: tuple[float, float], progress: Progress
) -> go.Figure:
    """Hypervolume of the trials completed so far, against trial number, drawn to the last
    finished trial (no gain after the last complete one is a result too)."""
    numbers = [n for n, _ in history]
    volumes = [v for _, v in history]
    if progress.last_trial is not None and numbers and progress.last_trial > numbers[-1]:
        numbers.append(progress.last_trial)
        volumes.append(volumes[-1])
    figure = go.Figure(
        go.Scatter(
            x=numbers,
            y=volumes,
            mode="lines+markers",
            line={"shape": "hv"},
            name="hypervolume",
            hovertemplate="after trial %{x}: %{y:.4g}<extra></extra>",
        )
    )
    figure.update_yaxes(rangemode="tozero")
    figure.update_xaxes(tickformat="d")
    return _layout(
        figure,
        f"Hypervolume history<br><sup>{progress.line()}; reference: accuracy {reference[0]:g}, "
        f"latency_ms {ms_text(reference[1])}</sup>",
        "trial number",
        "hypervolume (accuracy x ms; only grows)",
    )


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


def _points_or_box(
    x: str, y: Sequence[float], hover: Sequence[str], name: str, color: str, symbol: str
) -> go.Box | go.Scatter:
    """A box with its points from BOX_MIN_POINTS points on; the points alone below that."""
    if len(y) >= BOX_MIN_POINTS:
        return go.Box(
            x=[x] * len(y),
            y=list(y),
            name=name,
            boxpoints="all",
            jitter=0.3,
            marker={"color": color, "symbol": symbol},
            line={"color": color},
            hovertext=list(hover),
            hoverinfo="text",
            legendgroup=name,
            showlegend=False,
        )
    return go.Scatter(
        x=[x] * len(y),
        y=list(y),
        mode="markers",
        name=name,
        marker={"color": color, "symbol": symbol, "size": 10, "line": {"width": 1.5}},
        hovertext=list(hover),
        hoverinfo="text",
        legendgroup=name,
        showlegend=False,
    )


def _legend_entry(name: str, color: str, symbol: str) -> go.Scatter:
    """A legend line for a marker style (the data traces stay out of the legend)."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name=name,
        marker={"color": color, "symbol": symbol, "size": 10, "line": {"width": 1.5}},
    )


def latency_by_norm_figure(view: StudyView) -> go.Figure:
    """Latency of every trial whose architecture was timed, per norm type: complete trials and
    those that stopped or were never trained (the probe measured them all)."""
    rows = view.probed_latencies()
    norms = sorted({norm for norm, _, _ in rows}, key=norm_order)
    figure = go.Figure()
    for norm in norms:
        for complete, symbol in ((True, "circle"), (False, "x-thin-open")):
            latencies = [ms for n, ms, c in rows if n == norm and c == complete]
            if latencies:
                hover = [f"{norm}: {ms_text(ms)} ms" for ms in latencies]
                trace = _points_or_box(norm, latencies, hover, norm, norm_color(norm), symbol)
                figure.add_trace(trace)
    figure.add_trace(_legend_entry("complete trial", FRONT_COLOR, "circle"))
    figure.add_trace(_legend_entry("stopped or not trained (probe)", FRONT_COLOR, "x-thin-open"))
    counts = {norm: sum(1 for n, _, _ in rows if n == norm) for norm in norms}
    figure.update_xaxes(
        type="category",
        categoryorder="array",
        categoryarray=norms,
        ticktext=[f"{n} ({counts[n]})" for n in norms],
        tickvals=norms,
    )
    return _layout(
        figure,
        f"Latency by norm type ({len(rows)} timed architectures; boxes from "
        f"{BOX_MIN_POINTS} points on)",
        "norm",
        "latency_ms",
    )


def accuracy_by_figure(
    finished: Sequence[TrialResult], stopped: Sequence[EndedTrial], key: str
) -> go.Figure:
    """Validation accuracy per value of `key` over every trained trial: complete trials at
    their final accuracy, stopped ones (open crosses) at their last epoch's."""
    complete_by: dict[str, list[TrialResult]] = {}
    for r in finished:
        complete_by.setdefault(str(r.params.get(key)), []).append(r)
    stopped_by: dict[str, list[EndedTrial]] = {}
    for e in stopped:
        stopped_by.setdefault(str(e.params.get(key)), []).append(e)
    values = sorted(set(complete_by) | set(stopped_by), key=norm_order if key == "norm" else str)
    figure = go.Figure()
    for value in values:
        members = complete_by.get(value, [])
        if members:
            y = [r.accuracy for r in members]
            figure.add_trace(
                _points_or_box(value, y, [_hover(r) for r in members], value, FRONT_COLOR, "circle")
            )
        ended = stopped_by.get(value, [])
        if ended:
            hover = [
                f"trial {e.number} ({e.state}) after {len(e.curve)} epoch(s): "
                f"{e.curve[-1]:.2%}<br>{html.escape(e.reason)}"
                for e in ended
            ]
            y = [e.curve[-1] for e in ended]
            figure.add_trace(_points_or_box(value, y, hover, value, STOPPED_COLOR, "x-thin-open"))
    figure.add_trace(_legend_entry("complete (final accuracy)", FRONT_COLOR, "circle"))
    figure.add_trace(_legend_entry("stopped (last epoch's accuracy)", STOPPED_COLOR, "x-thin-open"))
    ticks = [
        f"{v} ({len(complete_by.get(v, []))} + {len(stopped_by.get(v, []))} stopped)"
        for v in values
    ]
    figure.update_xaxes(
        type="category",
        categoryorder="array",
        categoryarray=values,
        tickvals=values,
        ticktext=ticks,
    )
    figure.update_yaxes(tickformat=".1%")
    return _layout(
        figure,
        f"Validation accuracy by {key} ({len(finished)} complete, {len(stopped)} stopped trials)",
        key,
        "validation accuracy",
    )


def accuracy_vs_macs_figure(
    finished: Sequence[TrialResult], macs: Mapping[int, float]
) -> go.Figure | None:
    """Accuracy against the folded network's multiply-accumulates, colored by norm; None when
    every trial has the same MACs (nothing to read along that axis)."""
    if len({macs[r.number] for r in finished if r.number in macs}) < 2:
        return None
    figure = go.Figure()
    for norm, of_norm in _by_norm(finished):
        members = [r for r in of_norm if r.number in macs]
        mmacs = [macs[r.number] / 1e6 for r in members]
        figure.add_trace(_norm_markers(norm, members, mmacs, name=f"norm = {norm}"))
    figure.update_yaxes(tickformat=".1%")
    figure.update_layout(showlegend=True)
    return _layout(
        figure, "Accuracy vs compute", "MMACs per image (folded net)", "validation accuracy"
    )


def learning_curves_figure(
    curves: Mapping[int, Sequence[float]],
    front_trials: Sequence[TrialResult],
    ended: Sequence[EndedTrial] = (),
) -> go.Figure:
    """Validation accuracy after each epoch of every trial that recorded it, front trials drawn
    bold; a cross marks the epoch where a trial was stopped, its hover saying why."""
    front = {r.number for r in front_trials}
    why = {e.number: e for e in ended}
    figure = go.Figure()
    for number, curve in sorted(curves.items()):
        on_front = number in front
        stopped = number in why
        figure.add_trace(
            go.Scatter(
                x=list(range(1, len(curve) + 1)),
                y=list(curve),
                mode="lines+markers",
                name=f"trial {number}" + (" (front)" if on_front else ""),
                line={"width": 3 if on_front else 1, "dash": "dot" if stopped else "solid"},
                opacity=1.0 if on_front else 0.6,
                hovertemplate=f"trial {number}, epoch %{{x}}: %{{y:.2%}}<extra></extra>",
            )
        )
    marked = [e for e in ended if e.curve and e.number in curves]
    if marked:
        figure.add_trace(
            go.Scatter(
                x=[len(e.curve) for e in marked],
                y=[e.curve[-1] for e in marked],
                mode="markers",
                name=f"stopped here ({len(marked)})",
                marker={"symbol": "x", "size": 14, "color": "#d62728", "line": {"width": 1}},
                hovertext=[
                    f"trial {e.number} {e.state} after epoch {len(e.curve)}: "
                    f"{html.escape(e.reason)}"
                    for e in marked
                ],
                hoverinfo="text",
            )
        )
    figure.update_yaxes(tickformat=".0%")
    figure.update_xaxes(tickformat="d")
    return _layout(
        figure,
        "Learning curves (validation accuracy per epoch; x: where a trial was stopped)",
        "epoch",
        "validation accuracy",
    )


def dashboard_figures(view: StudyView, *, links: bool = True) -> dict[str, go.Figure]:
    """The dashboard's figures by id; empty while no trial is complete."""
    finished = view.finished
    if not finished:
        return {}
    reference = results.reference_point(finished)
    front = view.front
    history = results.hypervolume_history(view.feasible, reference)
    figures = [
        reading_guide_figure(len(finished), len(view.stopped), view.progress),
        budget_figure(front, reference, view.sources, view.progress, links=links),
        pareto_figure(finished, front, reference),
        hypervolume_figure(history, reference, view.progress),
        learning_curves_figure(view.curves, front, view.ended),
        latency_by_norm_figure(view),
        accuracy_by_figure(finished, view.stopped, "norm"),
        accuracy_by_figure(finished, view.stopped, "optimizer"),
        accuracy_by_figure(finished, view.stopped, "scheduler"),
    ]
    return dict(zip(DASHBOARD_FIGURES, figures, strict=True))


def reason_note(ended: EndedTrial) -> str:
    """A stopped or failed trial's dashboard note: why, first thing on its page."""
    what = "Stopped" if ended.state == "PRUNED" else "Failed"
    epochs = f" after {len(ended.curve)} epoch(s)" if ended.curve else " before training"
    return f"**{what}{epochs}:** {ended.reason}\n"


def note_reasons(stored: StoredStudy, ended: Sequence[EndedTrial]) -> int:
    """Give each trial that ended early a note saying why, unless it has one; how many."""
    written = 0
    note_of = trial_notes(stored.storage, stored.study_id)
    for trial in ended:
        trial_id = stored.storage.get_trial_id_from_study_id_trial_number(
            stored.study_id, trial.number
        )
        if not note_of(trial_id).strip():
            save_trial_note(stored.storage, stored.study_id, trial_id, reason_note(trial))
            written += 1
    return written


def publish(stored: StoredStudy, artifact_folder: str | None = None) -> int:
    """Save the study's figures for optuna-dashboard, replacing the previous ones, and note why
    each trial that ended early did; returns how many figures."""
    from optuna_dashboard import save_plotly_graph_object

    view = study_view(stored, artifact_folder)
    note_reasons(stored, view.ended)
    figures = dashboard_figures(view)
    for figure_id, figure in figures.items():
        save_plotly_graph_object(stored.study, figure, graph_object_id=figure_id)
    return len(figures)


class FigureRefresh:
    """`publish` for the runner's after-trial hook, kept to a small share of a worker's time.

    Redrawing reads every trial and saves nine figures: 0.3 s at 10 trials, 0.8 s at 300 and
    2 s at 1,000 on the 2-core machine (benchmarks/storage.py), so after every trial it would
    cost short trials more than their training. A redraw is due once `min_interval_s` has
    passed since the last one (or since the worker started) and the last one's duration is at
    most `share` of the time since; `flush` draws what is left when the worker ends. A failure
    is told once and never stops the trials (the figures are a view of the study; the next
    redraw, or `hpo dashboard`, draws them).
    """

    def __init__(
        self,
        warn: Callable[[str], None],
        *,
        min_interval_s: float = 10.0,
        share: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._warn, self._clock = warn, clock
        self._min_interval_s, self._share = min_interval_s, share
        self._last_end = clock()
        self._last_cost = 0.0
        self._pending: StoredStudy | None = None
        self._told = False

    def __call__(self, stored: StoredStudy) -> None:
        """After a trial: redraw now if due, else leave it for a later trial or `flush`."""
        self._pending = stored
        waited = self._clock() - self._last_end
        if waited >= max(self._min_interval_s, self._last_cost / self._share):
            self.flush()

    def flush(self) -> None:
        """Redraw the figures if a trial ended since the last redraw."""
        stored, self._pending = self._pending, None
        if stored is None:
            return
        start = self._clock()
        try:
            publish(stored)
        except Exception as exc:  # noqa: BLE001 - any plotting/storage error; trials go on
            if not self._told:
                self._warn(f"dashboard figures not updated: {type(exc).__name__}: {exc}")
                self._told = True
        self._last_end = self._clock()
        self._last_cost = self._last_end - start

"""Study figures as plotly objects, for the dashboard (custom plots) and the HTML report.

optuna-dashboard shows plotly figures saved to a study with its public
`save_plotly_graph_object`; `publish` saves these under fixed ids, so each save replaces the
last one, and the runner calls it after every trial, so the figures stay current while a study
runs. The report embeds the same figures (interactive: hover shows the trial and its params).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from hpo.core import results
from hpo.core.names import MISSION_PARAMS
from hpo.core.results import TrialResult
from hpo.core.trial_attrs import VAL_CURVE_ATTR
from hpo.store import queries
from hpo.store.connect import StoredStudy
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
# Dashboard figure ids (valid HTML ids); saving under the same id replaces the figure.
DASHBOARD_FIGURES = (
    "hpo-pareto-front",
    "hpo-hypervolume",
    "hpo-latency-by-norm",
    "hpo-accuracy-by-optimizer",
    "hpo-accuracy-by-scheduler",
    "hpo-learning-curves",
)


def norm_color(norm: Any) -> str:
    return NORM_COLORS.get(str(norm), OTHER_COLOR)


def norm_order(norm: str) -> tuple[int, str]:
    return (NORMS.index(norm) if norm in NORMS else len(NORMS), norm)


def _hover(r: TrialResult) -> str:
    params = "<br>".join(f"{k} = {_short(v)}" for k, v in _shown_params(r.params).items())
    return (
        f"trial {r.number}<br>accuracy {r.accuracy:.2%}<br>latency {r.latency_ms:.3f} ms"
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


def hypervolume_figure(
    history: Sequence[tuple[int, float]], reference: tuple[float, float]
) -> go.Figure:
    """Hypervolume of the trials completed so far, against trial number."""
    figure = go.Figure(
        go.Scatter(
            x=[n for n, _ in history],
            y=[v for _, v in history],
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
        f"Hypervolume history (reference: accuracy {reference[0]:g}, "
        f"latency_ms {reference[1]:.3g})",
        "trial number",
        "hypervolume (accuracy x ms; only grows)",
    )


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, median, high


def latency_by_norm_figure(finished: Sequence[TrialResult]) -> go.Figure:
    """Median latency per norm type over the complete trials, error bars from the quartiles."""
    groups = _by_norm(finished)
    norms = [norm for norm, _ in groups]
    stats = {norm: _quartiles(sorted(r.latency_ms for r in members)) for norm, members in groups}
    figure = go.Figure(
        go.Bar(
            x=norms,
            y=[stats[n][1] for n in norms],
            marker_color=[norm_color(n) for n in norms],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [stats[n][2] - stats[n][1] for n in norms],
                "arrayminus": [stats[n][1] - stats[n][0] for n in norms],
            },
            hovertemplate="%{x}: median %{y:.3f} ms<extra></extra>",
            name="latency_ms",
        )
    )
    return _layout(
        figure,
        "Latency by norm type (median over trials; bars: interquartile range)",
        "norm",
        "latency_ms",
    )


def accuracy_by_figure(finished: Sequence[TrialResult], key: str) -> go.Figure:
    """Validation accuracy of every complete trial, one box per value of `key`."""
    values = sorted({str(r.params.get(key)) for r in finished})
    figure = go.Figure()
    for value in values:
        members = [r for r in finished if str(r.params.get(key)) == value]
        figure.add_trace(
            go.Box(
                y=[r.accuracy for r in members],
                name=f"{value} ({len(members)})",
                boxpoints="all",
                jitter=0.3,
                hovertext=[_hover(r) for r in members],
                hoverinfo="text",
            )
        )
    figure.update_yaxes(tickformat=".1%")
    figure.update_layout(showlegend=False)
    return _layout(figure, f"Validation accuracy by {key}", key, "validation accuracy")


def accuracy_vs_macs_figure(
    finished: Sequence[TrialResult], macs: Mapping[int, float]
) -> go.Figure:
    """Accuracy against the folded network's multiply-accumulates, colored by norm."""
    figure = go.Figure()
    for norm, of_norm in _by_norm(finished):
        members = [r for r in of_norm if r.number in macs]
        mmacs = [macs[r.number] / 1e6 for r in members]
        figure.add_trace(_norm_markers(norm, members, mmacs, name=f"norm = {norm}"))
    figure.update_yaxes(tickformat=".1%")
    return _layout(
        figure, "Accuracy vs compute", "MMACs per image (folded net)", "validation accuracy"
    )


def learning_curves_figure(
    curves: Mapping[int, Sequence[float]], finished: Sequence[TrialResult]
) -> go.Figure:
    """Validation accuracy after each epoch of every trial that recorded it (pruned ones end
    early), front trials drawn bold."""
    front = {r.number for r in results.pareto_front(finished)}
    figure = go.Figure()
    for number, curve in sorted(curves.items()):
        on_front = number in front
        figure.add_trace(
            go.Scatter(
                x=list(range(1, len(curve) + 1)),
                y=list(curve),
                mode="lines+markers",
                name=f"trial {number}" + (" (front)" if on_front else ""),
                line={"width": 3 if on_front else 1},
                opacity=1.0 if on_front else 0.5,
                hovertemplate=f"trial {number}, epoch %{{x}}: %{{y:.2%}}<extra></extra>",
            )
        )
    figure.update_yaxes(tickformat=".0%")
    figure.update_xaxes(tickformat="d")
    return _layout(
        figure, "Learning curves (validation accuracy per epoch)", "epoch", "validation accuracy"
    )


def dashboard_figures(
    finished: Sequence[TrialResult], curves: Mapping[int, Sequence[float]]
) -> dict[str, go.Figure]:
    """The dashboard's figures by id; empty while no trial is complete."""
    if not finished:
        return {}
    reference = results.reference_point(finished)
    front = results.pareto_front(finished)
    history = results.hypervolume_history(finished, reference)
    figures = [
        pareto_figure(finished, front, reference),
        hypervolume_figure(history, reference),
        latency_by_norm_figure(finished),
        accuracy_by_figure(finished, "optimizer"),
        accuracy_by_figure(finished, "scheduler"),
        learning_curves_figure(curves, finished),
    ]
    return dict(zip(DASHBOARD_FIGURES, figures, strict=True))


def publish(stored: StoredStudy) -> int:
    """Save the study's figures for optuna-dashboard, replacing the previous ones; how many."""
    from optuna_dashboard import save_plotly_graph_object

    curves = queries.attribute_values(stored, VAL_CURVE_ATTR)
    figures = dashboard_figures(queries.completed(stored), curves)
    for figure_id, figure in figures.items():
        save_plotly_graph_object(stored.study, figure, graph_object_id=figure_id)
    return len(figures)


def publisher(warn: Callable[[str], None]) -> Callable[[StoredStudy], None]:
    """`publish` for the runner's after-trial hook: a failure is told once and never stops
    the trials (the figures are a view of the study; the next trial redraws them)."""
    told = False

    def update(stored: StoredStudy) -> None:
        nonlocal told
        try:
            publish(stored)
        except Exception as exc:  # noqa: BLE001 - any plotting/storage error; trials go on
            if not told:
                warn(f"dashboard figures not updated: {type(exc).__name__}: {exc}")
                told = True

    return update

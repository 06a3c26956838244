"""Dominance when latency is noisy: latencies within the larger IQR are equal, accuracy decides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, create_trial

from hpo.core.dominance import dominance, nondominated
from hpo.core.results import TrialResult, pareto_front
from hpo.core.trial_attrs import SPEC_ATTR, readable


def test_a_latency_within_the_spread_is_a_tie_accuracy_decides() -> None:
    # (accuracy, latency ms, IQR ms): 0.001 ms faster, well inside both IQRs.
    accuracy, latency, spread = [0.663, 0.245], [0.663, 0.662], [0.004, 0.005]
    assert dominance(accuracy, latency, spread).tolist() == [[False, True], [False, False]]
    assert nondominated(accuracy, latency, spread).tolist() == [True, False]
    # Without a recorded spread the comparison is exact: the faster one stays.
    assert nondominated(accuracy, latency).tolist() == [True, True]
    assert nondominated(accuracy, latency, [0.0, None]).tolist() == [True, True]


def test_the_larger_spread_is_the_tolerance() -> None:
    # 0.004 ms apart: within the noisier point's IQR, beyond the quieter one's.
    accuracy, latency = [0.6, 0.5], [1.004, 1.0]
    assert nondominated(accuracy, latency, [0.001, 0.005]).tolist() == [True, False]
    assert nondominated(accuracy, latency, [0.005, 0.001]).tolist() == [True, False]
    assert nondominated(accuracy, latency, [0.001, 0.003]).tolist() == [True, True]


def test_faster_beyond_the_spread_and_as_accurate_dominates() -> None:
    accuracy, latency, spread = [0.5, 0.5, 0.5], [1.0, 1.005, 1.05], [0.01, 0.01, 0.01]
    # The first two are equal on both axes within the noise; the third is slower beyond it.
    assert nondominated(accuracy, latency, spread).tolist() == [True, True, False]


def test_a_chain_of_near_equal_latencies_keeps_its_most_accurate_end() -> None:
    # Each step is within the spread of the next, more accurate one; the ends are 0.03 ms apart.
    latency = [1.00, 1.01, 1.02, 1.03]
    accuracy = [0.50, 0.55, 0.60, 0.65]
    spread = [0.015] * 4
    dominates = dominance(accuracy, latency, spread)
    assert dominates[1, 0] and dominates[2, 1] and dominates[3, 2]
    assert not dominates[3, 0], "not transitive: the far end is measurably slower"
    assert nondominated(accuracy, latency, spread).tolist() == [False, False, False, True]
    # A point measurably faster than every other stays on the front, however inaccurate.
    accuracy.append(0.1)
    latency.append(0.9)
    spread.append(0.015)
    assert nondominated(accuracy, latency, spread).tolist() == [False] * 3 + [True, True]


points = st.lists(
    st.tuples(
        st.sampled_from([0.2, 0.4, 0.5, 0.6]),  # few accuracies: ties happen
        st.floats(0.9, 1.1, allow_subnormal=False),
        st.sampled_from([0.0, 0.005, 0.02, 0.1]),
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=100, deadline=None)
@given(points)
def test_the_front_is_never_empty_and_is_what_nothing_dominates(
    found: list[tuple[float, float, float]],
) -> None:
    accuracy, latency, spread = (np.array(column) for column in zip(*found, strict=True))
    dominates = dominance(accuracy, latency, spread)
    on_front = nondominated(accuracy, latency, spread)
    assert on_front.any(), "no cycles: some point is dominated by none"
    assert on_front.tolist() == (~dominates.any(axis=0)).tolist()
    assert not dominates.diagonal().any()
    for j in np.nonzero(on_front)[0]:
        # No front point has its latency within the spread of a more accurate point's.
        tolerance = np.maximum(spread, spread[j])
        within = np.abs(latency - latency[j]) <= tolerance
        assert not (within & (accuracy > accuracy[j])).any()


@settings(max_examples=100, deadline=None)
@given(points)
def test_without_spreads_it_is_exact_pareto_dominance(
    found: list[tuple[float, float, float]],
) -> None:
    accuracy, latency, _ = (np.array(column) for column in zip(*found, strict=True))
    exact = [
        [
            a_i >= a_j and l_i <= l_j and (a_i > a_j or l_i < l_j)
            for a_j, l_j in zip(accuracy, latency, strict=True)
        ]
        for a_i, l_i in zip(accuracy, latency, strict=True)
    ]
    assert dominance(accuracy, latency).tolist() == exact


def test_the_front_of_results_uses_their_recorded_spread() -> None:
    def result(number: int, accuracy: float, latency: float, iqr: float | None) -> TrialResult:
        return TrialResult(number, accuracy, latency, {}, None, latency / 0.5, None, None, iqr)

    found = [result(3, 0.663, 0.663, 0.004), result(6, 0.245, 0.662, 0.005)]
    assert [r.number for r in pareto_front(found)] == [3]
    # The ratio's spread scales with it: the same tie on the latency_ratio scale.
    assert [r.number for r in pareto_front(found, "latency_ratio")] == [3]
    older = [result(3, 0.663, 0.663, None), result(6, 0.245, 0.662, None)]
    assert [r.number for r in pareto_front(older)] == [6, 3]  # fastest first


def recorded_trial(accuracy: float, norm: str, latency: dict[str, float]) -> FrozenTrial:
    """A finished trial with its probe's latency statistics recorded as the objective does."""
    attrs = readable({"latency": latency, "latency_ms": latency["median_ms"]})
    return create_trial(
        values=[accuracy, latency["median_ms"]],
        params={"norm": norm},
        distributions={"norm": CategoricalDistribution(["batch", "group", "none"])},
        user_attrs=attrs,
    )


def test_every_front_drops_a_trial_within_the_spread_of_a_more_accurate_one(
    tmp_path: Path,
) -> None:
    """The quickstart's case: a no-norm trial 0.001 ms faster than a far more accurate BatchNorm
    trial (the same folded network), inside both probes' IQR. `hpo best`, the view, the report
    and the dashboard's figures leave it off; a measurably faster trial stays on."""
    from hpo.present import figures
    from hpo.present.report import build_report
    from hpo.present.study_view import study_view
    from hpo.store import queries
    from hpo.store.connect import StoredStudy, open_storage
    from tests.conftest import invoke
    from tests.test_views import create_views, sqlite_rows

    def stats(median: float, iqr: float) -> dict[str, float]:
        # The shape of LatencyStats.as_dict(), as a probe of 10 rounds of 50 runs records it.
        return {
            "median_ms": median,
            "mean_ms": median,
            "std_ms": iqr,
            "p90_ms": median + iqr,
            "iqr_ms": iqr,
            "min_ms": median - iqr,
            "loops": 500,
            "rounds": 10,
        }

    url = f"sqlite:///{tmp_path / 'recorded.db'}"
    storage = open_storage(url)
    study = optuna.create_study(
        study_name="recorded", storage=storage, directions=["maximize", "minimize"]
    )
    study.set_user_attr(SPEC_ATTR, {"study": {"name": "recorded"}})  # as hpo creates its studies
    study.add_trials(
        [
            recorded_trial(0.663, "batch", stats(0.6630, 0.0061)),  # trial 0
            recorded_trial(0.245, "none", stats(0.6620, 0.0057)),  # trial 1: the tie
            recorded_trial(0.690, "group", stats(0.9120, 0.0213)),  # trial 2: slower, better
            recorded_trial(0.300, "none", stats(0.6400, 0.0049)),  # trial 3: measurably faster
        ]
    )
    expected = [3, 0, 2]  # fastest first; trial 1 is off
    stored = StoredStudy.of(study, storage)
    assert [r.number for r in queries.best(stored)] == expected
    shown = invoke("best", "--storage", url, "--study-name", "recorded", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert [t["number"] for t in json.loads(shown.stdout)] == expected
    create_views(url)
    rows = sqlite_rows(tmp_path / "recorded.db", "SELECT number FROM hpo_trials WHERE on_front = 1")
    assert sorted(r["number"] for r in rows) == sorted(expected)
    assert [r.number for r in build_report(stored).front] == expected
    pareto = figures.dashboard_figures(study_view(stored))["hpo-pareto-front"]
    (marked,) = [trace for trace in pareto.data if trace.name == "on the front"]
    assert list(marked.text) == [f"#{n}" for n in expected]
    storage.engine.dispose()

"""Dominance when latency is noisy: latencies within the larger IQR are equal, accuracy decides."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hpo.core.dominance import dominance, nondominated
from hpo.core.results import TrialResult, pareto_front


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

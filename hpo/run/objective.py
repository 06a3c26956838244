"""One trial, end to end: probe -> (budget) -> train -> evaluate -> fold -> check.

Latency depends only on the architecture, so it is probed before training (`hpo.run.probing`,
cached in the database per architecture and device); an architecture over the study's latency
budget is never trained. The probe's latency is the trial's objective: the trained network is
not timed again (a probe and a post-training measurement agree within their spread; see
tests/test_probes.py).

`train_configuration` knows nothing about Optuna; `Objective` adapts it to a trial (ask the
search space, record user attributes, turn a failure into a FAIL with a reason people can read)
and hands the finished networks to whatever the runner wants done with them (e.g. store them as
artifacts).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError

import models
from hpo.core.spec import Spec
from hpo.core.trial_attrs import (
    COST_LAYERS_ATTR,
    DATASET_ATTR,
    EPOCH_ATTR,
    FINAL_TRAIN_LOSS_ATTR,
    FOLD_MAX_ABS_DIFF_ATTR,
    FOLD_REPORT_ATTR,
    LATENCY_IQR_ATTR,
    LATENCY_MS_ATTR,
    MACS_ATTR,
    N_FOLDED_ATTR,
    N_KEPT_ATTR,
    N_PARAMS_ATTR,
    N_PARAMS_FOLDED_ATTR,
    PROBE_CACHED_ATTR,
    PROBE_SECONDS_ATTR,
    RUNG_ATTR,
    STOP_REASON_ATTR,
    SUGGEST_SECONDS_ATTR,
    TEST_ACCURACY_ATTR,
    TRAIN_IMAGES_PER_SECOND_ATTR,
    TRAIN_SECONDS_ATTR,
    VAL_ACCURACY_ATTR,
    VAL_CURVE_ATTR,
    rounded,
)
from hpo.core.trial_config import TrialConfig
from hpo.measure import cost, fusion
from hpo.measure.fused import (
    check_runtime_outputs,
    measure_fold_speedup,
    measure_objective_latency,
)
from hpo.measure.latency_result import LatencyResult
from hpo.run.failures import (
    TrialCrashed,
    TrialFailed,
    failure_reason,
    is_out_of_memory,
    note_failure,
)
from hpo.run.signals import mark_interrupted_trial
from hpo.search import space
from hpo.search.pruning import ParetoHalving
from hpo.store.outcomes import OVER_BUDGET
from hpo.store.probes import ProbeRecord
from hpo.store.resilience import is_transient
from hpo.store.trial_records import keep_config, record
from hpo.train.data import TensorDataset
from hpo.train.loop import Diverged, evaluate
from hpo.train.model import seeded_network, train_network
from models.user import UnusableNetwork

# Images used to check the folded network against the unfused one.
_EQUIVALENCE_IMAGES = 256
# Images the timed runtime (TorchScript, ONNX Runtime) is checked on, one at a time.
_BACKEND_CHECK_IMAGES = 8


# Constraint name for the latency budget: probe latency - budget (feasible when <= 0).
BUDGET_CONSTRAINT = "latency_budget"


def over_budget_reason(latency_ms: float, budget_ms: float) -> str:
    """Why a trial was not trained, as shown in the terminal, the dashboard and the report."""
    return f"{OVER_BUDGET}: {_ms(latency_ms)} ms > {_ms(budget_ms)} ms"


def _ms(value: float) -> str:
    """Milliseconds with two decimals, or two significant digits below them (a budget of
    1e-9 ms is not 0.00)."""
    return f"{value:.2f}" if abs(value) >= 0.005 else f"{value:.2g}"


@dataclass
class TrialOutcome:
    """The two objectives and everything recorded next to them."""

    accuracy: float
    latency_ms: float
    attrs: dict[str, Any] = field(default_factory=dict)
    # The trained and the folded network, for the runner's hook (never recorded as attributes).
    model: torch.nn.Module | None = field(default=None, repr=False)
    folded: torch.nn.Module | None = field(default=None, repr=False)


# Called with a trial that finished training and its outcome, just before the trial completes.
CompleteHook = Callable[[optuna.Trial, TrialOutcome], None]
TrialStartHook = Callable[[optuna.Trial, TrialConfig], None]


# Called after each epoch with (epoch, epochs, mean training loss, validation accuracy); it may
# stop the trial by raising (e.g. optuna.TrialPruned).
EpochReport = Callable[[int, int, float, float], None]


def train_configuration(
    config: TrialConfig,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    on_epoch: EpochReport | None = None,
    latency: LatencyResult | None = None,
) -> TrialOutcome:
    """Train, evaluate, fold and verify one configuration. Raises Diverged.

    The validation accuracy is measured after every epoch (`val_accuracy_curve`); the last one
    is the objective. `latency` is the architecture's probe result; without
    one, the trained network is timed here.
    """
    model = seeded_network(config, spec.train, data.num_classes, device)
    batch = spec.train.eval_batch_size
    curve: list[float] = []

    def epoch_end(epoch: int, epochs: int, loss: float) -> None:
        curve.append(evaluate(model, data, data.val, batch))
        if on_epoch is not None:
            on_epoch(epoch, epochs, loss, curve[-1])

    trained = train_network(model, config, spec.train, data, epoch_end)
    val_accuracy = curve[-1]
    test_accuracy = evaluate(model, data, data.test, batch)

    model.eval()
    folded, report = fusion.fold_batchnorm(model)
    check_images = data.normalize(data.val.images[:_EQUIVALENCE_IMAGES])
    max_diff = fusion.check_equivalence(model, folded, check_images)
    if latency is None:
        latency = measure_objective_latency(folded, spec.latency, device)
    if latency.fold is None:
        # A probe made under another study's latency budget skipped the fold speedup.
        latency = latency.with_fold(measure_fold_speedup(model, folded, spec.latency, device))
    timing = {
        **latency.as_attrs(),
        **check_runtime_outputs(
            model, folded, spec.latency, device, check_images[:_BACKEND_CHECK_IMAGES]
        ),
    }
    folded_cost = cost.count_cost(folded, tuple(check_images.shape[1:]))
    attrs = {
        VAL_ACCURACY_ATTR: val_accuracy,
        VAL_CURVE_ATTR: curve,
        TEST_ACCURACY_ATTR: test_accuracy,
        N_PARAMS_ATTR: models.count_parameters(model),
        TRAIN_SECONDS_ATTR: trained.seconds,
        TRAIN_IMAGES_PER_SECOND_ATTR: trained.images_per_second,
        FINAL_TRAIN_LOSS_ATTR: trained.final_loss,
        FOLD_REPORT_ATTR: report.as_dict(),
        N_FOLDED_ATTR: report.n_folded,
        N_KEPT_ATTR: report.n_kept,
        FOLD_MAX_ABS_DIFF_ATTR: max_diff,
        MACS_ATTR: folded_cost.macs,
        N_PARAMS_FOLDED_ATTR: folded_cost.params,
        COST_LAYERS_ATTR: folded_cost.layer_dicts(),
        DATASET_ATTR: data.source,
        **timing,
    }
    return TrialOutcome(val_accuracy, latency.median_ms, attrs, model, folded)


# Points (accuracy at an epoch, latency, latency IQR) of the other trials that reached that
# epoch: called with (epoch, this trial's number).
RungPoints = Callable[[int, int], list[tuple[float, float, float]]]


class Objective:
    """Optuna objective: (validation accuracy, fused latency in ms)."""

    def __init__(
        self,
        spec: Spec,
        data: TensorDataset,
        device: torch.device,
        on_trial_start: TrialStartHook | None = None,
        on_epoch: EpochReport | None = None,
        on_complete: CompleteHook | None = None,
        probe_architecture: Callable[[dict[str, Any]], ProbeRecord] | None = None,
        rung_points: RungPoints | None = None,
    ) -> None:
        self.spec = spec
        self.data = data
        self.device = device
        self.on_trial_start = on_trial_start
        self.on_epoch = on_epoch
        self.on_complete = on_complete
        self.probe_architecture = probe_architecture
        self.rung_points = rung_points
        study = spec.study
        self.pruner = (
            ParetoHalving(study.pruner_eta, study.pruner_min_epochs)
            if study.pruner == "pareto"
            and probe_architecture is not None
            and rung_points is not None
            else None
        )

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        try:
            return self._run(trial)
        except (optuna.TrialPruned, UpdateFinishedTrialError):
            # Stopped by the pruning rules; or finished by another worker, which took this one
            # for dead (the worker loop drops the trial with one line).
            raise
        except KeyboardInterrupt as interrupt:
            # The worker loop marks the trial FAIL and re-raises; say why for whoever reads it.
            note_failure(trial, failure_reason(interrupt))
            mark_interrupted_trial(interrupt, trial.number)
            raise
        except Exception as exc:
            if is_transient(exc):
                raise  # the database, not the trial: the worker rides it out or stops
            reason = failure_reason(exc)
            if isinstance(exc, Diverged | UnusableNetwork) or is_out_of_memory(exc):
                # Another configuration may train (or fit, or build: a user's factory that
                # raises for some params only): the study goes on.
                if is_out_of_memory(exc) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                note_failure(trial, reason)
                raise TrialFailed(reason) from None
            note_failure(trial, reason, traceback.format_exc())
            raise TrialCrashed(trial.number, reason) from exc

    def _run(self, trial: optuna.Trial) -> tuple[float, float]:
        started = time.perf_counter()
        config = space.suggest(trial, self.spec, keep=keep_config)
        # The sampler runs inside suggest: its cost per trial, next to the training time.
        record(trial, {SUGGEST_SECONDS_ATTR: time.perf_counter() - started})
        if self.on_trial_start is not None:
            self.on_trial_start(trial, config)
        latency = self._latency_before_training(trial, config)
        on_epoch = self._epoch_hook(trial, latency)
        outcome = train_configuration(config, self.spec, self.data, self.device, on_epoch, latency)
        record(trial, outcome.attrs)
        if self.on_complete is not None:
            self.on_complete(trial, outcome)
        return outcome.accuracy, outcome.latency_ms

    def _latency_before_training(
        self, trial: optuna.Trial, config: TrialConfig
    ) -> LatencyResult | None:
        """The architecture's latency before training; an architecture over the budget ends
        the trial here (PRUNED, infeasible), untrained."""
        if self.probe_architecture is None:
            return None
        started = time.perf_counter()
        probe = self.probe_architecture(config.architecture())
        seconds = time.perf_counter() - started
        # latency_ms and its spread are known before training: the dashboard shows them for a
        # running trial, and the pruner compares them.
        record(
            trial,
            {
                PROBE_CACHED_ATTR: probe.cached,
                PROBE_SECONDS_ATTR: seconds,
                LATENCY_MS_ATTR: probe.latency_ms,
                LATENCY_IQR_ATTR: probe.latency.iqr_ms,
            },
        )
        budget = self.spec.study.max_latency_ms
        if budget is not None:
            # Samplers that read constraints (TPE, NSGA-II, GP) learn where the budget lies.
            trial.set_constraint(BUDGET_CONSTRAINT, probe.latency_ms - budget)
            if probe.latency_ms > budget:
                record(trial, probe.latency.as_attrs())
                reason = over_budget_reason(probe.latency_ms, budget)
                record(trial, {STOP_REASON_ATTR: reason})
                raise optuna.TrialPruned(reason)
        return probe.latency

    def _epoch_hook(self, trial: optuna.Trial, latency: LatencyResult | None) -> EpochReport:
        """After each epoch: the live curve as user attributes, the display, the pruning rule."""
        curve: list[float] = []
        rungs = self.pruner.rungs(self.spec.train.epochs) if self.pruner is not None else []

        def after_epoch(epoch: int, epochs: int, loss: float, accuracy: float) -> None:
            curve.append(accuracy)
            # Written every epoch, so a running trial shows its learning curve in the dashboard.
            trial.set_user_attr(VAL_CURVE_ATTR, list(curve))
            trial.set_user_attr(EPOCH_ATTR, epoch)
            if self.on_epoch is not None:
                self.on_epoch(epoch, epochs, loss, accuracy)
            if epoch in rungs and latency is not None:
                self._judge(trial, rungs.index(epoch), epoch, accuracy, latency)

        return after_epoch

    def _judge(
        self,
        trial: optuna.Trial,
        rung: int,
        epoch: int,
        accuracy: float,
        latency: LatencyResult,
    ) -> None:
        """Stop the trial (PRUNED) when the pruner says its point at this rung is dominated."""
        assert self.pruner is not None and self.rung_points is not None
        # As recorded (rounded), like the other trials' points: unrounded, a trial could sit a
        # hair below the latency of its own architecture recorded by others, and never be
        # dominated at it.
        latency_ms = rounded(latency.median_ms)
        spread = rounded(latency.iqr_ms)
        others = self.rung_points(epoch, trial.number)
        if self.pruner.keeps((accuracy, latency_ms, spread), others):
            return
        record(trial, {**latency.as_attrs(), VAL_ACCURACY_ATTR: accuracy, RUNG_ATTR: rung})
        reason = (
            f"stopped at epoch {epoch}: accuracy {accuracy:.2%} at {latency_ms:.4g} ms is "
            f"dominated at rung {rung} and not in the best 1/{self.pruner.eta} of the "
            f"{len(others) + 1} trials there"
        )
        record(trial, {STOP_REASON_ATTR: reason})
        raise optuna.TrialPruned(reason)

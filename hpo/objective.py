"""One trial, end to end: build -> train -> evaluate -> fold -> check -> time.

`run_trial` knows nothing about Optuna; `Objective` adapts it to a trial (ask the search space,
record user attributes, turn divergence into a FAIL with its reason).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

import models
from hpo import artifacts, calibration, cost, fusion, latency, space
from hpo.data import TensorDataset
from hpo.spec import LatencySection, Spec
from hpo.train import Diverged, TrainResult, evaluate, train

# Images used to check the folded network against the unfused one.
_EQUIVALENCE_IMAGES = 256
# Images the timed runtime (TorchScript, ONNX Runtime) is checked on, one at a time.
_BACKEND_CHECK_IMAGES = 8

EpochCallback = Callable[[int, int, float], None]


class TrialDiverged(Exception):
    """A trial's training diverged; the study goes on (the reason is in `fail_reason`)."""


@dataclass
class TrialOutcome:
    """The two objectives and everything recorded next to them."""

    accuracy: float
    latency_ms: float
    attrs: dict[str, Any] = field(default_factory=dict)
    # The trained and the folded network, for the artifact store (never recorded as attributes).
    model: torch.nn.Module | None = field(default=None, repr=False)
    folded: torch.nn.Module | None = field(default=None, repr=False)


def latency_protocol(section: LatencySection) -> latency.Protocol:
    """The measurement protocol configured by a spec's [latency] table."""
    return latency.Protocol(
        threads=section.threads,
        warmup=section.warmup,
        loops=section.loops,
        max_rounds=section.max_rounds,
        target_iqr=section.target_iqr,
        max_seconds=section.max_seconds,
    )


def measure_fused_latency(
    unfused: torch.nn.Module,
    folded: torch.nn.Module,
    spec: Spec,
    device: torch.device,
    check_images: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Objective latency on the spec's backend, the eager speedup and the reference ratio.

    One interleaved measurement (A B C D A B C D ...) times the unfused and folded nets in eager
    (their ratio is the speedup), the folded net on the configured backend (the objective) and the
    reference network on that same backend (the denominator of `latency_ratio`), so background
    load hits every figure alike. `check_images` (a few) verify the backend's outputs too.
    """
    protocol = latency_protocol(spec.latency)
    threads = spec.latency.threads
    backend = latency.resolve_backend(spec.latency.backend, device)
    with latency.timing_conditions(threads):
        runtimes = [
            latency.make_runtime(unfused, "eager", device=device),
            latency.make_runtime(folded, "eager", device=device),
        ]
        if backend != "eager":
            runtimes.append(latency.make_runtime(folded, backend, threads=threads, device=device))
    timed = runtimes[-1]
    runtimes.append(calibration.reference_runtime(backend, threads, str(timed.device)))
    unfused_stats, folded_eager_stats, *rest = latency.measure_runners(
        [runtime.run for runtime in runtimes], protocol, device
    )
    objective_stats = rest[0] if backend != "eager" else folded_eager_stats
    reference_stats = rest[-1]
    attrs: dict[str, Any] = {
        "latency": objective_stats.as_dict(),
        "latency_unfused_eager": unfused_stats.as_dict(),
        "latency_fused_eager": folded_eager_stats.as_dict(),
        "speedup": unfused_stats.median_ms / folded_eager_stats.median_ms,
        "latency_backend": latency.backend_version(backend),
        "latency_device": str(timed.device),
        "latency_ratio": objective_stats.median_ms / reference_stats.median_ms,
        "latency_reference_ms": reference_stats.median_ms,
        "latency_reference": {"name": calibration.REFERENCE_NAME, **reference_stats.as_dict()},
        "device_fingerprint": calibration.device_fingerprint(backend, threads, timed.device),
        "threads": threads,
        "torch_version": torch.__version__,
        "cpu_model": latency.cpu_model(),
    }
    if backend != "eager" and check_images is not None:
        # The timed graph is the runtime's own (traced, exported): check it computes the same.
        with torch.inference_mode():
            expected = unfused.eval()(check_images.to(device))
        attrs["latency_backend_max_abs_diff"] = fusion.check_outputs(
            expected.cpu(), timed.predict(check_images), what=f"the {backend} runtime"
        )
    return attrs


def train_model(
    config: space.TrialConfig,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> tuple[torch.nn.Module, TrainResult]:
    """Build the configured network and train it with the spec's seeds. Raises Diverged."""
    torch.manual_seed(spec.train.seed)
    model = models.build_model(
        config.model, norm=config.norm, num_classes=data.num_classes, **config.model_kwargs()
    ).to(device)
    trained = train(
        model,
        data,
        config,
        epochs=spec.train.epochs,
        seed=spec.train.seed,
        augment_batches=spec.train.augment,
        on_epoch=on_epoch,
    )
    return model, trained


def run_trial(
    config: space.TrialConfig,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> TrialOutcome:
    """Train, evaluate, fold, verify and time one configuration. Raises Diverged."""
    model, trained = train_model(config, spec, data, device, on_epoch)
    batch = spec.train.eval_batch_size
    val_accuracy = evaluate(model, data, data.val, batch)
    test_accuracy = evaluate(model, data, data.test, batch)

    model.eval()
    folded, report = fusion.fold_batchnorm(model)
    check_images = data.normalize(data.val.images[:_EQUIVALENCE_IMAGES])
    max_diff = fusion.check_equivalence(model, folded, check_images)
    timing = measure_fused_latency(
        model, folded, spec, device, check_images[:_BACKEND_CHECK_IMAGES]
    )
    folded_cost = cost.count_cost(folded, tuple(check_images.shape[1:]))
    attrs = {
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "n_params": models.count_parameters(model),
        "train_seconds": trained.seconds,
        "train_images_per_second": trained.images_per_second,
        "final_train_loss": trained.final_loss,
        "fold_report": report.as_dict(),
        "n_folded": report.n_folded,
        "n_kept": report.n_kept,
        "fold_max_abs_diff": max_diff,
        "macs": folded_cost.macs,
        "n_params_folded": folded_cost.params,
        "cost_layers": folded_cost.layer_dicts(),
        "dataset": data.source,
        **timing,
    }
    return TrialOutcome(val_accuracy, timing["latency"]["median_ms"], attrs, model, folded)


class Objective:
    """Optuna objective: (validation accuracy, fused latency in ms)."""

    def __init__(
        self,
        spec: Spec,
        data: TensorDataset,
        device: torch.device,
        on_trial_start: Callable[[optuna.Trial, space.TrialConfig], None] | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.spec = spec
        self.data = data
        self.device = device
        self.on_trial_start = on_trial_start
        self.on_epoch = on_epoch

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        config = space.suggest(trial, self.spec)
        if self.on_trial_start is not None:
            self.on_trial_start(trial, config)
        try:
            outcome = run_trial(config, self.spec, self.data, self.device, self.on_epoch)
        except Diverged as exc:
            trial.set_user_attr("fail_reason", f"diverged: {exc}")
            raise TrialDiverged(str(exc)) from None
        except KeyboardInterrupt:
            # Optuna marks the trial FAIL and re-raises; say why for whoever reads the study.
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        if outcome.model is not None and outcome.folded is not None:
            artifacts.save_if_on_front(
                trial,
                outcome.accuracy,
                outcome.latency_ms,
                outcome.model,
                outcome.folded,
                self.data,
            )
        return outcome.accuracy, outcome.latency_ms

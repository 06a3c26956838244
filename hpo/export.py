"""`hpo export`: one trial's folded model as TorchScript and ONNX, with a JSON model card.

The trained weights come from the trial's stored checkpoint artifact when there is one; otherwise
the trial is retrained from the study's stored spec and the trial's params with the spec's seed.
Everything is built and checked in memory first, so a failure leaves no half-written folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import models
from hpo import artifacts, fusion, latency
from hpo.errors import HpoError
from hpo.space import TrialConfig
from hpo.spec import apply_overrides, validate
from hpo.study import SPEC_ATTR, stored_spec

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
CARD_FILE = "model-card.json"
CARD_FORMAT = "hpo-model-card/1"
# Attributes that describe how latency was measured; copied into the card as they are.
_RUNTIME_ATTRS = ("threads", "cpu_model", "torch_version", "speedup")

Progress = Callable[[str], None]


@dataclass
class TrainedModel:
    """A trial's network with trained weights and the normalization its inputs need."""

    model: nn.Module
    mean: torch.Tensor
    std: torch.Tensor
    num_classes: int
    source: str
    retrained_val_accuracy: float | None = None


@dataclass(frozen=True)
class ExportResult:
    """What `export_trial` wrote."""

    out: Path
    files: dict[str, Path]
    card: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "files": [str(path) for path in self.files.values()]}


def find_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """The COMPLETE trial numbered `number`; anything else is an HpoError naming the choices."""
    trials = study.get_trials(deepcopy=False)
    complete = [t.number for t in trials if t.state == TrialState.COMPLETE]
    allowed = ", ".join(map(str, complete)) or "none yet"
    for trial in trials:
        if trial.number == number:
            if trial.state != TrialState.COMPLETE:
                raise HpoError(
                    f"--trial {number}: trial is {trial.state.name}, not COMPLETE; "
                    f"allowed: {allowed}"
                )
            return trial
    raise HpoError(
        f"--trial {number}: no such trial in study {study.study_name!r}; allowed: {allowed}"
    )


def build(config: TrialConfig, num_classes: int) -> nn.Module:
    """The trial's architecture, untrained."""
    return models.build_model(
        config.model, norm=config.norm, num_classes=num_classes, **config.model_kwargs()
    )


def from_checkpoint(config: TrialConfig, checkpoint: dict[str, Any]) -> TrainedModel:
    """Rebuild the network and load a stored checkpoint into it."""
    model = build(config, int(checkpoint["num_classes"]))
    model.load_state_dict(checkpoint["state_dict"])
    return TrainedModel(
        model.eval(),
        checkpoint["mean"],
        checkpoint["std"],
        int(checkpoint["num_classes"]),
        "artifact",
    )


def retrain(
    study: optuna.Study, trial: FrozenTrial, data_path: Path | None, progress: Progress
) -> TrainedModel:
    """Train the trial's configuration again from the stored spec (same seeds, same subset)."""
    from hpo.data import load_raw, prepare
    from hpo.objective import train_model
    from hpo.train import evaluate

    spec = stored_spec(study)
    if data_path is not None:
        raw = apply_overrides(
            study.user_attrs[SPEC_ATTR], [f"data.dataset={json.dumps(str(data_path))}"]
        )
        spec = validate(raw)
    config = TrialConfig.from_params(trial.params)
    source = load_raw(spec.data)
    device = torch.device(
        "cuda" if torch.cuda.is_available() and spec.train.device != "cpu" else "cpu"
    )
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals slowed CPU training 3-100x at random
    data = prepare(source, spec.data, device)
    progress(
        f"trial {trial.number} has no stored model; retraining it: {config.model}/{config.norm}, "
        f"{spec.train.epochs} epoch(s) on {len(data.train)} images from {data.source} ({device})"
    )
    model, _ = train_model(
        config,
        spec,
        data,
        device,
        on_epoch=lambda epoch, epochs, loss: progress(f"epoch {epoch}/{epochs} loss {loss:.3f}"),
    )
    accuracy = evaluate(model, data, data.val, spec.train.eval_batch_size)
    progress(f"retrained: validation accuracy {accuracy:.2%} (stored: {trial.values[0]:.2%})")
    return TrainedModel(
        model.cpu().eval(),
        data.mean.cpu(),
        data.std.cpu(),
        data.num_classes,
        "retrained",
        accuracy,
    )


def trained_model(
    study: optuna.Study,
    trial: FrozenTrial,
    store: FileSystemArtifactStore | None,
    data_path: Path | None,
    progress: Progress,
) -> TrainedModel:
    """The stored checkpoint when the trial has one, else a retrained model."""
    config = TrialConfig.from_params(trial.params)
    if store is not None:
        # Optuna offers no public accessor for a loaded study's storage.
        artifact_id = artifacts.find_artifact(trial, study._storage, artifacts.CHECKPOINT_NAME)
        if artifact_id is not None:
            try:
                return from_checkpoint(config, artifacts.load_checkpoint(store, artifact_id))
            except ArtifactNotFound:
                progress(f"checkpoint {artifact_id} is missing from the artifact folder")
    return retrain(study, trial, data_path, progress)


def torchscript_bytes(folded: nn.Module) -> bytes:
    """The folded net traced and frozen as TorchScript."""
    example = torch.zeros(latency.INPUT_SHAPE)
    with torch.inference_mode(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export but still what most runtimes load.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        frozen = torch.jit.freeze(torch.jit.trace(folded.eval(), example))
        buffer = io.BytesIO()
        torch.jit.save(frozen, buffer)
    return buffer.getvalue()


def onnx_bytes(folded: nn.Module) -> bytes:
    """The folded net as ONNX (fixed 1x3x32x32 input named `image`, output `logits`)."""
    with warnings.catch_warnings():
        # InstanceNorm always exports with train=True (it normalizes per sample either way).
        warnings.filterwarnings("ignore", message=".*instance_norm.*", category=UserWarning)
        return latency.export_onnx(folded)


def _onnx_output(content: bytes, images: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images.numpy()})[0]


def _torchscript_output(content: bytes, images: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript deprecation notice
        loaded = torch.jit.load(io.BytesIO(content), map_location="cpu")
    with torch.inference_mode():
        return loaded(images).numpy()


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def model_card(
    study: optuna.Study,
    trial: FrozenTrial,
    trained: TrainedModel,
    report: fusion.FoldReport,
    checks: dict[str, float],
    files: dict[str, bytes],
) -> dict[str, Any]:
    """The JSON model card: what the model is, how good and fast it was, and where it came from."""
    attrs = trial.user_attrs
    spec = stored_spec(study)  # validated: defaults filled in, unlike the raw stored dict
    accuracy, latency_ms = trial.values
    runtime = {k: v for k, v in attrs.items() if k.startswith("latency") or k in _RUNTIME_ATTRS}
    data_section = spec.data.model_dump()
    train_section = spec.train.model_dump()
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "study": study.study_name,
        "trial": trial.number,
        "source": trained.source,
        "params": dict(trial.params),
        "metrics": {
            "accuracy": accuracy,
            "latency_ms": latency_ms,
            "test_accuracy": attrs.get("test_accuracy"),
            "n_params": models.count_parameters(trained.model),
        },
        "fold_report": report.as_dict(),
        "latency": runtime,
        "data": {
            "dataset": attrs.get("dataset", data_section.get("dataset")),
            "train_size": data_section.get("train_size"),
            "val_size": data_section.get("val_size"),
            "split_seed": data_section.get("split_seed"),
            "num_classes": trained.num_classes,
        },
        "training": {k: train_section.get(k) for k in ("epochs", "seed", "augment")},
        "input": {
            "name": "image",
            "shape": list(latency.INPUT_SHAPE),
            "dtype": "float32",
            "layout": "NCHW, RGB",
            "normalization": "(pixel / 255 - mean) / std, per channel",
            "mean": trained.mean.flatten().tolist(),
            "std": trained.std.flatten().tolist(),
        },
        "output": {"name": "logits", "shape": [1, trained.num_classes]},
        "checks": checks,
        "files": {name: {"sha256": _sha256(content)} for name, content in files.items()},
        "exported_with": {"torch": torch.__version__},
    }
    if trained.retrained_val_accuracy is not None:
        card["metrics"]["retrained_val_accuracy"] = trained.retrained_val_accuracy
    return card


def export_trial(
    study: optuna.Study,
    number: int,
    out: Path,
    store: FileSystemArtifactStore | None,
    data_path: Path | None = None,
    progress: Progress = lambda message: None,
) -> ExportResult:
    """Write the trial's folded model (TorchScript, ONNX) and its model card into `out`."""
    if out.exists() and not out.is_dir():
        raise HpoError(f"--out {out}: exists and is not a folder")
    trial = find_trial(study, number)
    trained = trained_model(study, trial, store, data_path, progress)
    folded, report = fusion.fold_batchnorm(trained.model)
    images = torch.randn(latency.INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    fold_diff = fusion.check_equivalence(trained.model, folded, images)
    files = {TORCHSCRIPT_FILE: torchscript_bytes(folded), ONNX_FILE: onnx_bytes(folded)}
    with torch.inference_mode():
        expected = trained.model(images).numpy()
    checks = {
        "fold_max_abs_diff": fold_diff,
        "torchscript_max_abs_diff": float(
            np.abs(_torchscript_output(files[TORCHSCRIPT_FILE], images) - expected).max()
        ),
        "onnx_max_abs_diff": float(np.abs(_onnx_output(files[ONNX_FILE], images) - expected).max()),
    }
    # Same relative float tolerance as the folding check: a bigger gap is an exporter bug.
    tolerance = 1e-4 * max(1.0, float(np.abs(expected).max()))
    for name, difference in checks.items():
        if not difference <= tolerance:
            raise fusion.EquivalenceError(f"{name} = {difference:.3g} exceeds {tolerance:.3g}")
    card = model_card(study, trial, trained, report, checks, files)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, content in files.items():
            (out / name).write_bytes(content)
            written[name] = out / name
        (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        written[CARD_FILE] = out / CARD_FILE
    except OSError as exc:
        raise HpoError(f"--out {out}: cannot write there ({exc.strerror})") from None
    return ExportResult(out, written, card)

"""`hpo export`: one trial's folded model as TorchScript and ONNX, with a JSON model card.

The trained weights come from the trial's stored checkpoint artifact when there is one; otherwise
the trial is retrained from the study's stored spec and the trial's params with the spec's seed.
Everything is built and checked in memory first, so a failure leaves no half-written folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import models
from hpo.core.classes import class_names
from hpo.core.errors import HpoError
from hpo.core.spec import Spec, with_values
from hpo.core.trial_attrs import (
    CPU_MODEL_ATTR,
    DATASET_ATTR,
    SPEEDUP_ATTR,
    TEST_ACCURACY_ATTR,
    THREADS_ATTR,
    TORCH_VERSION_ATTR,
    flat,
)
from hpo.core.trial_config import TrialConfig, stored_params
from hpo.device import prepare_process, resolve_device
from hpo.measure import fusion
from hpo.measure.runtimes import onnx_session
from hpo.measure.serialize import (
    INPUT_SHAPE,
    deliverable_onnx,
    load_torchscript,
    onnx_opset,
    torchscript_bytes,
)
from hpo.present.out_folder import check_replaceable, record_written
from hpo.store import artifacts
from hpo.store.connect import StoredStudy
from hpo.store.studies import check_data, check_factory, stored_spec
from hpo.train.checkpoint import read_checkpoint
from hpo.train.model import build_network
from models import user
from models.user import ModelSources, UserModel, one_line

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
CARD_FILE = "model-card.json"
CARD_FORMAT = "hpo-model-card/1"
# Attributes that describe how latency was measured; copied into the card as they are.
_RUNTIME_ATTRS = (THREADS_ATTR, CPU_MODEL_ATTR, TORCH_VERSION_ATTR, SPEEDUP_ATTR)

# Called with one line for the person waiting (e.g. while a trial is retrained).
Notify = Callable[[str], None]


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


def from_checkpoint(config: TrialConfig, checkpoint: dict[str, Any]) -> TrainedModel:
    """Rebuild the network and load a stored checkpoint into it."""
    model = build_network(config, int(checkpoint["num_classes"]))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:  # other tensors than the network's: damaged, or not its own
        raise HpoError(f"checkpoint does not fit trial's network ({one_line(exc)})") from None
    return TrainedModel(
        model.eval(),
        checkpoint["mean"],
        checkpoint["std"],
        int(checkpoint["num_classes"]),
        "artifact",
    )


def retrain(
    stored: StoredStudy, trial: FrozenTrial, data_path: Path | None, notify: Notify
) -> TrainedModel:
    """Train the trial's configuration again from the stored spec (same seeds, same subset),
    on data of the study's shape."""
    from hpo.train.data import load_raw, prepare
    from hpo.train.loop import evaluate
    from hpo.train.model import train_model

    spec = stored_spec(stored.study)
    if data_path is not None:
        spec = with_values(spec, {"data.dataset": str(data_path)})
    config = TrialConfig.from_trial(trial.params, trial.user_attrs, trial.system_attrs)
    source = load_raw(spec.data)
    check_data(stored, source.shape, source.source, record=False)
    # A study trained on CUDA is retrained on the CPU where there is no GPU.
    device = resolve_device("cpu" if spec.train.device == "cpu" else "auto")
    prepare_process(device)
    data = prepare(source, spec.data, device)
    notify(
        f"trial {trial.number} has no stored model; retraining it: {config.model}/{config.norm}, "
        f"{spec.train.epochs} epoch(s) on {len(data.train)} images from {data.source} ({device})"
    )
    model, _ = train_model(
        config,
        spec.train,
        data,
        device,
        on_epoch=lambda epoch, epochs, loss: notify(f"epoch {epoch}/{epochs} loss {loss:.3f}"),
    )
    accuracy = evaluate(model, data, data.val, spec.train.eval_batch_size)
    notify(f"retrained: validation accuracy {accuracy:.2%} (stored: {trial.values[0]:.2%})")
    return TrainedModel(
        model.cpu().eval(),
        data.mean.cpu(),
        data.std.cpu(),
        data.num_classes,
        "retrained",
        accuracy,
    )


def trained_model(
    stored: StoredStudy,
    trial: FrozenTrial,
    store: FileSystemArtifactStore | None,
    data_path: Path | None,
    notify: Notify,
) -> TrainedModel:
    """The stored checkpoint when the trial has one, else a retrained model."""
    config = TrialConfig.from_trial(trial.params, trial.user_attrs, trial.system_attrs)
    artifact_id = artifacts.find_artifact(trial, stored.storage, artifacts.CHECKPOINT_NAME)
    if store is None and artifact_id is not None:
        # A database copied without its models: say where they were looked for.
        folder = artifacts.artifact_dir(stored.storage.url)
        where = f"no artifact folder {folder} here" if folder else "no artifact folder given"
        notify(
            f"checkpoint {artifact_id} is stored, but {where} (--artifacts DIR or "
            f"{artifacts.ARTIFACTS_ENV} names the workers' folder)"
        )
    if store is not None and artifact_id is not None:
        try:
            content = artifacts.read_artifact(store, artifact_id)
            return from_checkpoint(config, read_checkpoint(content, f"checkpoint {artifact_id}"))
        except ArtifactNotFound:
            notify(f"checkpoint {artifact_id} is missing from the artifact folder")
        except HpoError as exc:
            notify(f"{exc}")  # damaged or cut short: the trial is retrained instead
    return retrain(stored, trial, data_path, notify)


def load_factory(spec: Spec, models: ModelSources) -> UserModel | None:
    """The model factory the study's spec names, imported from `models`; None for a family."""
    return None if spec.model_ref is None else user.load(spec.model_ref, models)


def _onnx_output(content: bytes, images: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(onnx_session(content).run(None, {"image": images.numpy()})[0])


def _torchscript_output(content: bytes, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return load_torchscript(content)(images)


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
    attrs = flat(trial.user_attrs, trial.system_attrs)
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
        "params": stored_params(trial.params, trial.user_attrs, trial.system_attrs),
        "metrics": {
            "accuracy": accuracy,
            "latency_ms": latency_ms,
            TEST_ACCURACY_ATTR: attrs.get(TEST_ACCURACY_ATTR),
            "n_params": models.count_parameters(trained.model),
        },
        "fold_report": report.as_dict(),
        "latency": runtime,
        "data": {
            DATASET_ATTR: attrs.get(DATASET_ATTR, data_section.get(DATASET_ATTR)),
            "train_size": data_section.get("train_size"),
            "val_size": data_section.get("val_size"),
            "split_seed": data_section.get("split_seed"),
            "num_classes": trained.num_classes,
        },
        "training": {k: train_section.get(k) for k in ("epochs", "seed", "augment")},
        "input": {
            "name": "image",
            "shape": ["batch", *INPUT_SHAPE[1:]],
            "dtype": "float32",
            "layout": "NCHW, RGB",
            "normalization": "(pixel / 255 - mean) / std, per channel",
            "mean": trained.mean.flatten().tolist(),
            "std": trained.std.flatten().tolist(),
        },
        "output": {"name": "logits", "shape": ["batch", trained.num_classes]},
        "classes": class_names(trained.num_classes),
        "checks": checks,
        "files": {name: {"sha256": _sha256(content)} for name, content in files.items()},
        "exported_with": {
            "torch": torch.__version__,
            "onnx_opset": onnx_opset(files[ONNX_FILE]),
            "onnxruntime": onnxruntime.__version__,
        },
    }
    if trained.retrained_val_accuracy is not None:
        card["metrics"]["retrained_val_accuracy"] = trained.retrained_val_accuracy
    return card


def export_trial(
    stored: StoredStudy,
    number: int,
    out: Path,
    store: FileSystemArtifactStore | None,
    data_path: Path | None = None,
    notify: Notify = lambda message: None,
    models: ModelSources | None = None,
) -> ExportResult:
    """Write the trial's folded model (TorchScript, ONNX) and its model card into `out`.

    A study of a model factory needs it again: it is imported from `models` (`--models`)."""
    check_replaceable(out, (TORCHSCRIPT_FILE, ONNX_FILE, CARD_FILE))  # before the work
    study = stored.study
    trial = find_trial(study, number)
    factory = load_factory(stored_spec(study), models or ModelSources())
    check_factory(stored, factory, record=False)
    trained = trained_model(stored, trial, store, data_path, notify)
    folded, report = fusion.fold_batchnorm(trained.model)
    images = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    files = {
        TORCHSCRIPT_FILE: torchscript_bytes(folded),
        ONNX_FILE: deliverable_onnx(folded, trained.mean, trained.std, trained.num_classes),
    }
    with torch.inference_mode():
        expected = trained.model(images)
    # Each file is checked against the unfolded model with the folding check's tolerance.
    checks = {
        "fold_max_abs_diff": fusion.check_equivalence(trained.model, folded, images),
        "torchscript_max_abs_diff": fusion.check_outputs(
            expected, _torchscript_output(files[TORCHSCRIPT_FILE], images), what="TorchScript"
        ),
        "onnx_max_abs_diff": fusion.check_outputs(
            expected, _onnx_output(files[ONNX_FILE], images), what="ONNX"
        ),
    }
    card = model_card(study, trial, trained, report, checks, files)
    if factory is not None:
        card["model_factory"] = factory.card()
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, content in files.items():
            (out / name).write_bytes(content)
            written[name] = out / name
        (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        written[CARD_FILE] = out / CARD_FILE
        record_written(out, written)
    except OSError as exc:
        raise HpoError(f"--out {out}: cannot write there ({exc.strerror})") from None
    return ExportResult(out, written, card)

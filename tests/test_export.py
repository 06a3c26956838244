"""`hpo export`: TorchScript and ONNX of the folded model compute what the rebuilt model does."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch

import models
from hpo.core.errors import HpoError
from hpo.core.trial_attrs import flat
from hpo.core.trial_config import TrialConfig, stored_params
from hpo.measure.fusion import fold_batchnorm
from hpo.measure.serialize import load_torchscript, onnx_bytes, torchscript_bytes
from hpo.present.export import CARD_FILE, ONNX_FILE, TORCHSCRIPT_FILE
from hpo.store import artifacts
from hpo.train.checkpoint import read_checkpoint
from tests import synthetic
from tests.conftest import FinishedStudy, invoke


def onnx_logits(content: bytes, images: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images.numpy()})[0]


def torchscript_logits(path_or_bytes: Path | bytes, images: torch.Tensor) -> np.ndarray:
    content = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    loaded = load_torchscript(content)  # torch.jit.load, its deprecation notice silenced
    with torch.inference_mode():
        return loaded(images).numpy()


def random_images(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", models.NORMS)
def test_folded_exports_match_the_model_for_every_norm(norm: str) -> None:
    torch.manual_seed(0)
    model = models.build_model("simple_cnn", norm=norm, width=0.5)
    # Non-trivial running statistics, so folding BatchNorm actually changes the weights.
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 3, 32, 32) * 2 + 0.5)
    model.eval()
    folded, _ = fold_batchnorm(model)
    images = random_images()
    with torch.inference_mode():
        expected = model(images).numpy()
    np.testing.assert_allclose(
        torchscript_logits(torchscript_bytes(folded), images), expected, atol=1e-4
    )
    np.testing.assert_allclose(onnx_logits(onnx_bytes(folded), images), expected, atol=1e-4)


def stored_model(study: FinishedStudy, number: int) -> torch.nn.Module:
    """The trial's network rebuilt from its params, with the weights stored as its artifact."""
    storage = optuna.storages.RDBStorage(study.url)
    trial = optuna.load_study(study_name=study.name, storage=storage).trials[number]
    store = artifacts.open_store(study.url)
    assert store is not None, "the study stored no models"
    artifact_id = artifacts.find_artifact(trial, storage, artifacts.CHECKPOINT_NAME)
    assert artifact_id is not None, f"trial {number} has no checkpoint"
    checkpoint = read_checkpoint(artifacts.read_artifact(store, artifact_id))
    config = TrialConfig.from_trial(trial.params, trial.user_attrs, trial.system_attrs)
    model = models.build_model(
        config.model,
        norm=config.norm,
        num_classes=int(checkpoint["num_classes"]),
        **config.model_kwargs(),
    )
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def export(study: FinishedStudy, number: int, out: Path, *extra: str) -> dict:
    result = invoke(
        "export", "--storage", study.url, "--study-name", study.name, "--trial", str(number),
        "--out", str(out), "--format", "json", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_export_round_trip(finished_study: FinishedStudy, tmp_path: Path) -> None:
    # Trial 0 is on the Pareto front when it completes (nothing came before it): it has a model.
    out = tmp_path / "quickstart-0"
    summary = export(finished_study, 0, out)
    assert summary["source"] == "artifact"
    assert {Path(p).name for p in summary["files"]} == {
        TORCHSCRIPT_FILE,
        ONNX_FILE,
        CARD_FILE,
    }
    rebuilt = stored_model(finished_study, 0)
    card = json.loads((out / CARD_FILE).read_text())
    # Inputs as the card says to prepare them: pixels / 255, standardized per channel.
    mean = torch.tensor(card["input"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(card["input"]["std"]).view(1, 3, 1, 1)
    pixels = torch.randint(0, 256, (1, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    images = (pixels.float() / 255 - mean) / std
    with torch.inference_mode():
        expected = rebuilt(images).numpy()
    np.testing.assert_allclose(
        torchscript_logits(out / TORCHSCRIPT_FILE, images), expected, atol=1e-4
    )
    np.testing.assert_allclose(
        onnx_logits((out / ONNX_FILE).read_bytes(), images), expected, atol=1e-4
    )
    assert np.argmax(expected) == np.argmax(onnx_logits((out / ONNX_FILE).read_bytes(), images))

    trial = optuna.load_study(study_name=finished_study.name, storage=finished_study.url).trials[0]
    assert card["params"] == stored_params(trial.params, trial.user_attrs, trial.system_attrs)
    assert card["params"]["model"] == "simple_cnn" and "model" not in trial.params
    assert card["metrics"]["accuracy"] == trial.values[0]
    assert card["metrics"]["latency_ms"] == trial.values[1]
    assert (
        card["fold_report"]["n_folded"]
        == flat(trial.user_attrs, trial.system_attrs)["fold_report"]["n_folded"]
    )
    assert card["latency"]["latency_backend"] == trial.user_attrs["latency_backend"]
    assert card["data"]["dataset"] == trial.user_attrs["dataset"]
    assert card["data"]["train_size"] == 256 and card["data"]["num_classes"] == 10
    assert card["classes"][0] == "airplane" and len(card["classes"]) == 10
    assert card["exported_with"]["onnxruntime"] == ort.__version__
    assert card["exported_with"]["onnx_opset"] >= 13


@pytest.mark.slow
def test_stored_onnx_model_is_usable_alone(
    finished_study: FinishedStudy, sample_path: Path
) -> None:
    """The stored folded-model.onnx, fed as its own metadata says, scores the test accuracy."""
    storage = optuna.storages.RDBStorage(finished_study.url)
    trial = optuna.load_study(study_name=finished_study.name, storage=storage).trials[0]
    store = artifacts.open_store(finished_study.url)
    artifact_id = artifacts.find_artifact(trial, storage, artifacts.ONNX_NAME)
    content = artifacts.read_artifact(store, artifact_id)

    # From here on: numpy and onnxruntime only, as a user without hpo would do it.
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["classes"])
    assert classes[:2] == ["airplane", "automobile"] and len(classes) == 10
    assert meta["hpo_version"]
    mean = np.array(json.loads(meta["mean"]), dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(json.loads(meta["std"]), dtype=np.float32).reshape(1, 3, 1, 1)
    with np.load(sample_path) as arrays:
        pixels, labels = arrays["x_test"], arrays["y_test"].reshape(-1)
    images = (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
    assert session.get_inputs()[0].shape[0] == "batch", "any batch size, not only 1"
    logits = session.run(None, {"image": images})[0]  # every test image in one batch
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    # The recorded figure comes from the unfolded network in torch; folding reorders float
    # arithmetic, which may flip at most an image whose two top logits are nearly tied.
    assert abs(accuracy - trial.user_attrs["test_accuracy"]) <= 1 / len(labels) + 1e-9


@pytest.mark.slow
def test_export_retrains_without_a_stored_model(
    finished_study: FinishedStudy, tmp_path: Path
) -> None:
    empty = tmp_path / "no-artifacts"
    empty.mkdir()
    out = tmp_path / "retrained"
    summary = export(finished_study, 1, out, "--artifacts", str(empty))
    assert summary["source"] == "retrained"
    card = json.loads((out / CARD_FILE).read_text())
    # Same spec, params and seeds: the retrained net scores what the trial scored.
    assert card["metrics"]["retrained_val_accuracy"] == pytest.approx(
        card["metrics"]["accuracy"], abs=0.02
    )
    images = random_images(5)
    np.testing.assert_allclose(
        torchscript_logits(out / TORCHSCRIPT_FILE, images),
        onnx_logits((out / ONNX_FILE).read_bytes(), images),
        atol=1e-4,
    )


class _Stopped(Exception):
    """Raised by a notify callback: the export stops before it retrains anything."""


@pytest.mark.slow
def test_a_database_copied_without_its_models_says_where_they_were_looked_for(
    finished_study: FinishedStudy, tmp_path: Path
) -> None:
    from hpo.present.export import find_trial, trained_model
    from hpo.store.connect import StoredStudy, open_storage

    copy = tmp_path / "copy.db"
    for suffix in ("", "-wal", "-shm"):
        if (source := Path(f"{finished_study.db}{suffix}")).exists():
            shutil.copy(source, f"{copy}{suffix}")
    url = f"sqlite:///{copy}"
    storage = open_storage(url)
    study = optuna.load_study(study_name=finished_study.name, storage=storage)

    def notify(line: str) -> None:
        raise _Stopped(line)

    trial = find_trial(study, 0)  # on the front when it completed: it has a stored model
    assert artifacts.open_store(url) is None
    with pytest.raises(_Stopped, match=r"is stored, but no artifact folder .*copy\.db\.artifacts"):
        trained_model(StoredStudy.of(study, storage), trial, None, None, notify)
    storage.engine.dispose()


@pytest.mark.slow
def test_export_retrains_a_trial_whose_stored_model_is_damaged(
    finished_study: FinishedStudy, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(finished_study.db.with_name(finished_study.db.name + ".artifacts"), damaged)
    for path in damaged.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    result = invoke(
        "export", "--storage", finished_study.url, "--study-name", finished_study.name,
        "--trial", "0", "--out", str(tmp_path / "out"), "--format", "json",
        "--artifacts", str(damaged),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "retrained"
    assert "cannot be read (" in result.stderr, result.stderr


def test_a_damaged_or_foreign_checkpoint_is_one_line() -> None:
    with pytest.raises(HpoError, match=r"^checkpoint x cannot be read \(.+\)$"):
        read_checkpoint(b"PK\x03\x04 cut short", "checkpoint x")
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(1)}, buffer)
    with pytest.raises(HpoError, match="^checkpoint x is not an hpo checkpoint$"):
        read_checkpoint(buffer.getvalue(), "checkpoint x")


def test_export_of_unknown_or_failed_trial_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    synthetic.make_studies(f"sqlite:///{db}")
    out = tmp_path / "out"
    for number, expected in ((3, "trial is FAIL"), (42, "no such trial")):
        result = invoke(
            "export", "--storage", f"sqlite:///{db}", "--study-name", "synthetic",
            "--trial", str(number), "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 2
        assert expected in result.stderr and "allowed: 0, 1, 2, 4, 5" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()

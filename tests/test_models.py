"""Model families: every family x norm x head builds, trains a step and folds equivalently."""

from __future__ import annotations

import pytest
import torch

import models
from hpo.measure.fusion import check_equivalence, fold_batchnorm
from models.layers import conv_output_size
from tests.conftest import invoke


def test_four_families_are_registered() -> None:
    assert {"simple_cnn", "vgg", "resnet", "mobilenet"} <= set(models.list_models())


@pytest.mark.parametrize("head", models.HEADS)
@pytest.mark.parametrize("norm", models.NORMS)
@pytest.mark.parametrize("name", models.list_models())
def test_build_train_step_and_fold(name: str, norm: str, head: str) -> None:
    torch.manual_seed(0)
    model = models.build_model(name, norm=norm, head=head, width=0.5, dropout=0.1, num_classes=7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 7, (8,))
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    model.eval()
    folded, _ = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 32, 32))
    assert folded(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_width_scales_parameters() -> None:
    narrow = models.count_parameters(models.build_model("vgg", norm="batch", width=0.5))
    wide = models.count_parameters(models.build_model("vgg", norm="batch", width=2.0))
    assert wide > 4 * narrow


def test_flatten_head_in_features_follow_the_size_formula() -> None:
    model = models.build_model("simple_cnn", norm="none", head="flatten")
    linear = model[-1][-1]
    size = 32
    for _ in range(3):
        size = conv_output_size(conv_output_size(size, 5, 1, 2), 2, 2)
    assert linear.in_features == 128 * size * size == 128 * 4 * 4


def test_resnet_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        models.build_model("resnet", norm="batch", depth=10)
    deeper = models.build_model("resnet", norm="batch", depth=20)
    assert models.count_parameters(deeper) > models.count_parameters(
        models.build_model("resnet", norm="batch", depth=8)
    )


def test_unknown_model_names_the_allowed_ones() -> None:
    with pytest.raises(KeyError, match="allowed: mobilenet, resnet, simple_cnn, vgg"):
        models.build_model("alexnet", norm="batch")


def test_models_command_lists_parameter_counts() -> None:
    result = invoke("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    import json

    rows = {row["name"]: row["params"] for row in json.loads(result.stdout)}
    for name in models.list_models():
        assert rows[name] == models.count_parameters(models.build_model(name, norm="batch"))

"""Cost counts: the worked examples by hand, and totals that agree with the models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from hpo.measure.cost import count_cost
from hpo.measure.fusion import fold_batchnorm


def only_layer(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, object]:
    (layer,) = count_cost(model, input_shape).layer_dicts()
    return layer


def test_conv3x3_16_to_32_with_5x5_output() -> None:
    layer = only_layer(nn.Sequential(nn.Conv2d(16, 32, 3, bias=False)), (16, 7, 7))
    assert layer["output"] == [32, 5, 5]
    assert layer["macs"] == 115_200
    assert layer["weights"] == layer["params"] == 4_608


def test_depthwise_3x3_over_16_channels_with_5x5_output() -> None:
    layer = only_layer(nn.Sequential(nn.Conv2d(16, 16, 3, groups=16, bias=False)), (16, 7, 7))
    assert layer["output"] == [16, 5, 5]
    assert layer["macs"] == 3_600


def test_pointwise_16_to_32_with_5x5_output() -> None:
    layer = only_layer(nn.Sequential(nn.Conv2d(16, 32, 1, bias=False)), (16, 5, 5))
    assert layer["output"] == [32, 5, 5]
    assert layer["macs"] == 12_800


def test_conv5x5_10_filters_on_32x32x3() -> None:
    layer = only_layer(nn.Sequential(nn.Conv2d(3, 10, 5, stride=1, padding=2)), (3, 32, 32))
    assert layer["output"] == [10, 32, 32]
    assert layer["weights"] == 750 and layer["params"] == 760  # + 10 biases
    assert layer["macs"] == 32 * 32 * 10 * 75


def test_linear_and_shared_layers() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))  # MACs twice, parameters once

    cost = count_cost(Twice(), (8,))
    assert cost.macs == 2 * 64 and cost.params == 72


def test_a_weight_normed_conv_counts_as_the_conv() -> None:
    plain = count_cost(nn.Sequential(nn.Conv2d(3, 10, 5, padding=2)), (3, 32, 32))
    normed = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 10, 5, padding=2))
    assert count_cost(nn.Sequential(normed), (3, 32, 32)).macs == plain.macs == 32 * 32 * 10 * 75


class _Attention(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.attention = nn.MultiheadAttention(32, 4, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (N, 64 tokens, 32)
        if not self.batch_first:
            tokens = tokens.transpose(0, 1)
        return self.attention(tokens, tokens, tokens, need_weights=False)[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_counts_its_projections_and_products(batch_first: bool) -> None:
    tokens, embed = 64, 32
    cost = count_cost(_Attention(batch_first), (embed, 8, 8))
    projections = 4 * tokens * embed * embed  # query, key, value and output
    assert cost.macs == projections + 2 * tokens * tokens * embed


@pytest.mark.parametrize("name", models.list_models())
def test_model_totals_and_folding(name: str) -> None:
    # DenseNet in its post-activation order, where every BatchNorm follows a conv and folds.
    extra = {"dense_order": "post"} if name == "densenet" else {}
    model = models.build_model(name, norm="batch", width=0.5, **extra).train()
    cost = count_cost(model)
    assert cost.params == models.count_parameters(model)
    assert cost.macs == sum(layer["macs"] for layer in cost.layer_dicts()) > 0
    assert model.training and all(m.training for m in model.modules())  # modes restored
    assert all(
        bn.num_batches_tracked == 0 for bn in model.modules() if isinstance(bn, nn.BatchNorm2d)
    )  # the counting pass left the running statistics alone
    folded, report = fold_batchnorm(model.eval())
    folded_cost = count_cost(folded)
    # Folding drops each BN's weight and bias and adds a conv bias: fewer params, same MACs.
    assert folded_cost.macs == cost.macs
    assert folded_cost.params == cost.params - sum(
        m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert report.n_folded > 0 and report.n_kept == 0

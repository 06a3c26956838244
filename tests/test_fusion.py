"""BatchNorm folding: equivalent outputs for every model x norm, BNs gone, other norms kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from hpo.measure.fusion import (
    FoldingError,
    check_equivalence,
    fold_batchnorm,
    full_float32_precision,
    randomize_batchnorms,
)


@pytest.mark.parametrize("norm", models.NORMS)
@pytest.mark.parametrize("name", models.list_models())
def test_folded_model_is_equivalent(name: str, norm: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorms(models.build_model(name, norm=norm))
    folded, report = fold_batchnorm(model)
    inputs = torch.randn(8, 3, 32, 32)
    check_equivalence(model, folded, inputs)
    remaining_bn = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    norms_before = sum(
        isinstance(m, nn.BatchNorm2d | nn.GroupNorm | nn.InstanceNorm2d) for m in model.modules()
    )
    if norm == "batch" and name == "densenet":
        # DenseNet's own pre-activation order: every BatchNorm reads a concatenation (or a conv
        # output the concatenation keeps too) and feeds a ReLU, so none folds either way.
        assert report.n_kept == remaining_bn == norms_before > 0 and report.n_folded == 0
        assert all(k["reason"].endswith("; then ReLU, not a conv") for k in report.kept)
        assert any(k["reason"].startswith("follows cat, not a conv") for k in report.kept)
    elif norm == "batch":
        assert report.n_folded == norms_before > 0
        assert remaining_bn == 0 and report.n_kept == 0
    elif norm == "none":
        assert report.n_folded == report.n_kept == 0
    else:
        assert report.n_folded == 0
        assert report.n_kept == norms_before > 0
        assert all(k["reason"] == "per-sample statistics" for k in report.kept)


def test_densenet_post_activation_folds_every_batchnorm() -> None:
    torch.manual_seed(0)
    for bottleneck in (0.0, 0.5):
        model = randomize_batchnorms(
            models.build_model("densenet", norm="batch", dense_order="post", bottleneck=bottleneck)
        )
        folded, report = fold_batchnorm(model)
        check_equivalence(model, folded, torch.randn(4, 3, 32, 32))
        assert report.n_folded == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert report.n_kept == 0 and not any(
            isinstance(m, nn.BatchNorm2d) for m in folded.modules()
        )


def test_densenet_pre_activation_folds_what_follows_a_bottleneck_conv() -> None:
    torch.manual_seed(0)
    model = randomize_batchnorms(
        models.build_model("densenet", norm="batch", dense_order="pre", bottleneck=0.5)
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 32, 32))
    # Each dense layer: norm -> ReLU -> 1x1 conv -> norm -> ReLU -> 3x3 conv. The second norm
    # follows the 1x1 conv and folds into it; the first reads the concatenation and is kept.
    assert report.n_folded == 3 * 4 and report.n_kept > 0
    assert all(f["into_type"] == "Conv2d" and ".layers." in f["layer"] for f in report.folded)


def test_train_mode_is_refused() -> None:
    model = models.build_model("vgg", norm="batch").train()
    with pytest.raises(FoldingError, match="eval mode"):
        fold_batchnorm(model)


def test_linear_batchnorm1d_is_folded() -> None:
    model = randomize_batchnorms(
        nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU())
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 2, 2))
    assert report.n_folded == 1


def test_a_classifier_heads_batchnorm1d_folds_forward_past_dropout() -> None:
    # A head of pooling, flatten, BatchNorm1d, Dropout, Linear, ReLU, BatchNorm1d, Dropout,
    # Linear: neither BatchNorm1d follows a Linear, each folds into the Linear after it.
    model = randomize_batchnorms(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.BatchNorm1d(8),
            nn.Dropout(0.25),
            nn.Linear(8, 16, bias=False),
            nn.ReLU(),
            nn.BatchNorm1d(16),
            nn.Dropout(0.5),
            nn.Linear(16, 10),
        )  # fmt: skip
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 8, 8))
    assert report.n_kept == 0
    assert [(f["layer"], f["into"], f.get("direction")) for f in report.folded] == [
        ("1", "0", None),
        ("5", "7", "forward"),
        ("9", "11", "forward"),
    ]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())


class FlatHead(nn.Module):
    """BatchNorm1d then Linear on the input made 2-D by `flatten` (or not at all)."""

    def __init__(self, flatten: str) -> None:
        super().__init__()
        self.flatten = flatten
        self.bn = nn.BatchNorm1d(12)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten == "view":
            x = x.view(x.size(0), -1)
        elif self.flatten == "reshape":
            x = x.reshape(-1, 12)
        elif self.flatten == "torch.flatten":
            x = torch.flatten(x, 1)
        elif self.flatten == "method":
            x = x.flatten(start_dim=1)
        return self.fc(self.bn(x))


@pytest.mark.parametrize("flatten", ["view", "reshape", "torch.flatten", "method"])
def test_batchnorm1d_folds_forward_into_a_linear_on_a_flattened_map(flatten: str) -> None:
    model = randomize_batchnorms(FlatHead(flatten))
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 2, 2))
    assert report.folded == [
        {
            "layer": "bn",
            "type": "BatchNorm1d",
            "into": "fc",
            "into_type": "Linear",
            "direction": "forward",
        }
    ]


def test_batchnorm1d_before_a_linear_is_kept_when_its_input_may_be_3d() -> None:
    # On (N, 12, 12) the BatchNorm scales dim 1 and the Linear reads dim 2: folding the one
    # into the other would be wrong, and nothing in the graph says the input is 2-D.
    model = randomize_batchnorms(FlatHead("none"))
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 12, 12))
    assert report.n_folded == 0
    assert report.kept[0]["reason"].endswith("then Linear, but its input is not known to be 2-D")


class MixedChannels(nn.Module):
    """A Linear over the last dim of (N, C, L), then a BatchNorm1d over dim 1."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(16, 16)
        self.bn = nn.BatchNorm1d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.mix(x.flatten(2)))


def test_batchnorm1d_after_a_linear_is_kept_when_the_linear_may_be_3d() -> None:
    model = randomize_batchnorms(MixedChannels())
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 16, 4, 4))
    assert report.n_folded == 0
    assert "follows Linear, but its output is not known to be 2-D" in report.kept[0]["reason"]


class ReadsTheConvWeight(nn.Module):
    """A conv's weight also read directly: folding would change that other use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + nn.functional.conv2d(x, self.conv.weight, padding=1)


class TiedConvs(nn.Module):
    """Two convs sharing one weight tensor, each followed by a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        self.b.weight = self.a.weight
        self.bn_a, self.bn_b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_a(self.a(x)) + self.bn_b(self.b(x))


def test_tied_convs_fold_and_keep_each_others_weights() -> None:
    model = randomize_batchnorms(TiedConvs())
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert report.n_folded == 2


class _SubclassedConv(nn.Conv2d):
    """A conv of one's own: a Conv2d still."""


def test_a_conv2d_subclass_folds_like_a_conv2d() -> None:
    model = randomize_batchnorms(nn.Sequential(_SubclassedConv(3, 4, 3), nn.BatchNorm2d(4)))
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert report.n_folded == 1


class _StandardizedConv(nn.Conv2d):
    """A conv that standardizes its weight in forward (as in BiT): folding a BatchNorm into
    its weight would be undone by the standardization."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


class _StandardizedConvForward(nn.Conv2d):
    """The same, overriding the `_conv_forward` that torch's forward calls (as timm's
    StdConv2d and many weight-standardized ResNets do)."""

    def _conv_forward(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
    ) -> torch.Tensor:
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return super()._conv_forward(x, w, b)


@pytest.mark.parametrize("conv", [_StandardizedConv, _StandardizedConvForward])
def test_a_conv_that_overrides_forward_is_not_folded_into(conv: type[nn.Conv2d]) -> None:
    model = randomize_batchnorms(nn.Sequential(conv(3, 4, 3), nn.BatchNorm2d(4)))
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert report.n_folded == 0


class _ShiftsItsInput(nn.Module):
    """Preprocessing in place on the images it is given, then a conv and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x.sub_(0.5)))


def test_the_check_gives_each_network_its_own_copy_of_the_images() -> None:
    model = randomize_batchnorms(_ShiftsItsInput())
    folded, _ = fold_batchnorm(model)
    images = torch.randn(2, 3, 8, 8)
    check_equivalence(model, folded, images)  # each network shifts its own copy once


def _weight_normed() -> nn.Module:
    return nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3)), nn.BatchNorm2d(4)
    )


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (ReadsTheConvWeight, "conv.weight is also read directly"),
        (_weight_normed, "whose weight is parametrized (weight_norm, ...): not folded"),
    ],
)
def test_a_conv_whose_weights_serve_elsewhere_keeps_its_batchnorm(build, reason: str) -> None:
    model = randomize_batchnorms(build())
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert report.n_folded == 0 and report.n_kept >= 1
    assert all(reason in kept["reason"] for kept in report.kept), report.kept


def test_batchnorm_not_after_conv_is_kept() -> None:
    model = randomize_batchnorms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)))
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert report.n_folded == 0 and report.n_kept == 1
    assert "not a conv" in report.kept[0]["reason"]


class _Encoded(nn.Module):
    """A conv stem and a transformer encoder, which torch.fx calls as one layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.BatchNorm2d(16))
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.encoder = nn.TransformerEncoder(
            layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(tokens).mean(1))


def test_norms_inside_a_module_run_as_one_layer_are_listed_as_kept() -> None:
    model = randomize_batchnorms(_Encoded()).eval()
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 32, 32))
    assert [entry["layer"] for entry in report.folded] == ["stem.1"]
    assert [entry["layer"] for entry in report.kept] == [
        "encoder.layers.0.norm1",
        "encoder.layers.0.norm2",
        "encoder.layers.1.norm1",
        "encoder.layers.1.norm2",
        "encoder.norm",
    ]
    assert {entry["reason"] for entry in report.kept} == {
        "inside TransformerEncoder, which runs as one layer"
    }


def test_torchvision_frozen_batchnorms_fold_and_are_listed() -> None:
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    frozen = [FrozenBatchNorm2d(4, eps=1e-3), FrozenBatchNorm2d(4)]
    for norm in frozen:
        for name in ("weight", "bias", "running_mean"):
            norm.get_buffer(name).copy_(torch.randn(4))
        norm.get_buffer("running_var").copy_(torch.rand(4) + 0.5)
    # The second follows a transposed conv, which is not folded: kept, and still computed alike.
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), frozen[0], nn.ReLU(), nn.ConvTranspose2d(4, 4, 2), frozen[1]
    ).eval()
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert [(f["layer"], f["type"], f["into"]) for f in report.folded] == [
        ("1", "FrozenBatchNorm2d", "0")
    ]
    assert [(k["layer"], k["type"]) for k in report.kept] == [("4", "FrozenBatchNorm2d")]


def test_a_frozen_batchnorm_registered_twice_is_listed_under_each_name() -> None:
    from torchvision.ops import FrozenBatchNorm2d

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
            self.a = FrozenBatchNorm2d(4)
            self.b = self.a

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.conv2(self.a(self.conv1(x))))

    model = Twice().eval()
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert sorted((f["layer"], f["into"]) for f in report.folded) == [
        ("a", "conv1"),
        ("b", "conv2"),
    ]


def test_wrong_fold_is_caught() -> None:
    model = randomize_batchnorms(models.build_model("simple_cnn", norm="batch"))
    folded, _ = fold_batchnorm(model)
    with torch.no_grad():
        next(p for p in folded.parameters()).add_(0.5)
    with pytest.raises(AssertionError, match="folding is wrong"):
        check_equivalence(model, folded, torch.randn(4, 3, 32, 32))


def test_full_float32_precision_turns_tf32_off_and_restores_it() -> None:
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_float32_precision():
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", models.list_models())
def test_fold_check_passes_on_cuda_with_tf32_enabled(name: str) -> None:
    # cuDNN's default TF32 convolutions made the check fail on a GPU before it turned TF32 off.
    torch.manual_seed(0)
    model = randomize_batchnorms(models.build_model(name, norm="batch")).cuda()
    folded, _ = fold_batchnorm(model)
    torch.backends.cudnn.allow_tf32 = True
    check_equivalence(model, folded, torch.randn(64, 3, 32, 32, device="cuda"))


class FlagsInForward(nn.Module):
    """A forward with optional arguments, as networks that can also return features have."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(
        self,
        x: torch.Tensor,
        return_features: bool = False,
        mask=None,
        sizes: tuple[int, ...] = (1, 2),
        *,
        scale: float = 1.0,
    ) -> torch.Tensor:
        # `sizes` is unused here: a container default must not become an argument the folded
        # network needs.
        features = self.bn(self.conv(x)).mean((2, 3)) * scale
        if mask is not None:
            features = features * mask
        return features if return_features else self.fc(features)


def test_a_forward_with_optional_arguments_is_traced_at_their_defaults() -> None:
    model = randomize_batchnorms(FlagsInForward())
    folded, report = fold_batchnorm(model)
    images = torch.randn(2, 3, 8, 8)
    check_equivalence(model, folded, images)
    assert report.n_folded == 1
    assert [n.op for n in folded.graph.nodes].count("placeholder") == 1, "the images alone"
    # The runtimes trace the folded network (TorchScript, ONNX): a check fx adds on an
    # argument's value would break their trace.
    from hpo.measure.serialize import onnx_bytes, torchscript_module

    with torch.inference_mode():
        traced = torchscript_module(folded, images)(images)
        torch.testing.assert_close(traced, model(images))
    assert onnx_bytes(folded)


def test_a_forward_that_branches_on_shapes_is_refused_with_the_reason() -> None:
    class Branches(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) if x.dim() == 4 else x

    with pytest.raises(FoldingError, match=r"no if or loop on tensor values or shapes \(x.dim"):
        fold_batchnorm(Branches().eval())


def test_mild_statistics_keep_a_deep_network_finite() -> None:
    """The pre-study fold check uses mild statistics: ResNet-152's 155 BatchNorms overflow with
    the default ones, and an overflowed output judges no fold."""
    import torchvision

    torch.manual_seed(0)
    deep = torchvision.models.resnet152(num_classes=10)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(randomize_batchnorms(deep, mild=True)(images)).all()
        assert not torch.isfinite(randomize_batchnorms(deep)(images)).all()


class FunctionalHead(nn.Module):
    """flatten, Linear, BatchNorm1d, F.relu, Linear, BatchNorm1d: the second Linear's input is
    2-D through a functional activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(12, 8), nn.BatchNorm1d(8)
        self.fc2, self.bn2 = nn.Linear(8, 6), nn.BatchNorm1d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu(self.bn1(self.fc1(torch.flatten(x, 1))))
        return self.bn2(self.fc2(x.relu()))


def test_a_linear_after_a_functional_activation_of_a_flatten_folds() -> None:
    model = randomize_batchnorms(FunctionalHead())
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 2, 2))
    assert report.n_folded == 2, report.kept

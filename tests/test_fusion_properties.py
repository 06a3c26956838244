"""Property tests of BatchNorm folding: random layer shapes and statistics, every model x norm.

Each example builds a small network with random channel counts, groups, kernel sizes, bias on/off
and random BatchNorm running statistics and affine parameters, folds it, and checks the folded
network computes the same outputs and holds no BatchNorm where every one was foldable.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import models
from hpo.measure.fusion import FoldingError, check_equivalence, fold_batchnorm, randomize_batchnorms

# CPU is scarce: enough examples to hit the corners, few enough for seconds per test.
FAST = settings(max_examples=40, deadline=None)
MODELS = settings(max_examples=3, deadline=None)

ACTIVATIONS = {
    "none": nn.Identity,
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
}


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@st.composite
def conv_shapes(draw: st.DrawFn) -> dict[str, int | bool]:
    """A conv's shape: plain, grouped, depthwise (groups = in channels) or pointwise (1x1)."""
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise", "pointwise"]))
    groups = 1
    if kind == "grouped":
        groups = draw(st.integers(2, 4))
    in_channels = groups * draw(st.integers(1, 6))
    out_channels = groups * draw(st.integers(1, 6))
    if kind == "depthwise":
        groups = in_channels = draw(st.integers(1, 16))
        out_channels = in_channels * draw(st.integers(1, 2))  # channel multiplier
    kernel = 1 if kind == "pointwise" else draw(st.sampled_from([1, 3, 5]))
    return {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "kernel_size": kernel,
        "stride": draw(st.sampled_from([1, 2])),
        "padding": draw(st.integers(0, kernel // 2)),
        "dilation": draw(st.sampled_from([1, 2])) if kernel > 1 else 1,
        "groups": groups,
        "bias": draw(st.booleans()),
    }


@FAST
@given(
    shape=conv_shapes(),
    affine=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    seed=st.integers(0, 2**16),
)
def test_conv_bn_activation_folds(
    shape: dict[str, int | bool], affine: bool, eps: float, activation: str, seed: int
) -> None:
    torch.manual_seed(seed)
    out_channels = int(shape["out_channels"])
    model = randomize_batchnorms(
        nn.Sequential(
            nn.Conv2d(**shape),  # type: ignore[arg-type]
            nn.BatchNorm2d(out_channels, eps=eps, affine=affine),
            ACTIVATIONS[activation](),
        ),
        seed,
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, int(shape["in_channels"]), 11, 11))
    assert report.n_folded == 1 and report.n_kept == 0
    assert report.folded[0] == {
        "layer": "1",
        "type": "BatchNorm2d",
        "into": "0",
        "into_type": "Conv2d",
    }
    assert batchnorms(folded) == 0
    assert folded.get_submodule("0").bias is not None  # the BN shift lives in the conv bias now


@FAST
@given(
    shape=conv_shapes(),
    affine=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    seed=st.integers(0, 2**16),
)
def test_batchnorm_folds_forward_into_a_conv_without_padding(
    shape: dict[str, int | bool], affine: bool, eps: float, seed: int
) -> None:
    torch.manual_seed(seed)
    in_channels = int(shape["in_channels"])
    model = randomize_batchnorms(
        nn.Sequential(
            nn.ReLU(),  # the BN follows no conv: only the forward fold can remove it
            nn.BatchNorm2d(in_channels, eps=eps, affine=affine),
            nn.Conv2d(**{**shape, "padding": 0}),  # type: ignore[arg-type]
        ),
        seed,
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, in_channels, 11, 11))
    assert report.n_kept == 0 and batchnorms(folded) == 0
    assert report.folded == [
        {
            "layer": "1",
            "type": "BatchNorm2d",
            "into": "2",
            "into_type": "Conv2d",
            "direction": "forward",
        }
    ]


@settings(max_examples=10, deadline=None)
@given(channels=st.integers(1, 8), padding=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_batchnorm_before_a_padded_conv_is_kept(channels: int, padding: int, seed: int) -> None:
    # Zero padding of the normalized map is -shift/scale padding of the raw one: no fold.
    model = randomize_batchnorms(
        nn.Sequential(
            nn.ReLU(), nn.BatchNorm2d(channels), nn.Conv2d(channels, 3, 3, padding=padding)
        ),
        seed,
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, channels, 7, 7))
    assert report.n_folded == 0 and batchnorms(folded) == 1
    assert report.kept[0]["reason"] == (
        "follows ReLU, not a conv/linear; "
        "then Conv2d, which pads with zeros (the fold would change the border)"
    )


@FAST
@given(
    shape=conv_shapes(),
    mode=st.sampled_from(["reflect", "replicate", "circular"]),
    same=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batchnorm_folds_forward_into_a_conv_that_pads_with_its_own_values(
    shape: dict[str, int | bool], mode: str, same: bool, seed: int
) -> None:
    # Padding that copies the map's values commutes with the BatchNorm's per-channel affine map.
    in_channels = int(shape["in_channels"])
    padding: int | str = "same" if same and shape["stride"] == 1 else max(1, int(shape["padding"]))
    model = randomize_batchnorms(
        nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(**{**shape, "padding": padding, "padding_mode": mode}),  # type: ignore[arg-type]
        ),
        seed,
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, in_channels, 11, 11))
    assert report.n_kept == 0 and batchnorms(folded) == 0


class Residual(nn.Module):
    """conv-BN-ReLU, conv-BN, plus a shortcut (identity or 1x1 conv-BN), added, then ReLU."""

    def __init__(self, channels: int, out_channels: int, stride: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, out_channels, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, out_channels, 1, stride, bias=bias),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


@FAST
@given(
    channels=st.integers(1, 12),
    out_channels=st.integers(1, 12),
    stride=st.sampled_from([1, 2]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_residual_block_folds(
    channels: int, out_channels: int, stride: int, bias: bool, seed: int
) -> None:
    torch.manual_seed(seed)
    model = randomize_batchnorms(Residual(channels, out_channels, stride, bias), seed)
    n_bn = batchnorms(model)
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, channels, 9, 9))
    assert report.n_folded == n_bn and report.n_kept == 0
    assert batchnorms(folded) == 0


@FAST
@given(
    in_features=st.integers(1, 32),
    out_features=st.integers(1, 32),
    bias=st.booleans(),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_batchnorm1d_folds(
    in_features: int, out_features: int, bias: bool, affine: bool, seed: int
) -> None:
    torch.manual_seed(seed)
    model = randomize_batchnorms(
        nn.Sequential(
            # The flatten makes the Linear's output surely 2-D: on (N, C, L) the fold is wrong.
            nn.Flatten(),
            nn.Linear(in_features, out_features, bias=bias),
            nn.BatchNorm1d(out_features, affine=affine),
            nn.ReLU(),
        ),
        seed,
    )
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(5, in_features))
    assert report.n_folded == 1 and batchnorms(folded) == 0


@FAST
@given(channels=st.integers(1, 8), where=st.sampled_from(["relu", "pool", "add", "input"]))
def test_batchnorm_not_after_conv_is_kept_and_listed(channels: int, where: str) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
            self.bn = nn.BatchNorm2d(channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            if where == "relu":
                return self.bn(torch.relu(y))
            if where == "pool":
                return self.bn(nn.functional.max_pool2d(y, 2))
            if where == "add":
                return self.bn(y + x)
            return self.bn(x) + y

    model = randomize_batchnorms(Net(), channels)
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, channels, 8, 8))
    assert report.n_folded == 0 and report.n_kept == 1
    assert report.kept[0]["layer"] == "bn" and "not a conv/linear" in report.kept[0]["reason"]
    assert batchnorms(folded) == 1


def test_conv_output_used_twice_keeps_the_batchnorm() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the un-normalized branch too

    model = randomize_batchnorms(Net(), 0)
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 8, 8))
    assert report.n_folded == 0 and "also used elsewhere" in report.kept[0]["reason"]


def test_shared_conv_keeps_the_batchnorm() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.bn(self.conv(x)))  # the same weights called twice

    model = randomize_batchnorms(Net(), 0)
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 4, 8, 8))
    assert report.n_folded == 0 and "shared weights" in report.kept[0]["reason"]


@pytest.mark.parametrize(
    "norm",
    [nn.GroupNorm(2, 4), nn.GroupNorm(1, 4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm(6)],
    ids=["group", "layer-as-group", "instance", "layer"],
)
def test_per_sample_norms_are_kept_and_listed(norm: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm, nn.ReLU()).eval()
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(2, 3, 6, 6))
    assert report.n_folded == 0
    assert report.kept == [
        {"layer": "1", "type": type(norm).__name__, "reason": "per-sample statistics"}
    ]


def test_nested_batchnorm_in_train_mode_is_refused() -> None:
    model = models.build_model("resnet", norm="batch", depth=8).eval()
    model[1].body[0][1].train()  # one BN left in train mode inside an eval model
    with pytest.raises(FoldingError, match="train mode"):
        fold_batchnorm(model)


@pytest.mark.parametrize("norm", models.NORMS)
@pytest.mark.parametrize("name", models.list_models())
@MODELS
@given(
    width=st.sampled_from([0.25, 0.5]),
    head=st.sampled_from(models.HEADS),
    seed=st.integers(0, 2**16),
)
def test_every_model_and_norm_folds_equivalently(
    name: str, norm: str, width: float, head: str, seed: int
) -> None:
    torch.manual_seed(seed)
    extra = {"depth": 8} if name == "resnet" else {}
    if name == "densenet":
        extra = {"dense_order": "post", "dense_layers": 2}  # pre-activation: test_fusion.py
    model = randomize_batchnorms(
        models.build_model(name, norm=norm, width=width, head=head, **extra), seed
    )
    n_bn = batchnorms(model)
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, torch.randn(4, 3, 32, 32))
    if norm == "batch":
        assert n_bn > 0 and report.n_folded == n_bn and report.n_kept == 0
        assert batchnorms(folded) == 0
    else:
        assert report.n_folded == 0 and batchnorms(folded) == 0
        assert all(k["reason"] == "per-sample statistics" for k in report.kept)

"""Model families: every family x norm x design option builds, trains a step, folds
equivalently and exports; the flatten head follows the size formula for every downsampling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import models
from hpo.measure.fusion import check_equivalence, fold_batchnorm, randomize_batchnorms
from hpo.measure.serialize import load_torchscript, onnx_bytes, torchscript_bytes
from models.catalog import FAMILY_OPTIONS
from models.layers import conv_output_size
from models.registry import APPLIED_OPTIONS, COMMON_OPTIONS
from tests.conftest import invoke

# Three variants per family that between them build every value of every design option the
# family takes (the defaults, `auto` and `none`, are what the other model tests build). DenseNet
# is kept small (few, narrow layers): the options, not its size, are under test.
VARIANTS: dict[str, dict[str, Any]] = {
    "max-5x5-bottleneck-se-post-gelu": {
        "head": "flatten",
        "activation": "gelu",
        "pool": "max",
        "kernel": "5x5",
        "bottleneck": 0.5,
        "attention": "se",
        "se_ratio": 4,
        "dense_order": "post",
        "growth_rate": 8,
        "dense_layers": 2,
    },
    "avg-3x3-pre-gmp": {
        "head": "gmp",
        "pool": "avg",
        "kernel": "3x3",
        "dense_order": "pre",
        "growth_rate": 8,
        "dense_layers": 2,
        "compression": 0.75,
    },
    "conv-5x5-bottleneck-se-pre-silu": {
        "head": "flatten",
        "activation": "silu",
        "pool": "conv",
        "kernel": "5x5",
        "bottleneck": 0.5,
        "attention": "se",
        "se_ratio": 16,
        "dense_order": "pre",
        "growth_rate": 8,
        "dense_layers": 2,
    },
}


def family_options(name: str, variant: dict[str, Any]) -> dict[str, Any]:
    """The variant's options that family `name` takes."""
    taken = (*COMMON_OPTIONS, *APPLIED_OPTIONS, *FAMILY_OPTIONS[name])
    return {option: value for option, value in variant.items() if option in taken}


def batchnorms(model: torch.nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def test_five_families_are_registered() -> None:
    assert {"simple_cnn", "vgg", "resnet", "mobilenet", "densenet"} <= set(models.list_models())


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: these networks and batches are tiny, and on a busy 2-core machine
    two threads per op made the tests below several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("norm", models.NORMS)
@pytest.mark.parametrize("name", models.list_models())
def test_build_train_step_fold_and_export(name: str, norm: str, variant: str) -> None:
    torch.manual_seed(0)
    options = family_options(name, VARIANTS[variant])
    model = models.build_model(name, norm=norm, width=0.25, dropout=0.1, num_classes=7, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 7, (4,))
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    randomize_batchnorms(model)  # eval mode, with statistics that make folding change weights
    folded, report = fold_batchnorm(model)
    check_equivalence(model, folded, images)
    image = images[:1]
    with torch.inference_mode():
        expected = model(image).numpy()
    # ONNX is what `auto` times on a CPU and what a trial stores, so every case exports it.
    session = ort.InferenceSession(onnx_bytes(folded), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"image": image.numpy()})[0]
    np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-4)
    if norm != "batch":
        assert batchnorms(folded) == 0
        return
    assert report.n_folded + report.n_kept == batchnorms(model) > 0
    # Only DenseNet's pre-activation order has BatchNorms that cannot fold (they read a
    # concatenation and a ReLU comes before the next conv); every other one folds.
    pre_activation = name == "densenet" and options["dense_order"] == "pre"
    assert (report.n_kept > 0) == pre_activation
    assert batchnorms(folded) == report.n_kept
    # TorchScript, the other export, once per family and variant: freezing is the slow part,
    # and the graph it freezes differs across norms only where test_export covers every norm.
    scripted = load_torchscript(torchscript_bytes(folded))
    with torch.inference_mode():
        np.testing.assert_allclose(scripted(image).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
@pytest.mark.parametrize("name", models.list_models())
def test_activation_replaces_every_relu(name: str, activation: str) -> None:
    relu = models.build_model(name, norm="batch")
    other = models.build_model(name, norm="batch", activation=activation)
    kind = {"gelu": torch.nn.GELU, "silu": torch.nn.SiLU}[activation]
    count = sum(isinstance(m, torch.nn.ReLU) for m in relu.modules())
    assert count > 0
    assert sum(isinstance(m, kind) for m in other.modules()) == count
    assert not any(isinstance(m, torch.nn.ReLU) for m in other.modules())
    assert models.count_parameters(other) == models.count_parameters(relu)
    with pytest.raises(ValueError, match="unknown activation 'tanh'; allowed: relu, gelu, silu"):
        models.build_model(name, norm="batch", activation="tanh")


def test_gmp_head_takes_each_map_s_maximum() -> None:
    torch.manual_seed(0)
    gmp = models.build_model("vgg", norm="none", head="gmp").eval()
    body, head = gmp[:-1], gmp[-1]
    features = body(torch.randn(2, 3, 32, 32))
    expected = head[-1](features.amax(dim=(2, 3)))
    torch.testing.assert_close(head(features), expected)


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


@pytest.mark.parametrize("kernel", ["3x3", "5x5"])
@pytest.mark.parametrize("pool", ["max", "avg", "conv"])
@pytest.mark.parametrize("name", ["simple_cnn", "vgg"])
def test_flatten_head_follows_the_size_formula_for_every_pool_and_kernel(
    name: str, pool: str, kernel: str
) -> None:
    model = models.build_model(name, norm="none", head="flatten", pool=pool, kernel=kernel)
    k = int(kernel[0])
    size = 32
    for _ in range(3):
        if pool == "conv":  # the stage's last conv has stride 2
            size = conv_output_size(size, k, 2, k // 2)
        else:
            size = conv_output_size(conv_output_size(size, k, 1, k // 2), 2, 2)
    assert size == 4
    assert model[-1][-1].in_features == 128 * size * size
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("pool", ["max", "avg", "conv"])
@pytest.mark.parametrize("name", ["resnet", "mobilenet", "densenet"])
def test_every_downsampling_halves_as_often(name: str, pool: str) -> None:
    flat = models.build_model(name, norm="none", head="flatten", pool=pool)
    gap = models.build_model(name, norm="none", head="gap", pool=pool)
    channels = gap[-1][-1].in_features
    # Each family halves the 32x32 maps twice (three stages or blocks), whatever does it.
    assert flat[-1][-1].in_features == channels * 8 * 8
    assert flat(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_auto_is_each_family_s_own_downsampling_and_kernel() -> None:
    for name, pool, kernel in (("vgg", "max", "3x3"), ("simple_cnn", "max", "5x5")):
        own = models.build_model(name, norm="batch", pool=pool, kernel=kernel)
        assert str(models.build_model(name, norm="batch")) == str(own)
    for name, pool in (("resnet", "conv"), ("mobilenet", "conv"), ("densenet", "avg")):
        assert str(models.build_model(name, norm="batch")) == str(
            models.build_model(name, norm="batch", pool=pool)
        )


def test_kernel_5x5_is_one_conv_where_3x3_is_two() -> None:
    def convs(kernel: str) -> list[int]:
        model = models.build_model("vgg", norm="none", kernel=kernel)
        return [m.kernel_size[0] for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    assert convs("3x3") == [3] * 6 and convs("5x5") == [5] * 3


def test_bottleneck_cuts_channels_before_the_wide_convs() -> None:
    plain = models.build_model("resnet", norm="batch", depth=8)
    cut = models.build_model("resnet", norm="batch", depth=8, bottleneck=0.5)
    pointwise = [
        m for m in cut.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
    ]
    # Every 3x3 conv but the stem's (its input is the RGB image) sits behind a 1x1 that halves.
    assert all(m.out_channels * 2 == m.in_channels for m in pointwise if m.stride == (1, 1))
    assert models.count_parameters(cut) < models.count_parameters(plain)
    same = models.build_model("vgg", norm="batch", bottleneck=0.0)
    assert str(same) == str(models.build_model("vgg", norm="batch"))


def test_squeeze_excitation_scales_channels_by_a_gate() -> None:
    from models.layers import SqueezeExcite

    torch.manual_seed(0)
    se = SqueezeExcite(32, 4).eval()
    x = torch.randn(2, 32, 5, 5)
    gate = se.gate(x)
    assert gate.shape == (2, 32, 1, 1) and bool(((gate > 0) & (gate < 1)).all())
    torch.testing.assert_close(se(x), x * gate)
    assert se.gate[1].out_channels == 8  # 32 / 4 hidden units
    assert SqueezeExcite(16, 16).gate[1].out_channels == 8  # never below 8


def test_an_option_the_family_does_not_take_names_the_ones_that_do() -> None:
    with pytest.raises(
        ValueError, match="model 'resnet' has no kernel choice; kernel applies to simple_cnn, vgg"
    ):
        models.build_model("resnet", norm="batch", kernel="5x5")
    with pytest.raises(ValueError, match="no growth_rate choice; growth_rate applies to densenet"):
        models.build_model("vgg", norm="batch", growth_rate=12)
    with pytest.raises(ValueError, match="unknown pool 'min'; allowed: auto, max, avg, conv"):
        models.build_model("vgg", norm="batch", pool="min")


def test_family_defaults_are_the_catalog_defaults() -> None:
    import inspect

    from hpo.core.params import BY_NAME

    for name in models.list_models():
        signature = inspect.signature(models.model_info(name).factory)
        for option in FAMILY_OPTIONS[name]:
            assert signature.parameters[option].default == BY_NAME[option].default, (name, option)


def test_a_factory_that_disagrees_with_the_catalog_is_refused_at_registration() -> None:
    from models.registry import register_model

    resnet = models.model_info("resnet").factory
    with pytest.raises(ValueError, match="model 'alexnet' is not in models/catalog.py"):
        register_model("alexnet")(resnet)
    with pytest.raises(
        ValueError,
        match=r"FAMILY_OPTIONS\['vgg'\] in models/catalog.py: the factory takes depth; the "
        "factory does not take kernel",
    ):
        register_model("vgg")(resnet)
    assert models.model_info("vgg").factory is not resnet
    assert "alexnet" not in models.list_models()


def test_a_catalog_module_that_registers_nothing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.catalog import FAMILIES

    monkeypatch.setitem(FAMILIES, "alexnet", "models.layers")
    with pytest.raises(ValueError, match="models.layers registers no model 'alexnet'"):
        models.model_info("alexnet")


def test_resnet_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        models.build_model("resnet", norm="batch", depth=10)
    deeper = models.build_model("resnet", norm="batch", depth=20)
    assert models.count_parameters(deeper) > models.count_parameters(
        models.build_model("resnet", norm="batch", depth=8)
    )


def test_unknown_model_names_the_allowed_ones() -> None:
    with pytest.raises(
        KeyError, match="allowed: compact, densenet, mobilenet, resnet, simple_cnn, vgg"
    ):
        models.build_model("alexnet", norm="batch")


def test_models_command_lists_parameter_counts() -> None:
    result = invoke("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    import json

    rows = {row["name"]: row["params"] for row in json.loads(result.stdout)}
    for name in models.list_models():
        assert rows[name] == models.count_parameters(models.build_model(name, norm="batch"))
    import csv

    table = invoke("models", "--format", "csv")
    assert table.returncode == 0, table.stderr
    listed = list(csv.DictReader(table.stdout.splitlines()))
    assert {row["name"]: int(row["params"]) for row in listed} == rows


def test_compact_is_four_one_conv_stages_pooled_after_the_first_three() -> None:
    from torch import nn

    model = models.build_model("compact", norm="batch", head="gmp")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    strided = models.build_model("compact", norm="batch", pool="conv")
    assert [c.stride for c in strided.modules() if isinstance(c, nn.Conv2d)] == [(2, 2)] * 3 + [
        (1, 1)
    ]
    assert strided(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_frozen_parameters_count_in_a_networks_size() -> None:
    network = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    network[0].requires_grad_(False)
    assert models.count_parameters(network) == 4 * 3 + 3 + 3 * 2 + 2

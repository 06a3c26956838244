"""A user's own network as a model factory: the spec, the checks before any study, the worker's
refusal of a factory it was not given, and whole studies (SQLite; two workers on PostgreSQL).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import sys
import tomllib
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, IntDistribution

from hpo.core.errors import SpecError
from hpo.core.spec import Choice, Range, new_spec_problem, validate
from hpo.core.trial_attrs import SPEC_ATTR, flat, stored_config
from hpo.core.trial_config import TrialConfig
from hpo.measure.fusion import fold_batchnorm
from hpo.search.architecture import ArchitectureSpace
from hpo.store.connect import open_storage
from models import user
from models.registry import build_model
from tests.conftest import ROOT, invoke, run_cli
from tests.pg import pg_url, start_cli, wait_all

__all__ = ["pg_url"]  # fixture used below

EXAMPLE_NET = ROOT / "studies" / "nets" / "tiny.py"
SPEC = """
[study]
name = "{name}"
n_trials = {n_trials}
sampler = "random"
seed = 0

[data]
train_size = 64
val_size = 32

[train]
epochs = 1
eval_batch_size = 256

[latency]
warmup = 2
loops = 5
max_rounds = 1
max_seconds = 0.5

[search]
model = "{model}"
{search}
"""
TINY_PARAMS = """batch_size = 32
norm = ["batch", "none"]

[search.model_params]
channels = 8
blocks = [1, 2]
"""


def write_spec(folder: Path, model: str, search: str = "", name: str = "mine", n: int = 2) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(SPEC.format(name=name, n_trials=n, model=model, search=search))
    return path


def copy_example(folder: Path) -> Path:
    """The example model file in the layout a user copies: folder/nets/tiny.py."""
    (folder / "nets").mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE_NET, folder / "nets" / "tiny.py")
    return folder


def one_error_line(result, expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: "), result.stderr
    assert expected in lines[0], lines[0]


# --- the spec -------------------------------------------------------------------------------


def test_model_params_take_the_domain_syntax_of_every_key() -> None:
    spec = validate(
        {
            "study": {"name": "s"},
            "search": {
                "model": "nets/tiny.py:build",
                "model_params": {"channels": [16, 32], "blocks": {"low": 1, "high": 4}},
            },
        }
    )
    assert spec.model_ref == "nets/tiny.py:build"
    assert spec.model_params == {"channels": Choice((16, 32)), "blocks": Range(1, 4, False)}
    kinds = {p.name: p.kind for p, _ in spec.model_hyperparameters()}
    assert kinds == {"channels": "categorical", "blocks": "int"}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"model": "resnet", "model_params": {"c": 1}}, "applies to a model factory only"),
        ({"model": "a.py:b", "model_params": {"lr": 1}}, "the name is a [search] key"),
        ({"model": "a.py:b", "model_params": {"batch_size": 1}}, "the name is a [search] key"),
        ({"model": "a.py:b", "model_params": {"norm_layer": 1}}, "an argument hpo passes"),
        ({"model": "a.py:b", "model_params": {"c": {"low": 4, "high": 2}}}, "must be below"),
        ({"model": "a.py:b", "model_params": {"c": []}}, "the list of choices is empty"),
        ({"model": "a.py:b", "model_params": {"c": [[1]]}}, "expected a value, a list"),
        ({"model": "a.py:b", "width": 0.5}, "applies to the built-in families"),
        ({"model": "a.py:b", "se_ratio": [4, 8]}, "applies to the built-in families"),
        ({"model": ["resnet", "a.py:b"]}, "given alone"),
        ({"model": "a.py:2b"}, "NAME a Python identifier"),
        ({"model": "nope"}, "or a model factory: FILE.py:NAME"),
    ],
)
def test_bad_model_specs_name_the_problem(search: dict, expected: str) -> None:
    with pytest.raises(SpecError, match=None) as caught:
        validate({"study": {"name": "s"}, "search": search})
    assert expected in str(caught.value), str(caught.value)


def test_a_norm_layer_called_for_some_params_only_is_used(tmp_path: Path, tiny_npz: Path) -> None:
    """A factory whose first model-param value builds no norm layer (use_bn = false) still uses
    norm_layer: the check counts its calls over every configuration it tries."""
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Sequential):\n"
        "    def __repr__(self):\n        return 'Net()'  # the same text for every norm\n"
        "def build(num_classes, norm_layer=nn.BatchNorm2d, use_bn=False):\n"
        "    norm = norm_layer(5) if use_bn else nn.Identity()\n"
        "    return Net(nn.Conv2d(3, 5, 3), norm, nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "               nn.Linear(5, num_classes))\n"
    )
    search = 'norm = ["group", "layer"]\n[search.model_params]\nuse_bn = [false, true]\n'
    spec = write_spec(tmp_path, "net.py:build", search)
    url = f"sqlite:///{tmp_path / 'create.db'}"
    result = invoke("create", str(spec), "--data", str(tiny_npz), "--storage", url)
    assert result.returncode == 0, result.stderr
    # A trial's network must have the norm it records: use_bn = false is no network for group
    # (it fails as such, and the sampler learns it), while norm "none" is that network.
    user.load("net.py:build", user.ModelSources(spec_dir=tmp_path), norm_searched=True)
    with pytest.raises(user.UnusableNetwork, match=r"the trial's norm \(group\) is not in"):
        user.build("net.py:build", norm="group", num_classes=10, use_bn=False)
    assert user.build("net.py:build", norm="none", num_classes=10, use_bn=False)
    assert user.build("net.py:build", norm="group", num_classes=10, use_bn=True)
    # Without norm searched, the factory's norm is its own business.
    user.load("net.py:build", user.ModelSources(spec_dir=tmp_path))
    assert user.build("net.py:build", norm="batch", num_classes=10, use_bn=False)


def test_model_params_may_take_the_names_of_the_families_options(tmp_path: Path) -> None:
    """width, depth, dropout, ... apply to the built-in families only: a factory's params may
    be named so, and a trial's value of one is the factory's."""
    ref = "nets/tiny.py:build"
    user.load(ref, user.ModelSources(spec_dir=copy_example(tmp_path)))
    spec = validate(
        {
            "study": {"name": "s"},
            "search": {"model": ref, "model_params": {"width": [8, 16], "dropout": [0.0, 0.2]}},
        }
    )
    assert spec.model_params == {"width": Choice((8, 16)), "dropout": Choice((0.0, 0.2))}
    # se_ratio applies where attention does: to the families only.
    se = {"model": ref, "model_params": {"se_ratio": [4, 8]}}
    assert validate({"study": {"name": "s"}, "search": se}).model_params == {
        "se_ratio": Choice((4, 8))
    }
    stored = {"model": ref, "optimizer": "adam", "lr": 0.01, "width": 16, "dropout": 0.2}
    config = TrialConfig.from_params(stored)
    assert config.model_params == {"width": 16, "dropout": 0.2}
    assert config.width is None and config.dropout is None, "the family options do not apply"
    assert config.model_kwargs() == {"width": 16, "dropout": 0.2}
    assert TrialConfig.from_params(config.as_params()) == config
    space = ArchitectureSpace.from_spec(spec)
    assert space.names.count("width") == 1
    assert space.distributions["width"] == CategoricalDistribution((8, 16))


@pytest.mark.parametrize("name", ["accuracy", "latency_ms", "number"])
def test_model_params_named_like_results_are_refused_in_a_new_spec(name: str) -> None:
    spec = validate(
        {"study": {"name": "s"}, "search": {"model": "a.py:b", "model_params": {name: [1, 2]}}}
    )
    problem = new_spec_problem(spec)
    assert problem is not None and f"{name}: the name is a result's" in problem


def test_a_stepped_range_is_tried_at_its_highest_value_on_the_grid() -> None:
    from hpo.run.user_model import _values

    assert _values(Range(8, 30, False, 8)) == [8, 24]
    assert _values(Range(8, 32, False, 8)) == [8, 32]
    assert _values(Range(1, 4, False)) == [1, 4]


def test_a_log_handler_made_at_import_writes_to_stderr_afterwards(tmp_path: Path) -> None:
    # stderr is held back while a user's file is imported; a handler made then must not keep
    # writing into the held-back buffer, or every later warning would be lost.
    (tmp_path / "net.py").write_text(
        "import logging\nfrom torch import nn\n"
        "logging.getLogger('netlog').addHandler(logging.StreamHandler())\n"
        "def build(num_classes):\n    return nn.Linear(3, num_classes)\n"
    )
    logger = logging.getLogger("netlog")
    try:
        user.load("net.py:build", user.ModelSources(spec_dir=tmp_path))
        assert [h.stream for h in logger.handlers] == [sys.stderr]
    finally:
        logger.handlers.clear()


def test_a_config_keeps_a_factorys_params_and_its_own_norm() -> None:
    ref = "nets/tiny.py:build"
    stored = {"model": ref, "optimizer": "adam", "lr": 0.01, "channels": 16, "blocks": 2}
    config = TrialConfig.from_params(stored)
    assert config.model_params == {"channels": 16, "blocks": 2}
    assert config.norm is None and config.width is None and config.head is None
    assert config.model_kwargs() == {"channels": 16, "blocks": 2}
    assert config.architecture() == {"model": ref, "channels": 16, "blocks": 2}
    assert TrialConfig.from_params(config.as_params()) == config
    with_norm = TrialConfig.from_params({**stored, "norm": "group"})
    assert with_norm.architecture() == {"model": ref, "norm": "group", "channels": 16, "blocks": 2}


def test_model_params_are_architecture_params_and_a_factory_may_keep_its_norm(
    tmp_path: Path,
) -> None:
    folder = copy_example(tmp_path)
    own = (
        EXAMPLE_NET.read_text()
        .replace("norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,", "")
        .replace("conv_block(c_in, c_out, norm_layer)", "conv_block(c_in, c_out, nn.BatchNorm2d)")
    )
    (folder / "nets" / "own.py").write_text(own)
    search = {"model_params": {"channels": [8, 16], "blocks": {"low": 1, "high": 2}}}
    for ref, names in [
        ("nets/tiny.py:build", ("model", "norm", "channels", "blocks")),
        ("nets/own.py:build", ("model", "channels", "blocks")),
    ]:
        user.load(ref, user.ModelSources(spec_dir=folder))
        spec = validate({"study": {"name": "s"}, "search": {"model": ref, **search}})
        space = ArchitectureSpace.from_spec(spec)
        chosen = {"model": ref}
        applying = tuple(p.name for p in space.params if p.applies(chosen))
        assert applying == names
        assert space.distributions["blocks"] == IntDistribution(1, 2)


# --- the factory ---------------------------------------------------------------------------


def test_the_example_folds_every_batchnorm_for_each_norm(tmp_path: Path) -> None:
    ref = "nets/tiny.py:build"
    user.load(ref, user.ModelSources(spec_dir=copy_example(tmp_path)))
    for norm in ("batch", "group", "none"):
        network = build_model(ref, norm=norm, num_classes=7, channels=8, blocks=2).eval()
        assert network(torch.zeros(3, 3, 32, 32)).shape == (3, 7)
        _, report = fold_batchnorm(network)
        assert report.n_kept == (0 if norm != "group" else 6), report
        assert report.n_folded == (6 if norm == "batch" else 0), report


def test_lazy_modules_get_their_shapes_when_the_network_is_built(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.LazyConv2d(4, 3, bias=False), nn.BatchNorm2d(4),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    user.load("net.py:build", user.ModelSources(spec_dir=tmp_path))
    network = build_model("net.py:build", norm=None, num_classes=5)
    # Built in train mode, as a trial trains it, and with no statistics moved by the shaping pass.
    assert network.training
    assert not any(torch.nn.parameter.is_lazy(p) for p in network.parameters())
    assert int(network[1].num_batches_tracked) == 0
    _, report = fold_batchnorm(network.eval())
    assert report.n_folded == 1, report


def test_torchvision_models_take_the_searched_norm() -> None:
    ref = "torchvision:resnet18"
    loaded = user.load(ref, user.ModelSources())  # torchvision needs no --models
    assert loaded.takes_norm_layer and "resnet18" in user.torchvision_names()
    assert "efficientnet_b4" in user.torchvision_names()
    assert "efficientnet_b5" not in user.torchvision_names()  # it sets its own norm_layer
    network = build_model(ref, norm="group", num_classes=10).eval()
    assert network(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    _, report = fold_batchnorm(build_model(ref, norm="batch", num_classes=10).eval())
    assert report.n_folded == 20 and report.n_kept == 0, report


def test_a_worker_finds_model_files_only_inside_its_folders(tmp_path: Path) -> None:
    models = copy_example(tmp_path / "models")
    given = user.ModelSources.parse([str(models)])
    assert user.load("nets/tiny.py:build", given).sha256 is not None
    (tmp_path / "outside.py").write_text(EXAMPLE_NET.read_text())
    for ref in ("../outside.py:build", f"{tmp_path / 'outside.py'}:build"):
        with pytest.raises(SpecError, match="no file"):
            user.load(ref, given)
    with pytest.raises(SpecError, match="imports only modules it was given"):
        user.load("subprocess:run", given)


# A network with an operator ONNX lacks (channel shuffle, as in ShuffleNet).
SHUFFLING_NET = (
    "from torch import nn\n"
    "def build(num_classes):\n"
    "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ChannelShuffle(2),\n"
    "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))\n"
)
KWARGS_NET = (
    "from torch import nn\n"
    "def build(**kwargs):\n"
    "    norm_layer = kwargs.get('norm_layer', nn.BatchNorm2d)\n"
    "    c = kwargs.get('channels', 8)\n"
    "    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), norm_layer(c),\n"
    "                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
    "                         nn.Linear(c, kwargs['num_classes']))\n"
)


# A network that subtracts the batch mean from its logits (scaled by `scale`, an untrained
# network's logits may be tiny): each image's output depends on the others in its batch.
BATCH_MIXING_NET = (
    "from torch import nn\n"
    "class Net(nn.Module):\n"
    "    def __init__(self, num_classes):\n"
    "        super().__init__()\n"
    "        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1),\n"
    "                                  nn.Flatten(), nn.Linear(8, num_classes))\n"
    "    def forward(self, x):\n"
    "        y = self.body(x)\n"
    "        return (y - y.mean(0, keepdim=True)) * {scale}\n"
    "def build(num_classes):\n    return Net(num_classes)\n"
)
# Each case: the model file's text (None: no file), the spec's model and [search] lines, and
# what the one stderr line must say.
BAD_FACTORIES: dict[str, tuple[str | None, str, str, str]] = {
    "file not found": (None, "nets/gone.py:build", "", "file not found"),
    "module not found": (
        None,
        "no_such_pkg.nets:build",
        "",
        "module no_such_pkg.nets not found; install its package, or put the folder",
    ),
    "no such callable": ("X = 1\n", "net.py:build", "", "net.py has no callable build"),
    "not callable": ("build = 3\n", "net.py:build", "", "net.py has no callable build"),
    "import raises": (
        "raise RuntimeError('no GPU here')\n",
        "net.py:build",
        "",
        "raised RuntimeError: no GPU here",
    ),
    "no num_classes": (
        "def build(width):\n    pass\n",
        "net.py:build",
        "",
        "must take num_classes",
    ),
    "call raises": (
        "def build(num_classes):\n    raise ValueError('channels must be even')\n",
        "net.py:build",
        "",
        "raised ValueError: channels must be even",
    ),
    "not a module": (
        "def build(num_classes):\n    return [1, 2]\n",
        "net.py:build",
        "",
        "model net.py:build: calling the factory with its default params: it returned list, "
        "not a torch nn.Module",
    ),
    "forward raises": (
        "from torch import nn\ndef build(num_classes):\n    return nn.Conv2d(1, num_classes, 3)\n",
        "net.py:build",
        "",
        "built with its default params: its forward pass on (2, 3, 32, 32) images raised "
        "RuntimeError",
    ),
    "forward fails with one norm choice": (
        # InstanceNorm needs more than one value per channel: a 1x1 map fails with it alone.
        "from torch import nn\n"
        "def build(num_classes, norm_layer=nn.BatchNorm2d):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 32), norm_layer(4), nn.Flatten(),\n"
        "                         nn.Linear(4, num_classes))\n",
        "net.py:build",
        'norm = ["batch", "instance"]',
        "built with its default params, norm instance: its forward pass on (2, 3, 32, 32) "
        "images raised",
    ),
    "lazy network whose shaping pass fails": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.LazyConv2d(4, 3), nn.Linear(5, num_classes))\n",
        "net.py:build",
        "",
        "calling the factory with its default params: the pass of (2, 3, 32, 32) images that "
        "shapes its lazy "
        "modules raised RuntimeError",
    ),
    "lazy network with a batchnorm without running statistics": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(\n"
        "        nn.LazyConv2d(4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "        nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, num_classes))\n",
        "net.py:build",
        "",
        "BatchNorm 3 keeps no running statistics",
    ),
    "batchnorm without running statistics": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(\n"
        "        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))\n",
        "net.py:build",
        "",
        "BatchNorm 1 keeps no running statistics (track_running_stats=False)",
    ),
    "wrong output shape": (
        "from torch import nn\n"
        "def build(num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 7))\n",
        "net.py:build",
        "",
        "returned (2, 7) for (2, 3, 32, 32) images; expected logits of shape (2, 4)",
    ),
    "auxiliary output in training mode": (
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n"
        "        self.fc, self.aux = nn.Linear(3, n), nn.Linear(3, n)\n"
        "    def forward(self, x):\n"
        "        x = x.mean((2, 3))\n"
        "        return (self.fc(x), self.aux(x)) if self.training else self.fc(x)\n"
        "def build(num_classes):\n    return Net(num_classes)\n",
        "net.py:build",
        "",
        "the network built with its default params, in training mode: returned tuple for "
        "(2, 3, 32, 32) images; "
        "expected logits of shape (2, 4) (one row per image, one column per class); return the "
        "logits alone",
    ),
    "backward fails": (
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n        self.fc = nn.Linear(3, n)\n"
        "    def forward(self, x):\n"
        "        y = torch.sigmoid(self.fc(x.mean((2, 3))))\n"
        "        y.mul_(2)  # in place on a result autograd still needs\n"
        "        return y\n"
        "def build(num_classes):\n    return Net(num_classes)\n",
        "net.py:build",
        "",
        "the network built with its default params, in training mode: its backward pass raised "
        "RuntimeError",
    ),
    "untraceable": (
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n        self.fc = nn.Linear(3, n)\n"
        "    def forward(self, x):\n"
        "        if x.sum() > 0:\n            x = -x\n"
        "        return self.fc(x.mean((2, 3)))\n"
        "def build(num_classes):\n    return Net(num_classes)\n",
        "net.py:build",
        "",
        "cannot trace Net with torch.fx (TraceError: symbolically traced variables cannot be "
        "used as inputs to control flow); BatchNorm folding reads the network's graph",
    ),
    "norm without norm_layer": (
        EXAMPLE_NET.read_text().replace(
            "norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,", ""
        ),
        "net.py:build",
        'norm = ["batch", "group"]',
        "the factory takes no norm_layer",
    ),
    "param not taken": (
        EXAMPLE_NET.read_text(),
        "net.py:build",
        "[search.model_params]\ngroups = [1, 2]",
        "takes no parameter 'groups'",
    ),
    "exits at import": (
        "raise SystemExit(0)\n",
        "net.py:build",
        "",
        "called sys.exit(0); code that runs as a script belongs under",
    ),
    "parses arguments at import": (
        # As a script's argument parsing would, given hpo's command line: usage, then exit 2.
        "import argparse\nargparse.ArgumentParser().parse_args(['run', 'spec.toml'])\n",
        "net.py:build",
        "",
        "called sys.exit(2)",
    ),
    "float64 parameters": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3072, num_classes)).double()\n",
        "net.py:build",
        "",
        "its parameters are torch.float64, not float32; trials train and time float32 networks",
    ),
    "ONNX cannot export it": (
        SHUFFLING_NET,
        "net.py:build",
        "",
        "ONNX cannot export it (Exporting the operator 'aten::channel_shuffle' to ONNX",
    ),
    "fails with one norm choice": (
        "from torch import nn\n"
        "def build(num_classes, norm_layer=nn.BatchNorm2d):\n"
        "    norm = norm_layer(3)\n    nn.init.ones_(norm.weight)\n"
        "    return nn.Sequential(nn.Conv2d(3, 3, 3), norm, nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(3, num_classes))\n",
        "net.py:build",
        'norm = ["batch", "none"]',
        "calling the factory with its default params, norm none raised AttributeError",
    ),
    "fails with one model-param value": (
        "from torch import nn\n"
        "def build(num_classes, planes=8):\n"
        "    return nn.Sequential(nn.Conv2d(3, planes, 3), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(planes, num_classes))\n",
        "net.py:build",
        '[search.model_params]\nplanes = [8, "8"]',
        "calling the factory with {'planes': '8'} raised TypeError",
    ),
    "nothing to train": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                        nn.Linear(3, num_classes))\n"
        "    return net.requires_grad_(False)\n",
        "net.py:build",
        "",
        "has no trainable parameters",
    ),
    "integer logits": (
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n        self.fc = nn.Linear(3, n)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.mean((2, 3))).long()\n"
        "def build(num_classes):\n    return Net(num_classes)\n",
        "net.py:build",
        "",
        "returned torch.int64 logits; the loss needs floating-point ones",
    ),
    "contains itself": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                        nn.Linear(3, num_classes))\n"
        "    net.add_module('again', net)\n    return net\n",
        "net.py:build",
        "",
        "raised RecursionError",
    ),
    "squeezes a single image's row away": (
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n        self.fc = nn.Linear(3, n)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.mean((2, 3), keepdim=True).squeeze())\n"
        "def build(num_classes):\n    return Net(num_classes)\n",
        "net.py:build",
        "",
        "returned (4,) for (1, 3, 32, 32) images; expected logits of shape (1, 4) (one row per "
        "image, one column per class); a squeeze() drops the dimension of a single image",
    ),
    "random at inference": (
        "from torch import nn\nfrom torch.nn import functional as F\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n        self.fc = nn.Linear(3, n)\n"
        "    def forward(self, x):\n"
        "        return self.fc(F.dropout(x, 0.2).mean((2, 3)))\n"
        "def build(num_classes):\n    return Net(num_classes)\n",
        "net.py:build",
        "",
        "in eval mode it gives other outputs each time for the same images",
    ),
    "ignores norm_layer": (
        EXAMPLE_NET.read_text().replace(
            "conv_block(c_in, c_out, norm_layer)", "conv_block(c_in, c_out, nn.BatchNorm2d)"
        ),
        "net.py:build",
        'norm = ["group", "none"]',
        "the factory takes norm_layer but never calls it (with any norm or model param tried)",
    ),
    "ignores norm_layer, one norm searched": (
        EXAMPLE_NET.read_text().replace(
            "conv_block(c_in, c_out, norm_layer)", "conv_block(c_in, c_out, nn.BatchNorm2d)"
        ),
        "net.py:build",
        'norm = "group"',
        "the factory takes norm_layer but never calls it",
    ),
    "compiled": (
        "import torch\nfrom torch import nn\n"
        "def build(num_classes):\n"
        "    return torch.compile(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                                       nn.Linear(3, num_classes)))\n",
        "net.py:build",
        "",
        "it returned the network wrapped by torch.compile; return the network itself",
    ),
    "data parallel": (
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.DataParallel(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                                         nn.Linear(3, num_classes)))\n",
        "net.py:build",
        "",
        "it returned the network wrapped by DataParallel; return the network itself",
    ),
    "mixes the images of a batch": (
        BATCH_MIXING_NET.format(scale=1.0),
        "net.py:build",
        "",
        "in eval mode its output for an image depends on the other images of the batch",
    ),
    "mixes the images of a batch, with tiny logits": (
        BATCH_MIXING_NET.format(scale=1e-12),
        "net.py:build",
        "",
        "in eval mode its output for an image depends on the other images of the batch",
    ),
    "misspelled param of a **kwargs factory": (
        EXAMPLE_NET.read_text().replace(
            "    blocks: int = 2,\n", "    blocks: int = 2,\n    **extra,\n"
        ),
        "net.py:build",
        "[search.model_params]\nchannels = 8\nchanels = [8, 16]\n",
        "[search.model_params] chanels: every value tried (8, 16) builds the same network",
    ),
    "a **kwargs factory ignores norm_layer": (
        KWARGS_NET.replace("kwargs.get('norm_layer', nn.BatchNorm2d)", "nn.BatchNorm2d"),
        "net.py:build",
        'norm = ["batch", "group"]',
        "the factory takes norm_layer but never calls it",
    ),
    "unknown torchvision model": (
        None,
        "torchvision:vit_b_16",
        "",
        "not a torchvision classification model that takes norm_layer; allowed: ",
    ),
}


# Model params that change the network in one way only: its initial weights, a number its
# forward reads, a rate used in training alone, an activation that differs on large values
# only, a frozen layer. None may be taken for a param that does nothing.
ONE_WAY_PARAMS = (
    "import torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
    "class Net(nn.Module):\n"
    "    def __init__(self, num_classes, zero_init, scale, drop, act, freeze):\n"
    "        super().__init__()\n"
    "        self.conv = nn.Conv2d(3, 8, 3, padding=1)\n"
    "        self.fc = nn.Linear(8, num_classes)\n"
    "        self.scale, self.drop, self.act = scale, drop, getattr(F, act)\n"
    "        if zero_init:\n"
    "            nn.init.zeros_(self.fc.weight)\n"
    "        self.conv.requires_grad_(not freeze)\n"
    "    def forward(self, x):\n"
    "        x = self.act(self.conv(x) * self.scale).mean((2, 3))\n"
    "        return self.fc(F.dropout(x, self.drop, training=self.training))\n"
    "def build(num_classes, **options):\n"
    "    return Net(num_classes, **options)\n"
)


def test_a_param_that_changes_the_network_in_one_way_only_is_searched(tmp_path: Path) -> None:
    from hpo.run.user_model import prepare_model

    (tmp_path / "net.py").write_text(ONE_WAY_PARAMS)
    params = {"zero_init": [False, True], "scale": [1.0, 2.0], "drop": [0.0, 0.5]}
    params |= {"act": ["relu", "relu6"], "freeze": [False, True]}
    raw = {"study": {"name": "one-way"}, "search": {"model": "net.py:build"}}
    raw["search"]["model_params"] = params
    loaded = prepare_model(validate(raw), user.ModelSources(spec_dir=tmp_path), 10)
    assert loaded is not None and loaded.params is None, "a **kwargs factory"


def test_a_kwargs_factory_gets_norm_layer_when_the_spec_gives_a_norm(tmp_path: Path) -> None:
    from hpo.run.user_model import prepare_model
    from hpo.search.space import keeps_own_norm

    (tmp_path / "net.py").write_text(KWARGS_NET)
    sources = user.ModelSources(spec_dir=tmp_path)
    searched = {"model": "net.py:build", "norm": ["batch", "group"]}
    spec = validate({"study": {"name": "kw"}, "search": searched})
    assert prepare_model(spec, sources, 10) is not None
    assert not keeps_own_norm(spec)
    network = user.build("net.py:build", norm="group", num_classes=10)
    assert isinstance(network[1], torch.nn.GroupNorm)
    # Without a norm in the spec it keeps its own: the trials record none, and get none.
    own = validate({"study": {"name": "kw"}, "search": {"model": "net.py:build"}})
    assert prepare_model(own, sources, 10) is not None
    assert keeps_own_norm(own)
    assert isinstance(
        user.build("net.py:build", norm=None, num_classes=10)[1], torch.nn.BatchNorm2d
    )


@pytest.mark.parametrize("case", sorted(BAD_FACTORIES))
def test_bad_factories_are_refused_before_anything_is_created(
    case: str, tmp_path: Path, tiny_npz: Path
) -> None:
    text, model, search, expected = BAD_FACTORIES[case]
    if text is not None:
        (tmp_path / "net.py").write_text(text)
    spec = write_spec(tmp_path, model, search)
    # Four classes, so that a network hard-wired for ten is caught as well.
    data = tmp_path / "four.npz"
    arrays = dict(np.load(tiny_npz))
    np.savez(data, **{k: (v % 4 if k.startswith("y") else v) for k, v in arrays.items()})
    for command in ("run", "create"):
        db = tmp_path / f"{command}.db"
        result = invoke(command, str(spec), "--data", str(data), "--storage", f"sqlite:///{db}")
        one_error_line(result, expected)
        assert not db.exists(), f"{command}: a bad factory must leave no database file"
        assert not Path(f"{db}.artifacts").exists()


def test_a_worker_refuses_a_factory_it_was_not_given(tmp_path: Path, tiny_npz: Path) -> None:
    spec = write_spec(copy_example(tmp_path / "project"), "nets/tiny.py:build", TINY_PARAMS)
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    made = invoke("create", str(spec), "--data", str(tiny_npz), "--storage", url)
    assert made.returncode == 0, made.stderr
    worker = ("worker", "--storage", url, "--study-name", "mine", "--data", str(tiny_npz))
    one_error_line(invoke(*worker), "imports only model files it was given; start it with --models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    one_error_line(invoke(*worker, "--models", str(elsewhere)), "no file nets/tiny.py in the")
    # Whoever can write to the database cannot make a worker import what it names.
    study = optuna.load_study(study_name="mine", storage=open_storage(url))
    raw = study.user_attrs[SPEC_ATTR]
    raw["search"] = {"model": "subprocess:run"}
    study.set_user_attr(SPEC_ATTR, raw)
    models = ("--models", str(tmp_path / "project"))
    one_error_line(invoke(*worker, *models), "imports only modules it was given")
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trials").fetchone() == (0,)


# --- whole studies ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_example_study_runs_end_to_end(sample_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "custom.db"
    url = f"sqlite:///{db}"
    tiny = [
        "--set", "data.train_size=256", "--set", "data.val_size=128", "--set", "train.epochs=3",
        "--set", "study.n_trials=6", "--set", "study.pruner_min_epochs=1",
        "--set", "search.model_params={ channels = [8], blocks = [1] }",
        "--set", "latency.max_seconds=0.5", "--set", "latency.max_rounds=2",
    ]  # fmt: skip
    spec = str(ROOT / "studies" / "custom_model.toml")
    result = run_cli("run", spec, "--data", str(sample_path), "--storage", url, *tiny)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="custom_model", storage=open_storage(url))
    trials = study.get_trials()
    assert any(t.state.name == "PRUNED" for t in trials), [t.state for t in trials]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len({t.params["norm"] for t in trials}) >= 2, "norm is searched"
    for trial in complete:
        report = flat(trial.user_attrs, trial.system_attrs)["fold_report"]
        config = stored_config(trial.user_attrs, trial.system_attrs)
        assert config["channels"] == 8 and config["blocks"] == 1, config
        if config["norm"] == "batch":
            assert report["n_folded"] == 3 and report["n_kept"] == 0, report
    # Three norms, one architecture each: every later trial of a norm reuses its probe.
    cached = [t.user_attrs.get("latency_probe_cached") for t in trials]
    assert sum(map(bool, cached)) >= len(trials) - 3, cached
    # The export command `best` suggests says that rebuilding the network needs the file.
    best = run_cli("best", "--storage", url, "--study-name", "custom_model")
    assert best.returncode == 0, best.stderr
    assert " --models DIR \\\n" in best.stdout, best.stdout
    assert "(DIR: the folder that holds nets/tiny.py, at that path)" in best.stdout, best.stdout

    best = invoke("best", "--storage", url, "--study-name", "custom_model", "--wide")
    assert best.returncode == 0 and "channels" in best.stdout, best.stdout + best.stderr
    assert invoke("db", "views", "--storage", url).returncode == 0
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT number, channels, blocks FROM hpo_trials WHERE on_front = 1"
        ).fetchall()
    assert rows and all(row[1:] == (8, 1) for row in rows), rows

    out = tmp_path / "export"
    export = ("export", "--storage", url, "--study-name", "custom_model", "--trial")
    one_error_line(invoke(*export, str(rows[0][0]), "--out", str(out)), "--models")
    done = invoke(*export, str(rows[0][0]), "--out", str(out), "--models", str(ROOT / "studies"))
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "model-card.json").read_text())
    assert card["model_factory"]["reference"] == "nets/tiny.py:build"
    assert card["model_factory"]["origin"] == str(EXAMPLE_NET)
    assert card["params"]["channels"] == 8


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgresql_run_a_user_model(
    pg_url: str, tiny_npz: Path, tmp_path: Path
) -> None:
    project = copy_example(tmp_path / "project")
    spec = write_spec(project, "nets/tiny.py:build", TINY_PARAMS, name="pgmine", n=4)
    created = invoke("create", str(spec), "--storage", pg_url, "--data", str(tiny_npz))
    assert created.returncode == 0, created.stderr
    # Each worker has its own copy of the model file, given one by flag, one by environment.
    copies = [copy_example(tmp_path / f"copy-{i}") for i in range(2)]
    base = ("worker", "--storage", pg_url, "--study-name", "pgmine", "--data", str(tiny_npz))
    workers = [
        start_cli(*base, "--models", str(copies[0]), log=tmp_path / "worker-0.log"),
        start_cli(*base, log=tmp_path / "worker-1.log", env={"HPO_MODELS": str(copies[1])}),
    ]
    codes = wait_all(workers, 300)
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert all("nets/tiny.py:build" in log and "accuracy" in log for log in logs), logs
    trials = optuna.load_study(study_name="pgmine", storage=open_storage(pg_url)).get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert 4 <= len(complete) <= 5, [t.state for t in trials]
    assert all(stored_config(t.user_attrs, t.system_attrs)["channels"] == 8 for t in complete)


def test_a_fold_the_graph_cannot_judge_is_refused_before_any_training() -> None:
    """An untrained network's BatchNorms are the identity, so the pre-study check folds a copy
    with trained-looking statistics: a fold that is wrong (here a conv whose forward hook
    doubles its output, which the traced graph does not show) is refused before a study
    exists."""
    from hpo.run.user_model import _check_the_fold

    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
        torch.nn.LazyLinear(10),
    )  # fmt: skip
    network(torch.zeros(2, 3, 32, 32))
    _check_the_fold("net", network.eval())
    network[0].register_forward_hook(lambda module, inputs, output: output * 2.0)
    assert fold_batchnorm(network)[1].n_folded == 1
    with pytest.raises(SpecError, match="net: folding its BatchNorms changes its outputs"):
        _check_the_fold("net", network)


def test_an_edited_factory_file_is_refused_by_its_study_and_probed_anew(
    tmp_path: Path, tiny_npz: Path
) -> None:
    """A study's trials, probes and stored models came from its factory's code: run, create,
    worker and export refuse an edited file, and its probes are keyed by the file's content."""
    from hpo.run.probing import study_probe_context

    project = copy_example(tmp_path / "project")
    spec = write_spec(project, "nets/tiny.py:build", TINY_PARAMS)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert invoke("create", str(spec), "--data", str(tiny_npz), "--storage", url).returncode == 0
    loaded = validate(tomllib.loads(spec.read_text()))
    user.load("nets/tiny.py:build", user.ModelSources(spec_dir=project))
    before = study_probe_context(loaded, 10, torch.device("cpu"))

    net = project / "nets" / "tiny.py"
    net.write_text(net.read_text() + "\n# edited\n")
    expected = "nets/tiny.py is not the file study 'mine' was created with (SHA-256 "
    for command in ("create", "run"):
        one_error_line(
            invoke(command, str(spec), "--data", str(tiny_npz), "--storage", url), expected
        )
    worker = ("worker", "--storage", url, "--study-name", "mine", "--data", str(tiny_npz))
    one_error_line(invoke(*worker, "--models", str(project)), expected)
    user.load("nets/tiny.py:build", user.ModelSources(spec_dir=project))
    after = study_probe_context(loaded, 10, torch.device("cpu"))
    assert after["model_factory_sha256"] != before["model_factory_sha256"]
    assert {k: v for k, v in after.items() if k != "model_factory_sha256"} == {
        k: v for k, v in before.items() if k != "model_factory_sha256"
    }
    study = optuna.load_study(study_name="mine", storage=open_storage(url))
    assert not study.get_trials(), "nothing ran"

    shutil.copy(EXAMPLE_NET, net)  # the study's own file again
    assert invoke("create", str(spec), "--data", str(tiny_npz), "--storage", url).returncode == 0


def test_a_file_that_sets_torchs_default_dtype_leaves_hpos_alone(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\ntorch.set_default_dtype(torch.float64)\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "def switching(num_classes):\n"
        "    network = build(num_classes)\n"
        "    torch.set_default_dtype(torch.float64)\n"
        "    return network\n"
    )
    user.load("net.py:build", user.ModelSources(spec_dir=tmp_path))
    assert torch.get_default_dtype() == torch.float32, "after the import"
    network = build_model("net.py:build", norm=None, num_classes=10)
    assert all(p.dtype == torch.float32 for p in network.parameters())
    user.load("net.py:switching", user.ModelSources(spec_dir=tmp_path))
    build_model("net.py:switching", norm=None, num_classes=10)
    assert torch.get_default_dtype() == torch.float32, "after the factory's call"


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance", "none"])
def test_a_norm_layer_takes_batchnorms_eps_and_momentum(norm: str) -> None:
    """Networks pass BatchNorm's own keywords to their norm_layer, as EfficientNets do."""
    from models.norm import make_norm

    layer = make_norm(norm, 16, eps=1e-3, momentum=0.01)
    if norm != "none":
        assert layer.eps == 1e-3
    if norm == "batch":
        assert layer.momentum == 0.01
    assert make_norm("batch", 16, momentum=None).momentum is None, "a cumulative average"
    layer(torch.randn(2, 16, 4, 4))
    plain = make_norm(norm, num_features=16, affine=False)
    assert not any(True for _ in plain.parameters()), "affine=False: no weight, no bias"
    plain(torch.randn(2, 16, 4, 4))


@pytest.mark.parametrize("sampler", ["random", "latency_aware"])
def test_a_factory_that_raises_for_some_params_fails_that_trial_only(
    sampler: str, tmp_path: Path, tiny_npz: Path
) -> None:
    """The check before the study builds a range's ends; a value between them the factory
    cannot build fails its trial (with the reason), and the study goes on. The latency-aware
    sampler, which probes candidates itself, leaves such params out of its candidates."""
    (tmp_path / "net.py").write_text(
        EXAMPLE_NET.read_text().replace(
            "    layers: list[nn.Module] = []",
            "    if blocks in (2, 3):\n        raise ValueError('two blocks do not fit')\n"
            "    layers: list[nn.Module] = []",
        )
    )
    search = 'norm = "batch"\n[search.model_params]\nchannels = 8\n'
    search += "blocks = { low = 1, high = 4, first = 2 }\n"
    spec = write_spec(tmp_path, "net.py:build", search, n=3)
    study = "seed = 0\nstart_from_first = true"
    study += "\nrandom_start = 1" if sampler == "latency_aware" else ""
    spec.write_text(spec.read_text().replace('"random"', f'"{sampler}"').replace("seed = 0", study))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("run", str(spec), "--data", str(tiny_npz), "--storage", url)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="mine", storage=open_storage(url)).get_trials()
    assert len(trials) == 3, "a configuration that cannot be built is a result: it counts"
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert all(t.params for t in trials), "every trial ran a configuration"
    assert all(t.params["blocks"] in (2, 3) for t in failed)
    assert trials[0] in failed
    assert trials[0].user_attrs["fail_reason"] == "no network with these params"
    assert trials[0].system_attrs["hpo:detail:fail_reason"] == (
        "no network with these params: the factory raised ValueError: two blocks do not fit"
    )


def test_a_factory_with_width_and_dropout_params_runs_them(tmp_path: Path, tiny_npz: Path) -> None:
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def build(num_classes, norm_layer=nn.BatchNorm2d, width=8, dropout=0.0):\n"
        "    return nn.Sequential(\n"
        "        nn.Conv2d(3, width, 3, padding=1, bias=False), norm_layer(width), nn.ReLU(),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),\n"
        "        nn.Linear(width, num_classes))\n"
    )
    search = "[search.model_params]\nwidth = [8, 16]\ndropout = [0.0, 0.5]\n"
    spec = write_spec(tmp_path, "net.py:build", search, n=2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("run", str(spec), "--data", str(tiny_npz), "--storage", url)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="mine", storage=open_storage(url)).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        assert {"width", "dropout"} <= set(t.params)
        width = t.params["width"]
        assert stored_config(t.user_attrs, t.system_attrs)["width"] == width
        # The factory built it with that width: conv, BatchNorm and the head.
        assert t.user_attrs["n_params"] == 3 * 9 * width + 2 * width + (width + 1) * 10


def test_a_network_onnx_cannot_export_runs_when_timed_eagerly(
    tmp_path: Path, tiny_npz: Path
) -> None:
    """Timed in eager PyTorch, such a network trains and is measured; its model is stored
    without the ONNX file, and the trial says why."""
    (tmp_path / "net.py").write_text(SHUFFLING_NET)
    spec = write_spec(tmp_path, "net.py:build", n=1)
    spec.write_text(spec.read_text().replace("[latency]\n", '[latency]\nbackend = "eager"\n'))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli("run", str(spec), "--data", str(tiny_npz), "--storage", url)
    assert result.returncode == 0, result.stderr
    assert "ONNX graph" not in result.stdout, "the exporter's graph dump is held back"
    (trial,) = optuna.load_study(study_name="mine", storage=open_storage(url)).get_trials()
    assert trial.state.name == "COMPLETE"
    error = trial.user_attrs["artifact_error"]
    assert error.startswith("folded-model.onnx: ONNX cannot export it"), error


def test_a_package_factory_is_keyed_by_its_whole_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit to a helper module the factory imports changes the network as much as an edit
    to the factory's own module; `--models mypkg` run beside the package's folder names both."""
    package = tmp_path / "hpo_probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text("WIDTH = 8\n")
    (package / "nets.py").write_text(
        "from torch import nn\nfrom .blocks import WIDTH\n"
        "def build(num_classes):\n    return nn.Linear(WIDTH, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    given = user.ModelSources.parse(["hpo_probe_pkg"])
    assert given.folders == (package.resolve(),) and given.modules == ("hpo_probe_pkg",)
    before = user.load("hpo_probe_pkg.nets:build", given).sha256
    (package / "blocks.py").write_text("WIDTH = 16\n")
    assert user.load("hpo_probe_pkg.nets:build", given).sha256 != before

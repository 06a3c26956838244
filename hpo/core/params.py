"""The catalog of hyperparameters a spec's [search] table may fix or search over.

Each entry says its type, default, allowed values or bounds, and when it applies: conditional
hyperparameters (momentum, betas, scheduler settings, ...) are sampled only when their parent
choice makes them meaningful, so Optuna never records a value that had no effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hpo.core.names import (
    ADAM_FAMILY,
    CYCLIC_SCHEDULERS,
    DECAY_SCHEDULERS,
    LOSSES,
    MOMENTUM_OPTIMIZERS,
    OPTIMIZERS,
    SCHEDULERS,
    SMOOTHED_LOSSES,
)
from models.catalog import (
    ACTIVATIONS,
    ATTENTIONS,
    DENSE_ORDERS,
    HEADS,
    KERNELS,
    NORMS,
    POOLS,
    families_with,
    family_names,
)

Kind = Literal["categorical", "float", "int"]
Chosen = Mapping[str, Any]


@dataclass(frozen=True)
class Condition:
    """When a hyperparameter applies: param `key` has one of `values` (no key: always).

    One declaration gives both the predicate and the text the spec reference shows; `text`
    replaces that text where the list of values reads worse than a name for it.
    """

    key: str | None = None
    values: tuple[str, ...] = ()
    text: str | None = None

    def __call__(self, chosen: Chosen) -> bool:
        return self.key is None or chosen.get(self.key) in self.values

    def describe(self) -> str:
        """How the reference says when the param applies: `key = v` or `key in v1, v2`."""
        if self.text is not None:
            return self.text
        if self.key is None:
            return "always"
        if len(self.values) == 1:
            return f"{self.key} = {self.values[0]}"
        return f"{self.key} in {', '.join(self.values)}"


ALWAYS = Condition()


@dataclass(frozen=True)
class Hyperparameter:
    """One searchable hyperparameter: its type, default, domain and condition."""

    name: str
    kind: Kind
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    log: bool = False
    condition: Condition = ALWAYS
    # True when the value changes the network's inference graph, so its latency: latency
    # probes are keyed by these params alone (training settings never change latency).
    architecture: bool = False
    # For an option only some model families take: those families (it applies only to them).
    families: tuple[str, ...] = ()

    def applies(self, chosen: Chosen) -> bool:
        """Whether this param means anything given the params `chosen` so far."""
        return self.condition(chosen)

    @property
    def applies_when(self) -> str:
        return self.condition.describe()

    def check_value(self, value: Any) -> str | None:
        """Why `value` is not allowed for this hyperparameter, or None when it is."""
        if self.kind == "categorical":
            if value not in self.choices:
                allowed = ", ".join(str(c) for c in self.choices)
                return f"unknown value {value!r}; allowed: {allowed}"
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if self.kind == "int" and not float(value).is_integer():
            return f"expected an integer, got {value!r}"
        if self.choices and value not in self.choices:
            return f"unknown value {value!r}; allowed: {', '.join(str(c) for c in self.choices)}"
        low_ok = self.minimum is None or (
            value > self.minimum if self.exclusive_minimum else value >= self.minimum
        )
        if not low_ok or (self.maximum is not None and value > self.maximum):
            return f"{value!r} is out of range; allowed: {self.bounds()}"
        return None

    def bounds(self) -> str:
        """Human-readable allowed interval."""
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{'(' if self.exclusive_minimum else '['}{low}, {high}]"


_MOMENTUM = Condition("optimizer", MOMENTUM_OPTIMIZERS)
_ADAM = Condition("optimizer", ADAM_FAMILY, text="optimizer in Adam family")


ALL_FAMILIES = tuple(family_names())
# Options every built-in family takes and a user's model factory does not (it declares its own).
_FAMILIES_ONLY = Condition("model", ALL_FAMILIES, "always (built-in families)")
# What hpo passes a user's model factory itself: [search.model_params] cannot take these names.
RESERVED_MODEL_ARGS: tuple[str, ...] = ("num_classes", "norm_layer")


def _family_option(name: str, kind: Kind, default: Any, help: str, **domain: Any) -> Hyperparameter:
    """An architecture param that applies to the model families taking option `name`."""
    families = families_with(name)
    return Hyperparameter(
        name,
        kind,
        default,
        help,
        # Taken by every family: the reference says "always" rather than list them all.
        condition=_FAMILIES_ONLY if families == ALL_FAMILIES else Condition("model", families),
        architecture=True,
        families=families,
        **domain,
    )


# Order matters: a parameter's condition may only look at parameters listed before it.
CATALOG: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "model",
        "categorical",
        "resnet",
        "model family (registry name), or a model factory: FILE.py:NAME, module.path:NAME or "
        "torchvision:NAME (README: Your own model)",
        choices=ALL_FAMILIES,
        architecture=True,
    ),
    Hyperparameter(
        "norm",
        "categorical",
        "batch",
        "normalization after each conv",
        choices=NORMS,
        architecture=True,
    ),
    Hyperparameter(
        "head",
        "categorical",
        "gap",
        "classifier head: gap = global average pool, gmp = global max pool, flatten = "
        "flatten + linear",
        choices=HEADS,
        condition=_FAMILIES_ONLY,
        architecture=True,
        families=ALL_FAMILIES,
    ),
    Hyperparameter(
        "activation",
        "categorical",
        "relu",
        "nonlinearity after each norm layer (every ReLU of the family)",
        choices=ACTIVATIONS,
        condition=_FAMILIES_ONLY,
        architecture=True,
        families=ALL_FAMILIES,
    ),
    Hyperparameter(
        "width",
        "float",
        1.0,
        "channel multiplier",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=8.0,
        condition=_FAMILIES_ONLY,
        architecture=True,
        families=ALL_FAMILIES,
    ),
    _family_option("depth", "int", 14, "ResNet depth (6n+2)", choices=(8, 14, 20, 26, 32, 44, 56)),
    _family_option(
        "pool",
        "categorical",
        "auto",
        "downsampling: 2x2 max or average pooling, or conv = a stride-2 convolution; auto = "
        "the family's own (max: compact, simple_cnn, vgg; conv: resnet, mobilenet; avg: densenet)",
        choices=POOLS,
    ),
    _family_option(
        "kernel",
        "categorical",
        "auto",
        "a stage's convs: two stacked 3x3 or one 5x5 (same receptive field); auto = the "
        "family's own (3x3: vgg; 5x5: simple_cnn)",
        choices=KERNELS,
    ),
    _family_option(
        "bottleneck",
        "float",
        0.0,
        "a 1x1 conv before each 3x3/5x5 conv cuts its input to this ratio of the channels "
        "(where that cuts any); 0 = none",
        minimum=0.0,
        maximum=1.0,
    ),
    _family_option(
        "attention",
        "categorical",
        "none",
        "se = squeeze-and-excitation in each stage or block (before a residual add; after "
        "the depthwise conv in mobilenet)",
        choices=ATTENTIONS,
    ),
    Hyperparameter(
        "se_ratio",
        "int",
        8,
        "squeeze-and-excitation reduction: hidden units = channels / se_ratio (at least 8)",
        minimum=1,
        maximum=64,
        condition=Condition("attention", ("se",)),
        architecture=True,
        # Only the families that take attention: never a model factory.
        families=families_with("attention"),
    ),
    _family_option(
        "growth_rate",
        "int",
        12,
        "DenseNet: channels each layer adds (times width)",
        minimum=1,
        maximum=128,
    ),
    _family_option(
        "dense_layers",
        "int",
        4,
        "DenseNet: layers in each of the three dense blocks",
        minimum=1,
        maximum=64,
    ),
    _family_option(
        "compression",
        "float",
        0.5,
        "DenseNet: fraction of the channels a transition keeps",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1.0,
    ),
    _family_option(
        "dense_order",
        "categorical",
        "pre",
        "DenseNet unit order: pre = norm -> ReLU -> conv (DenseNet's; its BatchNorms read "
        "concatenations and are kept), post = conv -> norm -> ReLU (every BatchNorm folds)",
        choices=DENSE_ORDERS,
    ),
    Hyperparameter(
        "dropout",
        "float",
        0.0,
        "dropout before the linear head",
        minimum=0.0,
        maximum=0.9,
        condition=_FAMILIES_ONLY,
        families=ALL_FAMILIES,
    ),
    Hyperparameter("optimizer", "categorical", "nesterov", "optimizer", choices=OPTIMIZERS),
    Hyperparameter(
        "lr",
        "float",
        0.05,
        "learning rate (peak rate for cyclic/onecycle)",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=10.0,
        log=True,
    ),
    Hyperparameter(
        "momentum",
        "float",
        0.9,
        "momentum",
        minimum=0.0,
        maximum=0.999,
        condition=_MOMENTUM,
    ),
    Hyperparameter(
        "beta1",
        "float",
        0.9,
        "Adam beta1",
        minimum=0.0,
        maximum=0.9999,
        condition=_ADAM,
    ),
    Hyperparameter(
        "beta2",
        "float",
        0.999,
        "Adam beta2",
        minimum=0.0,
        maximum=0.99999,
        condition=_ADAM,
    ),
    Hyperparameter(
        "eps",
        "float",
        1e-8,
        "Adam epsilon",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1.0,
        log=True,
        condition=_ADAM,
    ),
    Hyperparameter(
        "weight_decay",
        "float",
        5e-4,
        "weight decay (decoupled for adamw)",
        minimum=0.0,
        maximum=1.0,
    ),
    Hyperparameter(
        "scheduler", "categorical", "onecycle", "learning-rate schedule", choices=SCHEDULERS
    ),
    Hyperparameter(
        "step_size",
        "float",
        2.0,
        "epochs between decays (step)",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1000.0,
        condition=Condition("scheduler", ("step",)),
    ),
    Hyperparameter(
        "gamma",
        "float",
        0.5,
        "decay factor (per step/milestone/epoch/plateau)",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1.0,
        condition=Condition("scheduler", DECAY_SCHEDULERS),
    ),
    Hyperparameter(
        "t0",
        "float",
        1.0,
        "epochs until the first warm restart",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=1000.0,
        condition=Condition("scheduler", ("cosine_warm_restarts",)),
    ),
    Hyperparameter(
        "t_mult",
        "int",
        1,
        "factor growing each restart period",
        minimum=1,
        maximum=10,
        condition=Condition("scheduler", ("cosine_warm_restarts",)),
    ),
    Hyperparameter(
        "max_lr_factor",
        "float",
        1.0,
        "peak rate = lr * max_lr_factor",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=100.0,
        condition=Condition("scheduler", CYCLIC_SCHEDULERS),
    ),
    Hyperparameter(
        "onecycle_warmup",
        "float",
        0.3,
        "fraction of training onecycle spends rising to its peak rate",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=0.9,
        condition=Condition("scheduler", ("onecycle",)),
    ),
    Hyperparameter(
        "warmup_fraction",
        "float",
        0.1,
        "fraction of training spent warming up",
        minimum=0.0,
        maximum=0.9,
        condition=Condition("scheduler", ("lambda",)),
    ),
    Hyperparameter(
        "power",
        "float",
        1.0,
        "polynomial decay power",
        minimum=0.0,
        exclusive_minimum=True,
        maximum=10.0,
        condition=Condition("scheduler", ("polynomial",)),
    ),
    Hyperparameter("batch_size", "int", 128, "training batch size", minimum=1, maximum=65536),
    Hyperparameter(
        "translate",
        "int",
        4,
        "augmentation: each image shifted by up to this many pixels (reflect padding), when "
        "[train] augment is on",
        minimum=0,
        maximum=16,
    ),
    Hyperparameter(
        "loss",
        "categorical",
        "cross_entropy",
        "training criterion: cross_entropy, nll (on log-softmax), multi_margin (multi-class "
        "hinge), bce (with logits, one-hot targets), mse (softmax vs one-hot), kl (to "
        "label-smoothed targets)",
        choices=LOSSES,
    ),
    Hyperparameter(
        "label_smoothing",
        "float",
        0.1,
        "label smoothing of the targets (cross_entropy, kl)",
        minimum=0.0,
        maximum=0.9,
        condition=Condition("loss", SMOOTHED_LOSSES),
    ),
)

BY_NAME: dict[str, Hyperparameter] = {p.name: p for p in CATALOG}


def factory_may_name(name: str) -> bool:
    """Whether a model factory's own param (`[search.model_params]`) may have this name: not
    one hpo passes the factory, nor a key that applies to every model (lr, norm, ...). The
    built-in families' own options (width, depth, dropout, ...) never apply to a factory, so its
    params may take their names: a trial has one or the other."""
    param = BY_NAME.get(name)
    return name not in RESERVED_MODEL_ARGS and (param is None or bool(param.families))


# The params that set the network's inference graph (and so its latency), in catalog order.
ARCHITECTURE: tuple[str, ...] = tuple(p.name for p in CATALOG if p.architecture)


def model_param(name: str, value: Any) -> Hyperparameter:
    """A user model's own hyperparameter, typed by how the spec writes it: a range of integers
    is an int, any other range a float, a value or a list of values a choice among them."""
    if isinstance(value, dict):
        bounds = [value.get("low"), value.get("high")]
        whole = all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        return Hyperparameter(
            name, "int" if whole else "float", bounds[0], "model parameter", architecture=True
        )
    choices = tuple(value) if isinstance(value, list) else (value,)
    return Hyperparameter(
        name,
        "categorical",
        choices[0] if choices else None,
        "model parameter",
        choices=choices,
        architecture=True,
    )

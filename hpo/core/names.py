"""Names a spec may use and the study's objectives (plain data: the spec needs no torch).

The attribute keys a study stores are in `hpo.core.trial_attrs`.
"""

from hpo.core.trial_attrs import LATENCY_MS_ATTR

OPTIMIZERS: tuple[str, ...] = (
    "sgd",
    "sgd_momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "nadam",
    "adamax",
    "amsgrad",
)
MOMENTUM_OPTIMIZERS: tuple[str, ...] = ("sgd_momentum", "nesterov", "rmsprop")
ADAM_FAMILY: tuple[str, ...] = ("adam", "adamw", "nadam", "adamax", "amsgrad")

SCHEDULERS: tuple[str, ...] = (
    "step",
    "multistep",
    "exponential",
    "cosine",
    "plateau",
    "cyclic",
    "onecycle",
    "cosine_warm_restarts",
    "lambda",
    "polynomial",
)
DECAY_SCHEDULERS: tuple[str, ...] = ("step", "multistep", "exponential", "plateau")
CYCLIC_SCHEDULERS: tuple[str, ...] = ("cyclic", "onecycle")

# Training criteria for single-label classification (see the README for the rest of torch.nn's).
LOSSES: tuple[str, ...] = ("cross_entropy", "nll", "multi_margin", "bce", "mse", "kl")
# The criteria whose targets are label-smoothed (`label_smoothing` applies to them).
SMOOTHED_LOSSES: tuple[str, ...] = ("cross_entropy", "kl")

SAMPLERS: tuple[str, ...] = (
    "auto",
    "latency_aware",
    "latency_joint",
    "random",
    "grid",
    "qmc",
    "tpe",
    "gp",
    "nsga2",
    "nsga3",
)
PRUNERS: tuple[str, ...] = ("none", "pareto")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
LATENCY_BACKENDS: tuple[str, ...] = ("auto", "eager", "torchscript", "onnxruntime")

# The study's two objectives, in Optuna's order, and how they are optimized.
METRIC_NAMES: tuple[str, ...] = ("accuracy", LATENCY_MS_ATTR)
DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")
# The params people look at first, in this order (tables, views, reports); others follow.
LEADING_PARAMS: tuple[str, ...] = ("model", "norm", "optimizer", "lr", "scheduler")
# The dimensions every study is about; narrow tables always show these and the two objectives.
MISSION_PARAMS: tuple[str, ...] = ("norm", "optimizer", "lr", "scheduler")

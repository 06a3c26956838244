"""The optimizer and scheduler names a spec may use (kept apart so the spec needs no torch)."""

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

SAMPLERS: tuple[str, ...] = ("auto", "random", "grid", "qmc", "tpe", "gp", "nsga2", "nsga3")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
LATENCY_BACKENDS: tuple[str, ...] = ("auto", "eager", "torchscript", "onnxruntime")

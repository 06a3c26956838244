"""CIFAR CNN architectures: one file per family, registered by name."""

from models import mobilenet, resnet, simple_cnn, vgg  # noqa: F401  (registers the families)
from models.layers import HEADS
from models.norm import NORMS, make_norm
from models.registry import build_model, count_parameters, list_models, model_info, register_model

__all__ = [
    "HEADS",
    "NORMS",
    "build_model",
    "count_parameters",
    "list_models",
    "make_norm",
    "model_info",
    "register_model",
]

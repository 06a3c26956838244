"""Cost counts: parameters and multiply-accumulates (MACs) per layer and in total.

MACs are counted for convolutions, linear layers and attention (its projections and products),
the layers that do the multiplying; norms,
activations, pooling and residual adds are elementwise and counted as zero, the usual convention
(so folding a BatchNorm changes parameters but never MACs). Counts are per image: one forward
pass of a single input, with shapes taken from forward hooks, so any graph the model builds
(residual adds, shared layers called twice) is counted as it actually runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

INPUT_SHAPE = (3, 32, 32)
# Layers counted as one, whatever modules they hold.
_COUNTED_WHOLE = (_ConvNd, nn.Linear, nn.MultiheadAttention)


@dataclass
class LayerCost:
    """One leaf layer: its own parameters (weights alone too) and MACs over all its calls."""

    layer: str
    type: str
    params: int
    weights: int
    macs: int
    output: list[int]


@dataclass
class Cost:
    """Per-layer costs and the totals of one network for one image."""

    layers: list[LayerCost]
    params: int
    macs: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (the trial stores `macs`, `n_params_folded` and `cost_layers`)."""
        return {"params": self.params, "macs": self.macs, "layers": self.layer_dicts()}

    def layer_dicts(self) -> list[dict[str, object]]:
        """The layers that hold parameters or do MACs, as plain dicts."""
        return [asdict(layer) for layer in self.layers if layer.params or layer.macs]


def conv_macs(conv: _ConvNd, input_shape: torch.Size, output_shape: torch.Size) -> int:
    """MACs of one conv call on one image: each output value sums (in/groups) * kernel products."""
    kernel = math.prod(conv.kernel_size)
    if conv.transposed:
        # Each input value is scattered to (out/groups) * kernel outputs.
        return math.prod(input_shape[1:]) * (conv.out_channels // conv.groups) * kernel
    return math.prod(output_shape[1:]) * (conv.in_channels // conv.groups) * kernel


def linear_macs(linear: nn.Linear, output_shape: torch.Size) -> int:
    """MACs of one linear call on one image: in_features products per output value."""
    return math.prod(output_shape[1:]) * linear.in_features


def attention_macs(attention: nn.MultiheadAttention, inputs: tuple[object, ...]) -> int:
    """MACs of one attention call on one image: the query, key and value projections, the
    query-key products, the weighted sum of values and the output projection."""
    tensors = [t for t in inputs[:3] if isinstance(t, torch.Tensor)]
    if len(tensors) < 3:
        return 0

    def length(sequence: torch.Tensor) -> int:
        # (L, E) unbatched, else (N, L, E) batch first, or (L, N, E).
        batched_first = sequence.dim() == 3 and attention.batch_first
        return int(sequence.shape[1] if batched_first else sequence.shape[0])

    query, key, value = map(length, tensors)
    if key != value:
        return 0
    embed = attention.embed_dim
    projections = query * embed * embed + key * (attention.kdim + attention.vdim) * embed
    return projections + 2 * query * key * embed + query * embed * embed


def _macs(module: nn.Module, inputs: tuple[object, ...], output: object) -> int:
    if isinstance(module, nn.MultiheadAttention):
        return attention_macs(module, inputs)
    if not isinstance(output, torch.Tensor) or not inputs:
        return 0
    first = inputs[0]
    if isinstance(module, _ConvNd) and isinstance(first, torch.Tensor):
        return conv_macs(module, first.shape, output.shape)
    if isinstance(module, nn.Linear):
        return linear_macs(module, output.shape)
    return 0


def _own_params(module: nn.Module) -> tuple[int, int]:
    params = sum(p.numel() for p in module.parameters(recurse=False))
    weight = getattr(module, "weight", None)
    weights = weight.numel() if isinstance(weight, torch.Tensor) else 0
    return params, weights


def count_cost(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> Cost:
    """Parameters and MACs of every leaf layer of `model` for one image of `input_shape`."""
    # Layers without children, and those whose children only hold their weight or help them:
    # a parametrized conv (weight_norm's), attention (its out_proj it never calls as a module).
    leaves = {
        name: module
        for name, module in model.named_modules()
        if not any(module.children()) or isinstance(module, _COUNTED_WHOLE)
    }
    layers = {
        name: LayerCost(name, type(m).__name__, *_own_params(m), macs=0, output=[])
        for name, m in leaves.items()
    }

    def hook(name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def record(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            layers[name].macs += _macs(module, inputs, output)
            if isinstance(output, torch.Tensor):
                layers[name].output = list(output.shape[1:])

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in leaves.items()]
    # A forward pass must not change the model: eval mode keeps BatchNorm statistics as they are.
    modes = {module: module.training for module in model.modules()}
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)
    total_params = sum(p.numel() for p in model.parameters())
    ordered = list(layers.values())
    return Cost(ordered, total_params, sum(layer.macs for layer in ordered))

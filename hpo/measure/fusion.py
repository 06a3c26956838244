"""Inference-time BatchNorm folding on the traced graph, and the check that it changed nothing.

A BatchNorm in eval mode is an affine map per channel, so when it directly follows a conv (or a
BatchNorm1d follows a Linear with a 2-D output) it can be folded into that layer's weights and
bias, unless something else sees those weights or that output: another call of the layer, or
a direct read of a weight. The model is
traced with torch.fx and each BatchNorm node is matched to the node that produces its input, so
residual adds, depthwise/pointwise convs and convs with or without bias are handled by the graph,
not by guessing from module order; the arithmetic is torch's own `fuse_conv_bn_eval` /
`fuse_linear_bn_eval`. A BatchNorm that does not follow a conv (e.g. one reading a concatenation,
as in pre-activation DenseNet) folds forward into the conv it feeds when nothing is between them
and that conv does not pad with zeros: zero padding would pad the normalized map with zeros,
which the folded conv could only reproduce by padding the raw map with -shift/scale. A
BatchNorm1d folds forward into a Linear the same way when its input is known to be 2-D (a
flatten, or layers that keep a flatten's shape): on (N, C, L) the BatchNorm would scale dim 1
and the Linear read the last. Dropout and Identity between them do nothing at inference and do
not stop a forward fold (as in heads of BatchNorm1d, Dropout, Linear). Group,
layer and instance norms use per-sample statistics and cannot be folded; they, and every
BatchNorm that cannot be folded either way, are kept and listed with the reasons.
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_weights
from torch.nn.utils.parametrize import is_parametrized

NORM_TYPES: tuple[type[nn.Module], ...] = (
    _NormBase,  # every BatchNorm and InstanceNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)

# The BatchNorm that matches each conv's dimensionality (its channels are dim 1 of the output).
_CONV_BN = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}

# Layers that are the identity at inference: a forward fold may pass them.
_INFERENCE_IDENTITY = (nn.Identity, _DropoutNd)
# Layers whose output has their input's shape (for telling a BatchNorm1d's input is 2-D).
_SHAPE_KEEPING = (
    nn.Linear, nn.BatchNorm1d, nn.Identity, _DropoutNd,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
)  # fmt: skip

# Norms called as functions rather than modules: nothing to fold into, but worth listing.
_FUNCTIONAL_NORMS = {
    torch.nn.functional.batch_norm: "batch_norm",
    torch.nn.functional.group_norm: "group_norm",
    torch.nn.functional.layer_norm: "layer_norm",
    torch.nn.functional.instance_norm: "instance_norm",
    torch.nn.functional.rms_norm: "rms_norm",
}


class FoldingError(RuntimeError):
    """The model cannot be folded (e.g. it is in train mode)."""


class EquivalenceError(AssertionError):
    """The folded network does not compute what the unfused one does: a bug, never user input."""


@dataclass
class FoldReport:
    """Which norm layers were folded into the layer before them, and which were kept (and why)."""

    folded: list[dict[str, str]] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_folded(self) -> int:
        return len(self.folded)

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, as stored in the trial's `fold_report` user attribute."""
        return {"n_folded": self.n_folded, "n_kept": self.n_kept, **asdict(self)}


def _module(graph_module: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    return graph_module.get_submodule(str(node.target))


def _pairs_with(producer: nn.Module, bn: _BatchNorm) -> str:
    """Empty when `bn` can fold into `producer`, else the reason it cannot."""
    kind = type(producer).__name__
    if isinstance(producer, nn.Linear):
        return "" if isinstance(bn, nn.BatchNorm1d) else f"follows {kind} but is not BatchNorm1d"
    if not isinstance(producer, _ConvNd):
        return f"follows {kind}, not a conv/linear"
    if producer.transposed:
        return f"follows {kind}: transposed convs are not folded"
    if is_parametrized(producer):
        return f"follows {kind}, whose weight is parametrized (weight_norm, ...): not folded"
    expected = _bn_for(producer)
    if not isinstance(bn, nn.SyncBatchNorm) and (expected is None or not isinstance(bn, expected)):
        return f"follows {kind}: dimensions differ from {type(bn).__name__}"
    return ""


def _bn_for(conv: _ConvNd) -> type[_BatchNorm] | None:
    """The BatchNorm of the conv's dimensionality (subclasses of Conv2d too)."""
    return next((bn for kind, bn in _CONV_BN.items() if isinstance(conv, kind)), None)


def _single_input(bn_node: fx.Node) -> fx.Node | None:
    """The node the BN reads, when it reads exactly one layer output and nothing else."""
    source = bn_node.args[0] if bn_node.args else None
    if not isinstance(source, fx.Node) or len(bn_node.args) != 1 or bn_node.kwargs:
        return None
    return source


def _not_a_module(node: fx.Node) -> str:
    """How to name a node that calls no module: its function, or its op."""
    what = node.target if node.op in ("call_function", "call_method") else node.op
    return str(getattr(what, "__name__", what))


def _calls(graph_module: fx.GraphModule, target: object) -> int:
    """How many nodes call the module `target` (more than one: shared weights)."""
    return sum(n.op == "call_module" and n.target == target for n in graph_module.graph.nodes)


def _used_outside_the_graph(graph_module: fx.GraphModule, nodes: tuple[fx.Node, ...]) -> str:
    """Why folding would change what the modules these nodes call compute elsewhere, or '':
    a weight read directly (`F.conv2d(x, self.conv.weight)`), which would read the folded
    layer's weight. (A weight tied to another layer's is no reason: folding gives the folded
    layer new weights and leaves the other's as they are. A forward hook that changes a
    layer's output is not seen here: the check of a user's network with trained-looking
    statistics refuses it, `hpo.run.user_model`.)"""
    targets = [str(node.target) for node in nodes]
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and any(
            str(node.target).startswith(target + ".") for target in targets
        ):
            return f"{node.target} is also read directly"
    return ""


def randomize_batchnorms(model: nn.Module, seed: int = 0, *, mild: bool = False) -> nn.Module:
    """`model` in eval mode, its BatchNorms given random running statistics and affine params,
    as training leaves them. An untrained network's BatchNorms are the identity, so a fold that
    is wrong shows only on statistics like these. By default some variances are tiny and some
    scales negative (hard cases for the arithmetic); `mild` keeps each BatchNorm's gain near 1,
    so that a network a hundred BatchNorms deep stays finite."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm) and has_running_stats(module):
                n = module.num_features
                if mild:
                    module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                    module.running_var.copy_(uniform(n, 0.5, 2.0))
                else:
                    module.running_mean.copy_(torch.randn(n, generator=generator) * 2)
                    module.running_var.copy_(torch.rand(n, generator=generator) * 3 + 1e-3)
                if module.affine and mild:
                    sign = torch.where(torch.rand(n, generator=generator) < 0.2, -1.0, 1.0)
                    module.weight.copy_(sign * uniform(n, 0.5, 1.5))
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.5)
                elif module.affine:
                    module.weight.copy_(torch.randn(n, generator=generator) * 1.5)
                    module.bias.copy_(torch.randn(n, generator=generator))
    return model.eval()


def has_running_stats(bn: _BatchNorm) -> bool:
    """Whether `bn` normalizes with running statistics in eval mode (else with the batch's)."""
    return bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None


def _foldable_producer(
    graph_module: fx.GraphModule, bn_node: fx.Node, bn: _BatchNorm
) -> tuple[fx.Node | None, str]:
    """The conv/linear node this BN can fold into, or None and the reason it cannot."""
    source = _single_input(bn_node)
    if source is None:
        return None, "input is not a single layer output"
    producer = _module(graph_module, source)
    if producer is None:
        return None, f"follows {_not_a_module(source)}, not a conv/linear"
    if reason := _pairs_with(producer, bn):
        return None, reason
    if isinstance(producer, nn.Linear) and not _is_two_dimensional(graph_module, source):
        # On (N, C, L) the Linear mixes the last dim and the BatchNorm scales dim 1.
        return None, f"follows {type(producer).__name__}, but its output is not known to be 2-D"
    if len(source.users) != 1:
        return None, "the conv output is also used elsewhere"
    if (calls := _calls(graph_module, source.target)) != 1:
        # Folding rewrites the shared weights, which would change the layer's other calls.
        return None, f"{source.target} is called {calls} times (shared weights)"
    if reason := _used_outside_the_graph(graph_module, (bn_node, source)):
        return None, reason
    if not has_running_stats(bn):
        return None, "no running statistics"
    return source, ""


def _foldable_consumer(
    graph_module: fx.GraphModule, bn_node: fx.Node, bn: _BatchNorm
) -> tuple[fx.Node | None, str]:
    """The conv (or Linear) node this BN can fold forward into (the BN's only user, past any
    dropout, a conv that does not pad with zeros), or None and the reason it cannot."""
    if _single_input(bn_node) is None:
        return None, "input is not a single layer output"
    reader = bn_node
    while True:
        if len(reader.users) != 1:
            return None, "its output is used by several layers"
        (user,) = reader.users
        consumer = _module(graph_module, user)
        if consumer is None:
            return None, f"then {_not_a_module(user)}, not a conv"
        if not (isinstance(consumer, _INFERENCE_IDENTITY) and _single_input(user) is reader):
            break
        reader = user
    kind = type(consumer).__name__
    if user.args[0] is not reader or len(user.args) != 1 or user.kwargs:
        return None, f"then {kind}, which reads more than the BatchNorm"
    if isinstance(consumer, nn.Linear):
        if not isinstance(bn, nn.BatchNorm1d) or consumer.in_features != bn.num_features:
            return None, f"then {kind}: features differ from {type(bn).__name__}"
        if not _is_two_dimensional(graph_module, _single_input(bn_node)):
            return None, f"then {kind}, but its input is not known to be 2-D"
    elif not isinstance(consumer, _ConvNd) or consumer.transposed:
        return None, f"then {kind}, not a conv"
    elif is_parametrized(consumer):
        return None, f"then {kind}, whose weight is parametrized (weight_norm, ...)"
    else:
        expected = _bn_for(consumer)
        if expected is None or not isinstance(bn, expected):
            return None, f"then {kind}: dimensions differ from {type(bn).__name__}"
        if _pads_with_zeros(consumer):
            return None, f"then {kind}, which pads with zeros (the fold would change the border)"
    if (calls := _calls(graph_module, user.target)) != 1:
        return None, f"then {user.target}, called {calls} times (shared weights)"
    if reason := _used_outside_the_graph(graph_module, (bn_node, user)):
        return None, reason
    if not has_running_stats(bn):
        return None, "no running statistics"
    return user, ""


def _is_two_dimensional(graph_module: fx.GraphModule, node: fx.Node | None) -> bool:
    """Whether `node`'s output is surely (N, C): a flatten from dim 1 or a view/reshape to two
    sizes, possibly followed by layers that keep the shape (Linear, BatchNorm1d, activations,
    dropout). Unsure is False: a wrong answer would fold over the wrong dim."""
    while node is not None:
        if node.op == "call_function" and node.target is torch.flatten:
            return _flattens_from_dim_one(node.args[1:], node.kwargs)
        if node.op == "call_method" and node.target == "flatten":
            return _flattens_from_dim_one(node.args[1:], node.kwargs)
        if node.op == "call_method" and node.target in ("view", "reshape"):
            sizes = node.args[1:]
            if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
                sizes = tuple(sizes[0])
            return len(sizes) == 2 and not node.kwargs
        if _is_elementwise_call(node):
            source = node.args[0] if node.args else None
            node = source if isinstance(source, fx.Node) else None
            continue
        module = _module(graph_module, node)
        if isinstance(module, nn.Flatten):
            return module.start_dim == 1 and module.end_dim == -1
        if not isinstance(module, _SHAPE_KEEPING):
            return False
        node = _single_input(node)
    return False


# Functions and tensor methods whose output has their first argument's shape (activations
# written as calls, `F.relu(x)`, `x.relu()`).
_ELEMENTWISE_FUNCTIONS = frozenset(
    {torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.relu6,
     nn.functional.gelu, nn.functional.silu, nn.functional.mish, nn.functional.leaky_relu,
     nn.functional.elu, nn.functional.selu, nn.functional.hardswish, nn.functional.dropout,
     nn.functional.sigmoid, nn.functional.tanh}
)  # fmt: skip
_ELEMENTWISE_METHODS = frozenset({"relu", "sigmoid", "tanh", "contiguous", "clone"})


def _is_elementwise_call(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _flattens_from_dim_one(args: tuple, kwargs: dict) -> bool:
    """Whether flatten's arguments (after the tensor) flatten every dim from 1 into one."""
    start = args[0] if args else kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def _pads_with_zeros(conv: _ConvNd) -> bool:
    """Whether the conv pads its input with zeros (padding given as numbers, or as
    'same'/'valid'). Reflect, replicate and circular padding copy the map's own values, so they
    commute with a per-channel affine map and the fold stays exact."""
    if conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str):
        return conv.padding != "valid"
    return any(conv.padding)


def _fuse_bn_conv(bn: _BatchNorm, conv: _ConvNd) -> _ConvNd:
    """A conv computing conv(bn(x)): the BN's per-channel scale and shift folded into the
    conv's input side (valid only for a conv without padding)."""
    fused = copy.deepcopy(conv)
    scale, shift = _scale_and_shift(bn)
    # Weight is (out, in / groups, *kernel); out channel o reads the inputs of its group.
    groups, out_channels = conv.groups, conv.out_channels
    per_group = conv.in_channels // groups
    expand = (groups, out_channels // groups, per_group)
    scale_w = scale.view(groups, 1, per_group).expand(expand).reshape(out_channels, per_group)
    shift_w = shift.view(groups, 1, per_group).expand(expand).reshape(out_channels, per_group)
    weight = conv.weight.detach()
    trailing = (1,) * (weight.dim() - 2)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(out_channels)
    shift_term = (weight * shift_w.view(*shift_w.shape, *trailing)).flatten(1).sum(1)
    fused.weight = nn.Parameter(weight * scale_w.view(*scale_w.shape, *trailing))
    fused.bias = nn.Parameter(bias.to(weight) + shift_term)
    return fused


def _fuse_bn_linear(bn: _BatchNorm, linear: nn.Linear) -> nn.Linear:
    """A Linear computing linear(bn(x)) for 2-D x: the BN's per-feature scale and shift folded
    into the Linear's input side."""
    fused = copy.deepcopy(linear)
    scale, shift = _scale_and_shift(bn)
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
    fused.weight = nn.Parameter(weight * scale)
    fused.bias = nn.Parameter(bias.to(weight) + weight @ shift.to(weight))
    return fused


def _scale_and_shift(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The BN at inference as x * scale + shift, per channel."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def _fuse_linear_bn(linear: nn.Linear, bn: _BatchNorm) -> nn.Linear:
    """torch's fuse_linear_bn_eval, also for a BatchNorm without affine parameters."""
    # torch.nn.utils.fusion.fuse_linear_bn_weights needs the BN weight and bias (affine=False
    # leaves them None and it raises TypeError), so stand in the identity affine map.
    fused = copy.deepcopy(linear)
    ones, zeros = torch.ones_like(bn.running_mean), torch.zeros_like(bn.running_mean)
    fused.weight, fused.bias = fuse_linear_bn_weights(
        fused.weight,
        fused.bias,
        bn.running_mean,
        bn.running_var,
        bn.eps,
        bn.weight if bn.weight is not None else ones,
        bn.bias if bn.bias is not None else zeros,
    )
    return fused


def _check_eval_mode(model: nn.Module) -> None:
    if model.training:
        raise FoldingError(
            "fold_batchnorm needs a model in eval mode (call model.eval() first): folding uses "
            "the running statistics, which train mode ignores"
        )
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.training:
            raise FoldingError(
                f"fold_batchnorm needs a model in eval mode, but layer {name} is in train mode "
                "(call model.eval() first): folding uses the running statistics"
            )


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """torchvision's `FrozenBatchNorm2d` (fixed statistics and affine map) as the eval-mode
    BatchNorm2d it equals: a leaf of the graph that folds like any BatchNorm. Traced as it is,
    its arithmetic would be spread over graph nodes and it would be neither folded nor listed.
    """

    @classmethod
    def of(cls, frozen: nn.Module) -> FrozenBatchNorm2d:
        weight = frozen.get_buffer("weight")
        norm = cls(weight.numel(), eps=float(frozen.eps)).to(weight).eval()
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).copy_(frozen.get_buffer(name))
        return norm


def _thaw_frozen_batchnorms(model: nn.Module) -> None:
    """Replace torchvision's FrozenBatchNorm2d layers of `model` by `FrozenBatchNorm2d.of`."""
    # A model holding one has imported torchvision.ops: nothing to import (or pay) otherwise.
    misc = sys.modules.get("torchvision.ops.misc")
    frozen_type = getattr(misc, "FrozenBatchNorm2d", None)
    if frozen_type is None:
        return
    # Every name of a layer registered under several, each with its own copy (as a BatchNorm
    # registered twice is listed twice).
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if isinstance(module, frozen_type):
            _replace_submodule(model, name, FrozenBatchNorm2d.of(module))


# torch's own forwards of the layers folding reads: a subclass that keeps them computes what
# the torch layer does (a weight-standardizing conv, which overrides `forward` or the
# `_conv_forward` that torch's forward calls, does not).
_PLAIN_FORWARDS = frozenset(
    {nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward, nn.Linear.forward,
     _BatchNorm.forward}
)  # fmt: skip


def _keeps_torch_forward(module: nn.Module) -> bool:
    """Whether `module`'s class computes its torch base class's forward (see above)."""
    kind = type(module)
    # The class that defines `_conv_forward` (convs only), looked up in the class dicts.
    owner = next((k for k in kind.__mro__ if "_conv_forward" in vars(k)), None)
    return kind.forward in _PLAIN_FORWARDS and (
        owner is None or owner.__module__ == nn.Conv2d.__module__
    )


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with `FrozenBatchNorm2d`, and subclasses of torch's convs, Linear and
    BatchNorms that keep their forward (a network's own `class Conv(nn.Conv2d)`), leaves like
    torch's own modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, FrozenBatchNorm2d)
            or _keeps_torch_forward(m)
            or super().is_leaf_module(m, module_qualified_name)
        )


def _trace(model: nn.Module) -> fx.GraphModule:
    copied = copy.deepcopy(model)
    _thaw_frozen_batchnorms(copied)
    try:
        tracer = _Tracer()
        graph = tracer.trace(copied, concrete_args=_defaults_of_forward(copied))
        _drop_specialized_arguments(graph)
        return fx.GraphModule(tracer.root, graph, type(copied).__name__)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError)
        raise FoldingError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "BatchNorm folding reads the network's graph, so forward must be symbolically "
            "traceable: no if or loop on tensor values or shapes (x.dim(), x.shape[0]), and "
            "no forward argument but the images without a default"
        ) from exc


def _drop_specialized_arguments(graph: fx.Graph) -> None:
    """Remove the arguments traced at their defaults, with the checks fx adds that each one
    keeps its value: the graph takes the images alone, and exports (ONNX, TorchScript) cannot
    trace such a check on a Python value."""
    for placeholder in [n for n in graph.nodes if n.op == "placeholder"][1:]:
        dependents, frontier = [], list(placeholder.users)
        while frontier:
            node = frontier.pop()
            if node not in dependents:
                dependents.append(node)
                frontier.extend(node.users)
        if any(node.op != "call_function" for node in dependents):
            continue  # used by the computation itself: keep it
        for node in reversed([n for n in graph.nodes if n in dependents]):
            graph.erase_node(node)
        graph.erase_node(placeholder)


def _defaults_of_forward(model: nn.Module) -> dict[str, object] | None:
    """forward's arguments after the images that have defaults (`return_features=False`),
    traced at those values: they are what a trial's forward passes use."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    defaults = {
        p.name: p.default
        for p in parameters[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        # Plain values only: fx turns a container into code that unpacks it at each call.
        and (p.default is None or isinstance(p.default, bool | int | float | str))
    }
    return defaults or None


def fold_batchnorm(model: nn.Module) -> tuple[fx.GraphModule, FoldReport]:
    """A copy of `model` (eval mode) with every foldable BatchNorm folded into its conv/linear.

    Raises FoldingError for a model (or any BatchNorm in it) in train mode: folding bakes in the
    running statistics, which only eval mode uses.
    """
    _check_eval_mode(model)
    graph_module = _trace(model)
    report = FoldReport()
    for node in list(graph_module.graph.nodes):
        if node.op == "call_function" and node.target in _FUNCTIONAL_NORMS:
            kind = _FUNCTIONAL_NORMS[node.target]
            report.kept.append({"layer": node.name, "type": kind, "reason": "functional call"})
            continue
        norm = _module(graph_module, node)
        if norm is not None and not isinstance(norm, NORM_TYPES):
            # A torch module traced whole (nn.TransformerEncoder): its norms are its own.
            report.kept += _norms_inside(str(node.target), norm)
            continue
        if not isinstance(norm, NORM_TYPES):
            continue
        kind = type(norm).__name__
        if not isinstance(norm, _BatchNorm):
            report.kept.append(
                {"layer": str(node.target), "type": kind, "reason": "per-sample statistics"}
            )
            continue
        layer = str(node.target)
        into_node, reason = _foldable_producer(graph_module, node, norm)
        direction: dict[str, str] = {}
        if into_node is not None:
            into = _fold_into_producer(graph_module, node, into_node, norm)
        else:
            into_node, forward_reason = _foldable_consumer(graph_module, node, norm)
            if into_node is None:
                reasons = f"{reason}; {forward_reason}"
                report.kept.append({"layer": layer, "type": kind, "reason": reasons})
                continue
            into = _fold_into_consumer(graph_module, node, into_node, norm)
            direction["direction"] = "forward"
        report.folded.append(
            {
                "layer": layer,
                "type": kind,
                "into": str(into_node.target),
                "into_type": type(into).__name__,
                **direction,
            }
        )
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module.eval(), report


def _norms_inside(name: str, module: nn.Module) -> list[dict[str, str]]:
    """The kept-norm entries of the norm layers inside a module the graph calls as a whole."""
    return [
        {
            "layer": f"{name}.{inner}",
            "type": type(norm).__name__,
            "reason": f"inside {type(module).__name__}, which runs as one layer",
        }
        for inner, norm in module.named_modules()
        if inner and isinstance(norm, NORM_TYPES)
    ]


def _fold_into_producer(
    graph_module: fx.GraphModule, bn_node: fx.Node, producer_node: fx.Node, bn: _BatchNorm
) -> nn.Module:
    """Fold the BN into the conv/linear before it and drop the BN node; returns that layer as it
    was before folding."""
    producer = graph_module.get_submodule(str(producer_node.target))
    fuse = _fuse_linear_bn if isinstance(producer, nn.Linear) else fuse_conv_bn_eval
    _replace_submodule(graph_module, str(producer_node.target), fuse(producer, bn))
    bn_node.replace_all_uses_with(producer_node)
    graph_module.graph.erase_node(bn_node)
    return producer


def _fold_into_consumer(
    graph_module: fx.GraphModule, bn_node: fx.Node, consumer_node: fx.Node, bn: _BatchNorm
) -> nn.Module:
    """Fold the BN forward into the conv (or Linear) it feeds and drop the BN node; returns that
    layer as it was before folding."""
    consumer = graph_module.get_submodule(str(consumer_node.target))
    fuse = _fuse_bn_linear if isinstance(consumer, nn.Linear) else _fuse_bn_conv
    _replace_submodule(graph_module, str(consumer_node.target), fuse(bn, consumer))
    bn_node.replace_all_uses_with(bn_node.args[0])  # type: ignore[arg-type]
    graph_module.graph.erase_node(bn_node)
    return consumer


def _replace_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, module)


def check_outputs(
    expected: torch.Tensor, actual: torch.Tensor, *, what: str, rtol: float = 1e-4
) -> float:
    """Max abs difference of two outputs; raises EquivalenceError beyond float tolerance.

    The tolerance scales with the output magnitude: folding (and every runtime's own graph
    rewrites) reorder float arithmetic, so the error grows with the size of the logits, not with
    the model's correctness.
    """
    scale = float(expected.abs().max())
    difference = float((expected - actual.to(expected.device)).abs().max())
    tolerance = rtol * max(1.0, scale)
    if not difference <= tolerance:
        raise EquivalenceError(
            f"{what} differs from the unfused network by {difference:.3g} "
            f"(tolerance {tolerance:.3g})"
        )
    return difference


def check_equivalence(
    reference: nn.Module, folded: nn.Module, inputs: torch.Tensor, *, rtol: float = 1e-4
) -> float:
    """Max abs output difference of the folded net; raises EquivalenceError beyond tolerance."""
    with torch.inference_mode(), full_float32_precision():
        # A copy for each: a forward that changes its input in place (x.sub_(mean)) would
        # otherwise hand the second network other images.
        expected = reference.eval()(inputs.clone())
        actual = folded.eval()(inputs.clone())
    return check_outputs(
        expected, actual, what="folded network (BatchNorm folding is wrong)", rtol=rtol
    )


@contextmanager
def full_float32_precision() -> Iterator[None]:
    """Turn off TF32 on CUDA while comparing outputs, then restore the previous setting.

    cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa): on a GPU the folded
    and the unfused network then differed by ~1e-3 of the logits, a rounding artefact that
    would fail every check. The comparison must see the arithmetic, not the TF32 rounding.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

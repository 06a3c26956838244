"""Inference-time BatchNorm folding on the traced graph, and the check that it changed nothing.

A BatchNorm in eval mode is an affine map per channel, so when it directly follows a conv (or a
BatchNorm1d follows a Linear) it can be folded into that layer's weights and bias. Group, layer and
instance norms use per-sample statistics and cannot be folded; they are kept and reported.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm2d,
)


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


def _foldable_producer(
    graph_module: fx.GraphModule, bn_node: fx.Node, bn: nn.Module
) -> tuple[fx.Node | None, str]:
    """The conv/linear node this BN can fold into, or None and the reason it cannot."""
    source = bn_node.args[0] if bn_node.args else None
    if not isinstance(source, fx.Node):
        return None, "input is not a layer output"
    producer = _module(graph_module, source)
    pairs_ok = (isinstance(bn, nn.BatchNorm2d) and isinstance(producer, nn.Conv2d)) or (
        isinstance(bn, nn.BatchNorm1d) and isinstance(producer, nn.Linear)
    )
    if not pairs_ok:
        what = type(producer).__name__ if producer is not None else source.op
        return None, f"follows {what}, not a conv/linear"
    if len(source.users) != 1:
        return None, "the conv output is also used elsewhere"
    if not bn.track_running_stats or bn.running_mean is None:
        return None, "no running statistics"
    return source, ""


def fold_batchnorm(model: nn.Module) -> tuple[fx.GraphModule, FoldReport]:
    """A copy of `model` (eval mode) with every foldable BatchNorm folded into its conv/linear.

    Raises FoldingError for a model in train mode: folding bakes in the running statistics,
    which only eval mode uses.
    """
    if model.training:
        raise FoldingError(
            "fold_batchnorm needs a model in eval mode (call model.eval() first): folding uses "
            "the running statistics, which train mode ignores"
        )
    graph_module = fx.symbolic_trace(copy.deepcopy(model))
    report = FoldReport()
    for node in list(graph_module.graph.nodes):
        norm = _module(graph_module, node)
        if not isinstance(norm, NORM_TYPES):
            continue
        kind = type(norm).__name__
        if not isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d):
            report.kept.append(
                {"layer": str(node.target), "type": kind, "reason": "per-sample statistics"}
            )
            continue
        producer_node, reason = _foldable_producer(graph_module, node, norm)
        if producer_node is None:
            report.kept.append({"layer": str(node.target), "type": kind, "reason": reason})
            continue
        producer = graph_module.get_submodule(str(producer_node.target))
        fuse = fuse_conv_bn_eval if isinstance(producer, nn.Conv2d) else fuse_linear_bn_eval
        fused = fuse(producer, norm)
        _replace_submodule(graph_module, str(producer_node.target), fused)
        node.replace_all_uses_with(producer_node)
        graph_module.graph.erase_node(node)
        report.folded.append(
            {"layer": str(node.target), "type": kind, "into": str(producer_node.target)}
        )
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module.eval(), report


def _replace_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, module)


def count_norm_layers(model: nn.Module) -> dict[str, int]:
    """How many norm layers of each type the model holds."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, NORM_TYPES):
            counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


@torch.inference_mode()
def max_abs_difference(reference: nn.Module, folded: nn.Module, inputs: torch.Tensor) -> float:
    """Largest absolute difference between the two models' outputs on `inputs`."""
    reference.eval()
    folded.eval()
    return float((reference(inputs) - folded(inputs)).abs().max())


def check_equivalence(
    reference: nn.Module, folded: nn.Module, inputs: torch.Tensor, *, rtol: float = 1e-4
) -> float:
    """Max abs output difference; raises EquivalenceError beyond float tolerance.

    The tolerance scales with the output magnitude: folding reorders float arithmetic, so the
    error grows with the size of the logits, not with the model's correctness.
    """
    with torch.inference_mode():
        reference.eval()
        scale = float(reference(inputs).abs().max())
    difference = max_abs_difference(reference, folded, inputs)
    tolerance = rtol * max(1.0, scale)
    if not difference <= tolerance:
        raise EquivalenceError(
            f"folded network differs from the unfused one by {difference:.3g} "
            f"(tolerance {tolerance:.3g}): BatchNorm folding is wrong"
        )
    return difference

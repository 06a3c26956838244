"""A spec's model factory, imported and tried once before any study exists or trial runs.

Everything a factory can get wrong is a one-line SpecError here, not a failed trial: an import
that fails, a missing callable, a `norm` search for a factory without `norm_layer`, a param it
does not take, a call that raises, a wrong output shape, and a network torch.fx cannot trace
(folding traces it; such a model is refused rather than timed unfolded, so that every trial's
latency is the folded network's, as for the built-in families).
"""

from __future__ import annotations

from typing import Any

import torch

from hpo.core.errors import SpecError
from hpo.core.spec import Choice, Domain, Fixed, Range, Spec
from hpo.measure.fusion import FoldingError, fold_batchnorm
from models import user
from models.registry import build_model

# A small batch of CIFAR-shaped images: what every trial feeds the network.
_PROBE_SHAPE = (2, 3, 32, 32)


def prepare_model(spec: Spec, sources: user.ModelSources, num_classes: int) -> None:
    """Import the spec's model factory (if it names one) and check it builds a network that
    maps CIFAR images to `num_classes` logits and can be folded; SpecError otherwise."""
    ref = spec.model_ref
    if ref is None:
        return
    loaded = user.load(ref, sources)
    if not loaded.takes_norm_layer and "norm" in spec.search:
        raise SpecError(
            f"model {ref}: the factory takes no norm_layer, so it keeps its own norm layers; "
            "remove [search] norm, or add a norm_layer parameter to search it"
        )
    untaken = [name for name in spec.model_params if not loaded.takes(name)]
    if untaken:
        raise SpecError(
            f"model {ref}: the factory takes no parameter {untaken[0]!r} "
            f"([search.model_params]); it takes {', '.join(loaded.params or ())}"
        )
    _try_once(spec, ref, loaded.takes_norm_layer, num_classes)


def _try_once(spec: Spec, ref: str, takes_norm: bool, num_classes: int) -> None:
    params = {name: _first(domain) for name, domain in spec.model_params.items()}
    norm = _first(spec.domain("norm")) if takes_norm else None
    try:
        network = build_model(ref, norm=norm, num_classes=num_classes, **params)
    except Exception as exc:
        raise SpecError(
            f"model {ref}: calling the factory with {params} raised {user.one_line(exc)}"
        ) from None
    network.eval()
    try:
        with torch.no_grad():
            output = network(torch.zeros(_PROBE_SHAPE))
    except Exception as exc:
        raise SpecError(
            f"model {ref}: its forward pass on {_PROBE_SHAPE} images raised {user.one_line(exc)}"
        ) from None
    expected = (_PROBE_SHAPE[0], num_classes)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if shape != expected:
        raise SpecError(
            f"model {ref}: returned {shape} for {_PROBE_SHAPE} images; expected logits of shape "
            f"{expected} (one row per image, one column per class)"
        )
    try:
        fold_batchnorm(network)
    except FoldingError as exc:
        raise SpecError(
            f"model {ref}: BatchNorm folding needs a traceable network: {exc}"
        ) from None


def _first(domain: Domain) -> Any:
    """The value a domain's first trial could take: the fixed one, the first choice, low."""
    if isinstance(domain, Fixed):
        return domain.value
    if isinstance(domain, Choice):
        return domain.values[0]
    assert isinstance(domain, Range)
    return domain.low

"""A spec's model factory, imported and tried once before any study exists or trial runs.

Everything a factory can get wrong is a one-line SpecError here, not a failed trial: an import
that fails (or exits), a missing callable, a `norm` search for a factory without `norm_layer`, a
param it does not take, a call that raises (with any norm choice or model-param value), a wrong
output shape or type (for a batch, and for the single image latency is timed on), a forward that
is random in eval mode or mixes the images of a batch, a `norm_layer` taken but never called, a
model param whose values all build the same network (a misspelled name a `**kwargs` factory
swallows), no trainable parameter, and a network torch.fx cannot trace (folding traces it; such
a model is refused rather than timed unfolded, so that every trial's latency is the folded
network's, as for the built-in families).
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from hpo.core.errors import SpecError
from hpo.core.spec import Choice, Domain, Fixed, Range, Spec
from hpo.device import resolve_device
from hpo.measure.fusion import (
    EquivalenceError,
    FoldingError,
    check_equivalence,
    fold_batchnorm,
    has_running_stats,
    randomize_batchnorms,
)
from hpo.measure.runtimes import resolve_backend
from hpo.measure.serialize import OnnxExportError, onnx_bytes
from models import user

# A small batch of CIFAR-shaped images, as trials train and validate on; and one image, as
# latency is measured.
_PROBE_SHAPE = (2, 3, 32, 32)
_ONE_IMAGE = (1, 3, 32, 32)


def prepare_model(
    spec: Spec, sources: user.ModelSources, num_classes: int
) -> user.UserModel | None:
    """Import the spec's model factory (if it names one) and check it builds a network that
    maps CIFAR images to `num_classes` logits and can be folded; SpecError otherwise. The
    factory, or None for a built-in family."""
    ref = spec.model_ref
    if ref is None:
        return None
    loaded = user.load(ref, sources, norm_searched="norm" in spec.search)
    takes_norm = loaded.gets_norm_layer("norm" in spec.search)
    if not takes_norm and "norm" in spec.search:
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
    _try_once(spec, ref, takes_norm, num_classes, open_ended=loaded.params is None)
    return loaded


@dataclass(frozen=True)
class _Tried:
    """What building and checking one configuration showed."""

    norm_layer_calls: int  # how many times the factory called its `norm_layer`
    fingerprint: str  # what the network is and computes (`_Fingerprint`)


def _try_once(
    spec: Spec, ref: str, takes_norm: bool, num_classes: int, *, open_ended: bool
) -> None:
    """Try the factory with every value of each param (`_configurations`). For a factory that
    takes `**kwargs` (`open_ended`), which accepts a misspelled name and ignores it, a model
    param whose every value builds the same network is refused too; a factory naming its
    params cannot be given a name it does not take."""
    device = resolve_device(spec.train.device)
    timed_in_onnx = resolve_backend(spec.latency.backend, device) == "onnxruntime"
    norm_layer_calls = 0
    first: str | None = None  # the fingerprint with every model param at its first value
    others: dict[str, set[str]] = {}  # each model param's fingerprints at its other values
    for norm, params, varied in _configurations(spec, takes_norm):
        tried = _try(ref, norm, params, num_classes, timed_in_onnx, fingerprint=open_ended)
        norm_layer_calls += tried.norm_layer_calls
        if not open_ended:
            continue
        if varied is not None:
            others.setdefault(varied, set()).add(tried.fingerprint)
        elif first is None:
            first = tried.fingerprint
    for name, fingerprints in others.items():
        if fingerprints == {first}:
            # Searching it would spend trials on one network under several names.
            tried_values = ", ".join(map(repr, _values(spec.model_params[name])))
            raise SpecError(
                f"model {ref}: [search.model_params] {name}: every value tried "
                f"({tried_values}) builds the same network (same layers, weights, outputs and "
                "gradients), so searching it changes nothing; check its name (the factory "
                "takes **kwargs, so it accepts any name), or remove it"
            )
    if takes_norm and "norm" in spec.search and not norm_layer_calls:
        # Each trial would record a norm its network does not have.
        raise SpecError(
            f"model {ref}: the factory takes norm_layer but never calls it (with any norm or "
            "model param tried), so a trial's norm would not be its network's; build the norm "
            "layers with norm_layer(channels), or remove [search] norm"
        )


def _configurations(
    spec: Spec, takes_norm: bool
) -> Iterator[tuple[str | None, dict[str, Any], str | None]]:
    """Every norm choice with the first model params, then each other model-param value (a
    range's low and highest value) with the others at their first: every value the sampler may
    pick is built once, without trying every combination. Each with the name of the model
    param it varies (None for the first params)."""
    first = {name: _values(domain)[0] for name, domain in spec.model_params.items()}
    norms = _values(spec.domain("norm")) if takes_norm else [None]
    for norm in norms:
        yield norm, first, None
    for name, domain in spec.model_params.items():
        for value in _values(domain)[1:]:
            yield norms[0], {**first, name: value}, name


def _try(
    ref: str,
    norm: str | None,
    params: dict[str, Any],
    num_classes: int,
    timed_in_onnx: bool,
    *,
    fingerprint: bool,
) -> _Tried:
    """Build the network with these params and check it as trials will use it; with
    `fingerprint`, take what it is and computes (`_Fingerprint`)."""
    given = (f"{params}" if params else "its default params") + (f", norm {norm}" if norm else "")
    norm_layer = None if norm is None else user.CountedNormLayer(norm)
    prints = _Fingerprint(fingerprint)
    # Seeded, so that two values of a param that changes nothing build equal weights.
    with user.running_user_code(f"model {ref}: calling the factory with {given}"), _seeded():
        network = user.build(
            ref, norm=norm, num_classes=num_classes, norm_layer=norm_layer, **params
        )
    built = f"model {ref}: the network built with {given}"
    if unbatched := _without_running_statistics(network):
        raise SpecError(
            f"{built}: BatchNorm {unbatched} keeps no running statistics "
            "(track_running_stats=False), so at inference it normalizes each image by the "
            "other images of its batch; keep them (the default), or use a per-sample norm "
            "(GroupNorm, InstanceNorm, LayerNorm)"
        )
    # Trials validate batches and time one image at a time: both must give one row per image.
    for shape in (_PROBE_SHAPE, _ONE_IMAGE):
        with (
            user.running_user_code(f"{built}: its forward pass on {shape} images"),
            torch.no_grad(),
        ):
            network.eval()
            output = network(torch.zeros(shape))
        _check_logits(f"model {ref}", output, num_classes, shape)
    _check_deterministic(built, network)
    _check_per_image(built, network)
    with user.running_user_code(f"{built}: its forward pass on its fingerprint's images"):
        prints.network(network)
    if not any(p.requires_grad for p in network.parameters()):
        raise SpecError(
            f"{built} has no trainable parameters; there is nothing for a trial to train"
        )
    with user.running_user_code(f"model {ref}: BatchNorm folding"):
        try:
            folded, _ = fold_batchnorm(network)
        except FoldingError as exc:
            raise SpecError(f"{built}: {exc}") from None
        _check_the_fold(built, network)
    if timed_in_onnx:
        _check_onnx_export(built, folded)
    # Trials train the network: a training-mode forward (which may differ, e.g. auxiliary
    # heads) and a backward pass, on a copy whose statistics and gradients nobody keeps.
    training = f"{built}, in training mode"
    # dropout and the like draw alike for every configuration
    with (
        user.running_user_code(f"{training}: its forward pass on {_PROBE_SHAPE} images"),
        _seeded(),
    ):
        network.train()
        output = network(_random_images())
    _check_logits(training, output, num_classes, _PROBE_SHAPE)
    with user.running_user_code(f"{training}: its backward pass"):
        output.float().logsumexp(1).sum().backward()
    # A param may act in training only: a dropout rate kept as a number, a frozen layer.
    prints.training(output, network)
    return _Tried(0 if norm_layer is None else norm_layer.calls, prints.hexdigest())


class _Fingerprint:
    """A digest of what a network is and computes: its layers, weights and buffers, which
    parameters train, its eval-mode outputs on the seeded images and on the same images 100
    times larger (where activations such as ReLU6 saturate), and its training-mode outputs and
    gradients. Two values of a param with one digest build the same network. Off (`on` false),
    it takes nothing."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.digest = hashlib.sha256()

    def network(self, network: torch.nn.Module) -> None:
        if not self.on:
            return
        self.digest.update(repr(network).encode())
        trained = [name for name, p in network.named_parameters() if p.requires_grad]
        self.digest.update(" ".join(trained).encode())
        self._tensors(network.state_dict())
        images = _random_images()
        with torch.no_grad():
            network.eval()
            outputs = {"eval": network(images), "eval, large": network(images * 100)}
        self._tensors({k: v for k, v in outputs.items() if isinstance(v, torch.Tensor)})

    def training(self, output: torch.Tensor, network: torch.nn.Module) -> None:
        if not self.on:
            return
        gradients = {n: p.grad for n, p in network.named_parameters() if p.grad is not None}
        self._tensors({"train": output, **gradients})

    def hexdigest(self) -> str:
        return self.digest.hexdigest()

    def _tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            self.digest.update(f"{name} {tensor.dtype}".encode())
            data = tensor.detach().cpu().contiguous().flatten()
            self.digest.update(data.view(torch.uint8).numpy())


@contextmanager
def _seeded() -> Iterator[None]:
    """torch's, numpy's and Python's global generators seeded alike, and restored after."""
    python, legacy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(legacy)


def _random_images() -> torch.Tensor:
    """A seeded batch of random CIFAR-shaped images: zeros would hide dropout left on and a
    wrong fold alike."""
    return torch.randn(_PROBE_SHAPE, generator=torch.Generator().manual_seed(0))


def _check_deterministic(built: str, network: torch.nn.Module) -> None:
    """Refuse a network whose eval-mode forward gives other outputs for the same images each
    time (dropout left on at inference): its accuracy and the fold check would be a draw."""
    images = _random_images()
    forward = f"{built}: its forward pass on {_PROBE_SHAPE} images"
    with user.running_user_code(forward), torch.no_grad():
        first, second = network(images.clone()), network(images.clone())
    # NaN or inf where both runs have it is no difference (an untrained network may overflow);
    # the finite outputs are compared on their own scale.
    finite = torch.isfinite(first)
    if not torch.equal(finite, torch.isfinite(second)):
        difference, scale = math.inf, 0.0  # finite in one run only
    elif finite.any():
        difference = float((first[finite] - second[finite]).abs().max())
        scale = float(first[finite].abs().max())
    else:
        difference, scale = 0.0, 0.0
    if not difference <= 1e-5 * max(1.0, scale):
        raise SpecError(
            f"{built}: in eval mode it gives other outputs each time for the same images "
            f"(they differ by {difference:.3g}): something random runs at inference, such as "
            "F.dropout(x, p) without training=self.training; trials validate and time the "
            "network in eval mode"
        )


def _check_per_image(built: str, network: torch.nn.Module) -> None:
    """Refuse a network whose eval-mode output for an image depends on the other images of its
    batch (a mean over the batch, a BatchNorm called with training=True): trials validate it in
    batches and time it one image at a time, and its folded copy is checked the same way."""
    images = _random_images()
    forward = f"{built}: its forward pass on one image at a time"
    with user.running_user_code(forward), torch.no_grad():
        batched = network(images.clone())
        alone = torch.cat([network(images[i : i + 1].clone()) for i in range(len(images))])
    finite = torch.isfinite(batched) & torch.isfinite(alone)
    if not finite.any():
        return  # nothing finite to compare (an untrained network may overflow)
    difference = float((batched[finite] - alone[finite]).abs().max())
    # Relative to the outputs' own scale: an untrained network's logits can be 1e-13, and a
    # batch of two and one image differ by about 1e-6 of the scale in float32.
    scale = float(batched[finite].abs().max())
    if difference > 1e-4 * scale:
        raise SpecError(
            f"{built}: in eval mode its output for an image depends on the other images of the "
            f"batch (alone it differs by {difference:.3g}), as with a mean over the batch or a "
            "norm that uses batch statistics at inference; trials validate in batches and time "
            "one image at a time, so each image's logits must depend on that image only"
        )


def _check_the_fold(built: str, network: torch.nn.Module) -> None:
    """Refuse a network whose folded copy computes something else once its BatchNorms hold
    trained-looking statistics (untrained, they are the identity and any fold looks right):
    a way of using a layer that folding cannot see would otherwise fail each trial after its
    training."""
    trained_like = randomize_batchnorms(copy.deepcopy(network), mild=True)
    folded, _ = fold_batchnorm(trained_like)
    images = _random_images()
    with torch.no_grad():
        if not torch.isfinite(trained_like(images)).all():
            return  # statistics this random overflow a deep network: nothing to judge by
    try:
        check_equivalence(trained_like, folded, images)
    except EquivalenceError as exc:
        raise SpecError(
            f"{built}: folding its BatchNorms changes its outputs ({exc}); a BatchNorm or the "
            "layer it folds into is used in a way the traced graph does not show (please "
            "report it); meanwhile, search another norm"
        ) from None


def _check_onnx_export(built: str, folded: torch.nn.Module) -> None:
    """Refuse a network (its `folded` copy, as trials time it) ONNX cannot export when trials
    time it in ONNX Runtime: each trial would otherwise fail at its latency probe."""
    try:
        onnx_bytes(folded)
    except OnnxExportError as exc:
        raise SpecError(
            f'{built}: {exc}; time it with [latency] backend = "eager" or "torchscript"'
        ) from None


def _check_logits(what: str, output: object, num_classes: int, images: tuple[int, ...]) -> None:
    """Refuse an output that is not one row of floating-point logits per image."""
    expected = (images[0], num_classes)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if shape != expected:
        several = isinstance(output, (tuple, list, dict))
        squeezed = shape == (num_classes,)
        raise SpecError(
            f"{what}: returned {shape} for {images} images; expected logits of shape "
            f"{expected} (one row per image, one column per class)"
            + ("; return the logits alone, trials train on them only" if several else "")
            + ("; a squeeze() drops the dimension of a single image: flatten(1) keeps it"
               if squeezed else "")
        )  # fmt: skip
    assert isinstance(output, torch.Tensor)
    if not output.is_floating_point():
        raise SpecError(
            f"{what}: returned {output.dtype} logits; the loss needs floating-point ones"
        )


def _without_running_statistics(network: torch.nn.Module) -> str:
    """The name of a BatchNorm of `network` that keeps no running statistics, or ''."""
    for name, module in network.named_modules():
        if isinstance(module, _BatchNorm) and not has_running_stats(module):
            return name
    return ""


def _values(domain: Domain) -> list[Any]:
    """The values a domain's trials can take, as far as trying them goes: the fixed one, every
    choice, or a range's low and its highest value."""
    if isinstance(domain, Fixed):
        return [domain.value]
    if isinstance(domain, Choice):
        return list(domain.values)
    assert isinstance(domain, Range)
    if domain.step is None:
        return [domain.low, domain.high]
    # The highest value on the step's grid: what the sampler can draw, not always `high`.
    steps = (domain.high - domain.low) // domain.step
    top = domain.low + steps * domain.step
    return [domain.low, top]

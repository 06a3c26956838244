"""A user's own network factory, imported from where this process was told it may import.

A spec's `model = "nets/tiny.py:build"` (or `mypkg.nets:build`, `torchvision:resnet18`) names a
callable `build(num_classes=..., norm_layer=..., **params) -> nn.Module`. Importing it runs the
user's code, so `ModelSources` says what this process may import: the files and modules named by
a spec it was given on its command line, or the folders and modules given to it with `--models`
(`HPO_MODELS`). A name read from the database alone is never imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import io
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from hpo.core.errors import SpecError
from hpo.core.model_ref import ModelRef, parse_model_ref
from models.layers import IMAGE_SIZE
from models.norm import make_norm

# torchvision classification models whose builders pass `norm_layer` on to every norm layer.
TORCHVISION_PREFIXES: tuple[str, ...] = (
    # EfficientNet b5-b7 and v2 set a norm_layer of their own: one given as well is an error.
    *(f"efficientnet_b{size}" for size in range(5)),
    "mobilenet_v2",
    "mobilenet_v3",
    "regnet",
    "resnet",
    "resnext",
    "wide_resnet",
)


@dataclass(frozen=True)
class ModelSources:
    """What this process may import model factories from.

    `spec_dir`: the folder of a spec given on the command line; its files and modules are
    trusted as that spec names them. `folders` and `modules`: what `--models` gave a worker.
    """

    folders: tuple[Path, ...] = ()
    modules: tuple[str, ...] = ()
    spec_dir: Path | None = None

    @classmethod
    def parse(cls, entries: Iterable[str], spec_dir: Path | None = None) -> ModelSources:
        """`--models` entries: an existing folder, a dotted module name, or both (`mypkg`,
        run where the package's folder is: the folder's files and the package's modules)."""
        folders: list[Path] = []
        modules: list[str] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            is_folder = Path(entry).is_dir()
            is_module = entry.replace(".", "_").isidentifier()
            if is_folder:
                folders.append(Path(entry).resolve())
            if is_module:
                modules.append(entry)
            if not (is_folder or is_module):
                raise SpecError(
                    f"--models {entry!r}: neither a folder nor a module name; give a folder "
                    "holding model files, or an importable module (mypkg.nets)"
                )
        return cls(tuple(folders), tuple(modules), spec_dir)

    def describe(self) -> str:
        given = [str(f) for f in self.folders] + list(self.modules)
        return ", ".join(given) if given else "nothing"


@dataclass(frozen=True)
class UserModel:
    """A loaded factory: what it takes, and where its code came from (for the model card)."""

    ref: str
    factory: Callable[..., object]
    takes_norm_layer: bool
    params: tuple[str, ...] | None  # the keyword params it names; None when it takes **kwargs
    origin: str  # the file, the module's file, or the torchvision version
    sha256: str | None  # of the file, or its package's .py files (None for torchvision)
    # The study searches `norm`: a network built without calling `norm_layer` is not the
    # trial's norm, so it is no network for these params (`build`).
    norm_searched: bool = False

    def takes(self, name: str) -> bool:
        return self.params is None or name in self.params

    def gets_norm_layer(self, norm_given: bool) -> bool:
        """Whether hpo passes it a `norm_layer`: it names one, or it takes `**kwargs` and the
        spec gives a `norm` (without one, such a factory keeps its own norm layers)."""
        return self.takes_norm_layer or (self.params is None and norm_given)

    def card(self) -> dict[str, object]:
        """How a model card records the factory: enough to find the same code again."""
        return {"reference": self.ref, "origin": self.origin, "sha256": self.sha256}


_LOADED: dict[str, UserModel] = {}


def load(text: str, sources: ModelSources, *, norm_searched: bool = False) -> UserModel:
    """Import the factory `text` names, if `sources` allow it; SpecError (one line) if not.
    `norm_searched`: the study searches `norm` (see `UserModel.norm_searched`)."""
    ref = parse_model_ref(text)
    if ref.kind == "torchvision":
        loaded = _torchvision(ref)
    elif ref.kind == "file":
        loaded = _from_file(ref, _model_file(ref, sources))
    else:
        loaded = _from_module(ref, sources)
    loaded = dataclasses.replace(loaded, norm_searched=norm_searched)
    _LOADED[text] = loaded
    return loaded


def loaded(text: str) -> UserModel:
    """The factory `load` imported for `text` in this process."""
    try:
        return _LOADED[text]
    except KeyError:
        raise SpecError(f"model {text!r} was not loaded in this process") from None


class CountedNormLayer:
    """`make_norm` for one norm type, as a factory's `norm_layer`, counting its calls: a
    factory that takes `norm_layer` and never calls it ignores the norm a trial records."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        self.calls += 1
        return make_norm(self.kind, *args, **kwargs)


def build(
    text: str,
    *,
    norm: str | None,
    num_classes: int,
    norm_layer: Callable[..., nn.Module] | None = None,
    **params: object,
) -> nn.Module:
    """Call the loaded factory: `norm_layer` (if it takes one) is `make_norm` for the norm type,
    or the one given."""
    user = loaded(text)
    kwargs: dict[str, object] = {"num_classes": num_classes, **params}
    counted = None
    if user.gets_norm_layer(norm is not None):
        if norm_layer is None:
            norm_layer = counted = CountedNormLayer(norm or "batch")
        kwargs["norm_layer"] = norm_layer
    with default_dtype_kept():
        try:
            network = user.factory(**kwargs)
        except Exception as exc:
            raise FactoryRaised(f"the factory raised {one_line(exc)}") from exc
    if counted is not None and user.norm_searched and norm != "none" and not counted.calls:
        raise UnusableNetwork(
            f"it did not call norm_layer with these params, so the trial's norm ({norm}) is not "
            'in its network; norm = "none" is the choice without a norm layer'
        )
    if not isinstance(network, nn.Module):
        raise UnusableNetwork(f"it returned {type(network).__name__}, not a torch nn.Module")
    if wrapper := _wrapper_name(network):
        raise UnusableNetwork(
            f"it returned the network wrapped by {wrapper}; return the network itself: hpo "
            "traces its forward to fold BatchNorms, and trains and times it on one device"
        )
    with default_dtype_kept():
        _materialize_lazy(network)
    other = {str(t.dtype) for t in network.parameters() if t.dtype != torch.float32}
    if other:
        raise UnusableNetwork(
            f"its parameters are {', '.join(sorted(other))}, not float32; trials train and "
            "time float32 networks (the latency runtimes have no float64 convolutions): build "
            "it without .double()/.half()"
        )
    return network


def _wrapper_name(network: nn.Module) -> str:
    """'torch.compile' or 'DataParallel' when `network` is such a wrapper of a network, or ''.
    torch.compile's module class is known by name: its module path is private to torch."""
    if isinstance(network, nn.DataParallel | nn.parallel.DistributedDataParallel):
        return type(network).__name__
    return "torch.compile" if type(network).__name__ == "OptimizedModule" else ""


@contextmanager
def default_dtype_kept() -> Iterator[None]:
    """torch's default dtype as it was before a user's code ran: a file that sets float64 at
    import would otherwise make every later tensor of hpo's float64 too."""
    saved = torch.get_default_dtype()
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


class UnusableNetwork(Exception):
    """The factory ran, but what it returned cannot be trained: the message says why."""


class FactoryRaised(UnusableNetwork):
    """The factory raised (its exception is the cause): with these params it builds nothing."""


# What the shaping pass of lazy modules feeds: two CIFAR images, as the pre-study check does
# (a norm with batch statistics needs more than one).
_SHAPING_BATCH = (2, 3, IMAGE_SIZE, IMAGE_SIZE)


def _materialize_lazy(network: nn.Module) -> None:
    """Give lazy modules (`nn.LazyConv2d`, ...) their shapes with one forward pass of CIFAR-shaped
    images: the optimizer, folding and export all need every parameter to exist."""
    tensors = [*network.parameters(), *network.buffers()]
    if not any(is_lazy(t) for t in tensors):
        return
    # Eval mode, so BatchNorm running statistics stay as they are; each module's mode is restored.
    modes = {module: module.training for module in network.modules()}
    try:
        network.eval()
        with torch.no_grad():
            network(torch.zeros(_SHAPING_BATCH))
    except Exception as exc:  # the user's forward: anything it raises names the network's fault
        raise UnusableNetwork(
            f"the pass of {_SHAPING_BATCH} images that shapes its lazy modules raised "
            f"{one_line(exc)}"
        ) from exc
    finally:
        for module, training in modes.items():
            module.train(training)


def _model_file(ref: ModelRef, sources: ModelSources) -> Path:
    """The file a reference names, found under the spec's folder or a `--models` folder."""
    if sources.spec_dir is not None:
        path = (sources.spec_dir / ref.source).resolve()
        if not path.is_file():
            raise SpecError(f"model {ref}: file not found: {path}")
        return path
    if not sources.folders:
        raise SpecError(
            f"model {ref}: this process imports only model files it was given; start it with "
            f"--models DIR (or HPO_MODELS=DIR) naming the folder that holds {ref.source}"
        )
    for folder in sources.folders:
        path = (folder / ref.source).resolve()
        # A reference cannot climb out of the folder it was given (../, absolute paths, links).
        if path.is_relative_to(folder) and path.is_file():
            return path
    raise SpecError(
        f"model {ref}: no file {ref.source} in the --models folders {sources.describe()}"
    )


def _from_file(ref: ModelRef, path: Path) -> UserModel:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"hpo_user_model_{digest[:16]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpecError(f"model {ref}: cannot import {path} as Python")
        module = importlib.util.module_from_spec(spec)
        with running_user_code(f"model {ref}: importing {path}"):
            spec.loader.exec_module(module)
        sys.modules[name] = module  # classes defined there can be found again (deepcopy, fx)
    return _user_model(ref, getattr(module, ref.name, None), str(path), digest)


def _allowed_module(module: str, sources: ModelSources) -> bool:
    return sources.spec_dir is not None or any(
        module == given or module.startswith(f"{given}.") for given in sources.modules
    )


def _from_module(ref: ModelRef, sources: ModelSources) -> UserModel:
    if not _allowed_module(ref.source, sources):
        raise SpecError(
            f"model {ref}: this process imports only modules it was given; start it with "
            f"--models {ref.source} (or HPO_MODELS={ref.source})"
        )
    try:
        with running_user_code(f"model {ref}: importing {ref.source}"):
            module = importlib.import_module(ref.source)
    except SpecError as exc:
        missing = exc.__cause__
        if (
            isinstance(missing, ModuleNotFoundError)
            and missing.name
            and (ref.source == missing.name or ref.source.startswith(f"{missing.name}."))
        ):
            raise SpecError(
                f"model {ref}: module {ref.source} not found; install its package, or put the "
                "folder that holds it on PYTHONPATH"
            ) from None
        raise
    path = Path(getattr(module, "__file__", None) or ref.source)
    return _user_model(ref, getattr(module, ref.name, None), str(path), _code_digest(ref, path))


def _code_digest(ref: ModelRef, path: Path) -> str | None:
    """The SHA-256 of the code a module's factory may run: every .py file of its top-level
    package (a helper module it imports changes the network as much as the module itself),
    or the module's own file when it is no package's."""
    top = sys.modules.get(ref.source.split(".")[0])
    folders = list(getattr(top, "__path__", None) or [])
    if not folders:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    digest = hashlib.sha256()
    for folder in sorted(folders):
        for source in sorted(Path(folder).rglob("*.py")):
            digest.update(str(source.relative_to(folder)).encode("utf-8") + b"\0")
            digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()


def _user_model(ref: ModelRef, factory: object, origin: str, digest: str | None) -> UserModel:
    if not callable(factory):
        raise SpecError(f"model {ref}: {ref.source} has no callable {ref.name}")
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        raise SpecError(f"model {ref}: cannot read the signature of {ref.name}") from None
    names = tuple(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD)
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    if "num_classes" not in names and not open_ended:
        raise SpecError(
            f"model {ref}: {ref.name} must take num_classes (and optionally norm_layer and "
            "its own params)"
        )
    return UserModel(
        str(ref),
        factory,
        "norm_layer" in names,
        None if open_ended else names,
        origin,
        digest,
    )


def torchvision_names() -> list[str]:
    """torchvision classification models that take `norm_layer`, sorted."""
    import torchvision

    every = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in every if n.startswith(TORCHVISION_PREFIXES))


def _torchvision(ref: ModelRef) -> UserModel:
    import torchvision

    names = torchvision_names()
    if ref.name not in names:
        raise SpecError(
            f"model {ref}: not a torchvision classification model that takes norm_layer; "
            f"allowed: {', '.join(names)}"
        )
    builder = torchvision.models.get_model_builder(ref.name)

    def factory(*, num_classes: int, norm_layer: Callable[[int], nn.Module], **params: object):
        return builder(weights=None, num_classes=num_classes, norm_layer=norm_layer, **params)

    return UserModel(str(ref), factory, True, None, f"torchvision {torchvision.__version__}", None)


@contextmanager
def running_user_code(what: str) -> Iterator[None]:
    """Runs a user's code (an import, a factory call): whatever it raises, a `sys.exit` too
    (a script that parses its command line at import), is a one-line SpecError that starts with
    `what`. What the code writes to stderr is held back, and shown only when it succeeds: an
    argparse usage line would read as hpo's own."""
    held = io.StringIO()
    try:
        with _handlers_kept_off(held, sys.stderr), redirect_stderr(held), default_dtype_kept():
            yield
    except SpecError:
        raise
    except FactoryRaised as exc:
        assert exc.__cause__ is not None
        raise SpecError(f"{what} raised {one_line(exc.__cause__)}") from exc.__cause__
    except UnusableNetwork as exc:
        raise SpecError(f"{what}: {exc}") from None
    except SystemExit as exc:
        code = "" if exc.code is None else repr(exc.code)
        raise SpecError(
            f"{what} called sys.exit({code}); code that runs as a script belongs under "
            f'`if __name__ == "__main__":`'
        ) from None
    except Exception as exc:
        raise SpecError(f"{what} raised {one_line(exc)}") from exc
    sys.stderr.write(held.getvalue())


@contextmanager
def _handlers_kept_off(held: io.StringIO, stderr: TextIO) -> Iterator[None]:
    """Log handlers the user's code made while stderr was `held` (a `logging.basicConfig()` at
    import) write to the real stderr afterwards, so no later warning of hpo's is lost."""
    try:
        yield
    finally:
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            for handler in getattr(logger, "handlers", []):
                if isinstance(handler, logging.StreamHandler) and handler.stream is held:
                    handler.setStream(stderr)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

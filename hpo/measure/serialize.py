"""Networks as files: ONNX and frozen TorchScript, exported the one way every caller shares.

Latency runtimes, stored model artifacts and `hpo export` all serialize through here, so the
timed graph and the downloaded one are made alike. Both trace one 1x3x32x32 input; the ONNX
files people download (`deliverable_onnx`) also take any batch size and carry what a user needs
to feed them: input normalization, class names, the hpo version.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout

import onnx
import torch
from torch import nn

from hpo.core.classes import class_names
from hpo.core.errors import HpoError

INPUT_SHAPE = (1, 3, 32, 32)


class OnnxExportError(HpoError):
    """A network the ONNX exporter cannot export (an operator it lacks, ...)."""


@contextmanager
def _stdout_discarded() -> Iterator[None]:
    """Whatever is written to standard output meanwhile, by Python or by C++ code (file
    descriptor 1), is dropped."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output at all: nothing to hold back
        yield
        return
    try:
        with open(os.devnull, "w") as sink, redirect_stdout(io.StringIO()):
            os.dup2(sink.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence the warnings tracing and exporting always give for these networks.

    Norm layers validate input shapes in Python; tracing bakes those checks in as constants,
    which is right here because every graph takes one fixed input shape (and its outputs are
    checked against the module). TorchScript and the legacy ONNX exporter are marked deprecated
    but are still the stock frozen graph and the fast exporter. InstanceNorm always exports with
    train=True, which is right: it normalizes with each input's own statistics. The exporter's
    note that it could not constant-fold a strided slice (reflect or replicate padding) only
    says that one optimization was skipped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*instance_norm.*", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message="Constant folding - Only steps=1", category=UserWarning
        )
        yield


def torchscript_module(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """`model` (in eval mode) traced on `example` and frozen."""
    with torch.inference_mode(), quiet_tracing():
        return torch.jit.freeze(torch.jit.trace(model.eval(), example))


def torchscript_bytes(model: nn.Module) -> bytes:
    """The model traced, frozen and saved as TorchScript (CPU, fixed 1x3x32x32 input)."""
    frozen = torchscript_module(copy.deepcopy(model).cpu(), torch.zeros(INPUT_SHAPE))
    buffer = io.BytesIO()
    with quiet_tracing():
        torch.jit.save(frozen, buffer)
    return buffer.getvalue()


def onnx_bytes(
    model: nn.Module, *, metadata: Mapping[str, str] | None = None, dynamic_batch: bool = False
) -> bytes:
    """The model exported to ONNX (eval mode, input `image` Nx3x32x32, output `logits`).

    N is 1 unless `dynamic_batch`; `metadata` becomes the graph's metadata_props. `model` is
    untouched: a copy is moved to the CPU, so the caller's model stays where it is.
    """
    buffer = io.BytesIO()
    exported = copy.deepcopy(model).eval().cpu()
    axes = {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    # The legacy exporter takes well under a second; the dynamo one took 12 s for a small CNN.
    # On an operator ONNX lacks, torch's C++ side prints the whole graph on standard output:
    # held back, as the error names the operator.
    try:
        with quiet_tracing(), _stdout_discarded():
            torch.onnx.export(
                exported,
                (torch.randn(INPUT_SHAPE),),
                buffer,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes=axes,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types (UnsupportedOperatorError, ...)
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise OnnxExportError(f"ONNX cannot export it ({text[:300]})") from exc
    if not metadata:
        return buffer.getvalue()
    graph = onnx.load_model_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, dict(metadata))
    return graph.SerializeToString()


def model_metadata(mean: torch.Tensor, std: torch.Tensor, num_classes: int) -> dict[str, str]:
    """What a downloaded model needs to be used alone, as ONNX metadata (JSON values)."""
    from hpo import __version__

    return {
        "input": "image: float32 N x 3 x 32 x 32, RGB; x = (pixel / 255 - mean) / std per channel",
        "mean": json.dumps([float(v) for v in mean.flatten()]),
        "std": json.dumps([float(v) for v in std.flatten()]),
        "classes": json.dumps(class_names(num_classes)),
        "output": "logits: float32 N x classes; argmax is the predicted class",
        "hpo_version": __version__,
    }


def deliverable_onnx(
    model: nn.Module, mean: torch.Tensor, std: torch.Tensor, num_classes: int
) -> bytes:
    """The ONNX file people download: any batch size, normalization and classes inside."""
    return onnx_bytes(model, metadata=model_metadata(mean, std, num_classes), dynamic_batch=True)


def onnx_opset(content: bytes) -> int:
    """The default-domain opset an ONNX file was exported with."""
    graph = onnx.load_model_from_string(content)
    return next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def load_torchscript(content: bytes) -> torch.jit.ScriptModule:
    """A saved TorchScript module, loaded on the CPU."""
    with quiet_tracing():
        return torch.jit.load(io.BytesIO(content), map_location="cpu")

"""Runtimes that can be timed: the folded module in `eager` PyTorch, `torchscript` (traced and
frozen), and `onnxruntime` (exported to ONNX, CPU execution provider, same thread count);
`auto` resolves to the fastest one for the device (benchmarks/latency.py)."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

from hpo.core.names import LATENCY_BACKENDS
from hpo.measure.protocol import LatencyStats, Protocol, Runner, measure_runners, timing_conditions
from hpo.measure.serialize import INPUT_SHAPE, onnx_bytes, torchscript_module

ORT_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class Runtime:
    """A model prepared for one backend: `run` times one fixed image, `predict` checks outputs."""

    backend: str
    device: torch.device
    run: Runner
    predict: Callable[[torch.Tensor], torch.Tensor]


def _one_at_a_time(
    predict_one: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Predict a batch image by image: the traced/exported graphs have a fixed batch of 1."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([predict_one(image.unsqueeze(0)) for image in images])

    return predict


def eager_runtime(model: nn.Module, device: torch.device | None = None) -> Runtime:
    """The module itself under inference mode."""
    device = device or torch.device("cpu")
    model = model.eval().to(device)
    x = torch.randn(INPUT_SHAPE, device=device)

    def run() -> object:
        with torch.inference_mode():
            return model(x)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(images.to(device)).cpu()

    return Runtime("eager", device, run, predict)


def torchscript_runtime(model: nn.Module, device: torch.device | None = None) -> Runtime:
    """The module traced and frozen (TorchScript)."""
    device = device or torch.device("cpu")
    x = torch.randn(INPUT_SHAPE, device=device)
    frozen = torchscript_module(model.eval().to(device), x)

    def run() -> object:
        with torch.inference_mode():
            return frozen(x)

    def predict_one(image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return frozen(image.to(device)).cpu()

    return Runtime("torchscript", device, run, _one_at_a_time(predict_one))


def onnx_session(content: bytes, threads: int = 1) -> Any:
    """An ONNX Runtime session (CPU provider, sequential, `threads` intra-op threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(content, options, providers=[ORT_PROVIDER])


def onnxruntime_runtime(model: nn.Module, threads: int = 1) -> Runtime:
    """Export to ONNX and run with ONNX Runtime's CPU provider at `threads` intra-op threads."""
    session = onnx_session(onnx_bytes(model), threads)
    feed = {"image": np.random.default_rng(0).standard_normal(INPUT_SHAPE, dtype=np.float32)}

    def run() -> object:
        return session.run(None, feed)

    def predict_one(image: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(None, {"image": image.detach().cpu().numpy()})
        return torch.from_numpy(logits)

    return Runtime("onnxruntime", torch.device("cpu"), run, _one_at_a_time(predict_one))


def resolve_backend(backend: str, device: torch.device | None = None) -> str:
    """`auto` is the fastest runtime measured (benchmarks/latency.py): ORT on CPU, eager on CUDA."""
    if backend not in LATENCY_BACKENDS:
        raise ValueError(
            f"unknown latency backend {backend!r}; allowed: {', '.join(LATENCY_BACKENDS)}"
        )
    if backend != "auto":
        return backend
    # The onnxruntime wheel here is CPU-only, so on a GPU the fastest runtime we have is eager.
    return "eager" if device is not None and device.type == "cuda" else "onnxruntime"


def make_runtime(
    model: nn.Module, backend: str, *, threads: int = 1, device: torch.device | None = None
) -> Runtime:
    """`model` prepared to run single-image inference on `backend` (`auto` resolved first)."""
    backend = resolve_backend(backend, device)
    if backend == "eager":
        return eager_runtime(model, device)
    if backend == "torchscript":
        return torchscript_runtime(model, device)
    return onnxruntime_runtime(model, threads)


def make_runner(
    model: nn.Module, backend: str, *, threads: int = 1, device: torch.device | None = None
) -> Runner:
    """A zero-argument callable that runs one single-image inference on `backend`."""
    return make_runtime(model, backend, threads=threads, device=device).run


def backend_version(backend: str) -> str:
    """`backend version` string recorded with every latency."""
    if backend == "onnxruntime":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    return f"{backend} torch {torch.__version__}"


def measure_latency(
    model: nn.Module,
    *,
    backend: str = "eager",
    device: torch.device | None = None,
    **protocol: float,
) -> LatencyStats:
    """Single-image latency of `model` on `backend`; `protocol` overrides Protocol's fields."""
    spec = Protocol(**protocol)  # type: ignore[arg-type]
    with timing_conditions(spec.threads):
        runtime = make_runtime(model, backend, threads=spec.threads, device=device)
    return measure_runners([runtime.run], spec, runtime.device)[0]


@cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

"""Single-image inference latency: a measurement protocol and the runtimes it can time.

Protocol: fixed intra-op thread count, denormals flushed, `torch.inference_mode()`, garbage
collection off while timing, warmup runs, then rounds of timed runs until the interquartile range
is below `target_iqr` of the median, `max_rounds` is reached or `max_seconds` have passed. Two
models are compared by interleaving their rounds (A B A B ...), so load on a noisy machine hits
both alike; CUDA is synchronized after every run on a GPU.

Runtimes: `eager` (the module), `torchscript` (traced and frozen), `onnxruntime` (exported to ONNX,
CPU execution provider, same thread count); `auto` resolves to the fastest one for the device.
"""

from __future__ import annotations

import copy
import gc
import io
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from hpo.names import LATENCY_BACKENDS

INPUT_SHAPE = (1, 3, 32, 32)
ORT_PROVIDER = "CPUExecutionProvider"

Runner = Callable[[], object]


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed runs, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    iqr_ms: float
    min_ms: float
    loops: int
    rounds: int

    @property
    def relative_iqr(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Protocol:
    """How long and how carefully to measure."""

    threads: int = 1
    warmup: int = 20
    loops: int = 50
    max_rounds: int = 10
    min_rounds: int = 2
    target_iqr: float = 0.05
    max_seconds: float = 5.0


def summarize(samples_ms: list[float], rounds: int = 1) -> LatencyStats:
    """Median, mean, std, p90 and IQR of the samples."""
    if not samples_ms:
        raise ValueError("no latency samples")
    q1, median, q3, p90 = np.percentile(samples_ms, [25, 50, 75, 90])
    return LatencyStats(
        median_ms=float(median),
        mean_ms=statistics.fmean(samples_ms),
        std_ms=statistics.pstdev(samples_ms),
        p90_ms=float(p90),
        iqr_ms=float(q3 - q1),
        min_ms=min(samples_ms),
        loops=len(samples_ms),
        rounds=rounds,
    )


@contextmanager
def timing_conditions(threads: int) -> Iterator[None]:
    """Fixed thread count, flushed denormals, GC off; everything restored afterwards."""
    previous_threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if gc_was_enabled:
            gc.enable()
        torch.set_num_threads(previous_threads)


def _time_round(run: Runner, loops: int, synchronize: Callable[[], None]) -> list[float]:
    samples = []
    for _ in range(loops):
        start = time.perf_counter_ns()
        run()
        synchronize()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _no_sync() -> None:
    return None


def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else _no_sync


def measure_rounds(
    runners: list[Runner], protocol: Protocol, device: torch.device | None = None
) -> list[list[list[float]]]:
    """Interleaved rounds (A B A B ...): for each runner, its samples (ms) round by round.

    Stops after `min_rounds` once every runner's IQR/median is within `target_iqr`, or when
    `max_rounds` or `max_seconds` is reached.
    """
    synchronize = _synchronizer(device or torch.device("cpu"))
    rounds: list[list[list[float]]] = [[] for _ in runners]
    with timing_conditions(protocol.threads):
        for run in runners:
            for _ in range(protocol.warmup):
                run()
            synchronize()
        deadline = time.perf_counter() + protocol.max_seconds
        done = 0
        while done < protocol.max_rounds:
            for run, per_round in zip(runners, rounds, strict=True):
                per_round.append(_time_round(run, protocol.loops, synchronize))
            done += 1
            if done < protocol.min_rounds:
                continue
            stable = all(summarize(_flat(r)).relative_iqr <= protocol.target_iqr for r in rounds)
            if stable or time.perf_counter() > deadline:
                break
    return rounds


def _flat(rounds: list[list[float]]) -> list[float]:
    return [sample for samples in rounds for sample in samples]


def measure_runners(
    runners: list[Runner], protocol: Protocol, device: torch.device | None = None
) -> list[LatencyStats]:
    """Time several runners with interleaved rounds (A B A B ...); one LatencyStats each."""
    return [
        summarize(_flat(rounds), len(rounds))
        for rounds in measure_rounds(runners, protocol, device)
    ]


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
    with torch.inference_mode(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.compile but still the stock frozen graph.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        _ignore_fixed_shape_warnings()
        frozen = torch.jit.freeze(torch.jit.trace(model.eval().to(device), x))

    def run() -> object:
        with torch.inference_mode():
            return frozen(x)

    def predict_one(image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return frozen(image.to(device)).cpu()

    return Runtime("torchscript", device, run, _one_at_a_time(predict_one))


def _ignore_fixed_shape_warnings() -> None:
    """Silence the tracer's warnings about shape checks turned into constants.

    Norm layers validate input shapes in Python; tracing bakes those checks in, which is right
    here because every runtime takes one fixed 1x3x32x32 input (and its outputs are checked).
    """
    warnings.simplefilter("ignore", torch.jit.TracerWarning)


def export_onnx(model: nn.Module) -> bytes:
    """The model exported to ONNX (eval mode, one fixed 1x3x32x32 input); `model` is untouched."""
    buffer = io.BytesIO()
    x = torch.randn(INPUT_SHAPE)
    # A copy, because moving the caller's model to the CPU would move it under its feet.
    exported = copy.deepcopy(model).eval().cpu()
    # The legacy exporter takes well under a second; the dynamo one took 12 s for a small CNN.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        _ignore_fixed_shape_warnings()
        # InstanceNorm always normalizes with the input's statistics, so "train=True" is right.
        warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True")
        torch.onnx.export(
            exported,
            (x,),
            buffer,
            input_names=["image"],
            output_names=["logits"],
            dynamo=False,
        )
    return buffer.getvalue()


def onnxruntime_runtime(model: nn.Module, threads: int = 1) -> Runtime:
    """Export to ONNX and run with ONNX Runtime's CPU provider at `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(export_onnx(model), options, providers=[ORT_PROVIDER])
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
    threads: int = 1,
    warmup: int = 20,
    loops: int = 50,
    backend: str = "eager",
    device: torch.device | None = None,
    **protocol: float,
) -> LatencyStats:
    """Single-image latency of `model` on `backend` under the measurement protocol."""
    spec = Protocol(threads=threads, warmup=warmup, loops=loops, **protocol)  # type: ignore[arg-type]
    with timing_conditions(threads):
        runtime = make_runtime(model, backend, threads=threads, device=device)
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

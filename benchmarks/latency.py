"""Single-image latency of every model family x norm on every runtime, and how stable it is.

    uv run python benchmarks/latency.py                      # everything (a few minutes)
    uv run python benchmarks/latency.py --models resnet --norms batch --rounds 5 --stability 4

Part 1 times, per model x norm, the unfused net in eager, the folded net in eager, TorchScript
(traced + frozen) and ONNX Runtime, all four in interleaved rounds (A B C D A B C D ...), and
prints each median and IQR and the ratios between them with a 95 % bootstrap confidence interval
(rounds resampled, paired across runtimes, since a round's load hits all four alike).
Part 2 measures the same models twice in one process with the trial protocol (the spec's
defaults, the model interleaved with the reference network) and prints the Kendall tau between
the two rankings and the IQR/median of every measurement.
BatchNorm statistics are random (latency does not depend on what the weights learned).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from hpo.core.spec import LatencySection  # noqa: E402
from hpo.measure.calibration import device_fingerprint, reference_runtime  # noqa: E402
from hpo.measure.fusion import fold_batchnorm  # noqa: E402
from hpo.measure.protocol import (  # noqa: E402
    Protocol,
    measure_rounds,
    measure_runners,
    summarize,
    timing_conditions,
)
from hpo.measure.runtimes import make_runtime, resolve_backend  # noqa: E402
from studies import listed  # noqa: E402

RUNTIMES = ("unfused eager", "eager", "torchscript", "onnxruntime")
DEFAULT = resolve_backend("auto", torch.device("cpu"))
# Ten models of different cost for the stability check: (family, width, extra kwargs).
STABILITY_MODELS = (
    ("simple_cnn", 0.5, {}),
    ("simple_cnn", 1.0, {}),
    ("vgg", 0.5, {}),
    ("vgg", 1.0, {}),
    ("vgg", 1.5, {}),
    ("resnet", 0.5, {"depth": 8}),
    ("resnet", 1.0, {"depth": 14}),
    ("resnet", 1.0, {"depth": 20}),
    ("mobilenet", 0.5, {}),
    ("mobilenet", 1.0, {}),
)


def with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm running statistics and affine params, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
    return model.eval()


def ratio_ci(
    numerator: list[list[float]], denominator: list[list[float]], resamples: int, seed: int = 0
) -> tuple[float, float, float]:
    """median(numerator)/median(denominator) and its 95 % CI, rounds resampled in pairs."""
    a, b = np.asarray(numerator), np.asarray(denominator)  # (rounds, loops)
    point = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(a), size=(resamples, len(a)))
    boot_a = np.median(a[index].reshape(resamples, -1), axis=1)
    boot_b = np.median(b[index].reshape(resamples, -1), axis=1)
    low, high = np.percentile(boot_a / boot_b, [2.5, 97.5])
    return point, float(low), float(high)


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b between two paired samples (ties counted as neither)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    denominator = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else float("nan")


@dataclass
class Row:
    """One model x norm: per-runtime samples, round by round."""

    name: str
    norm: str
    rounds: dict[str, list[list[float]]]


def measure_model(
    name: str, norm: str, runtimes: list[str], width: float, protocol: Protocol
) -> Row:
    """Interleaved rounds of every runtime on one model x norm."""
    torch.manual_seed(0)
    model = with_random_statistics(models.build_model(name, norm=norm, width=width))
    folded, _ = fold_batchnorm(model)
    runners = []
    with timing_conditions(protocol.threads):
        for runtime in runtimes:
            source, backend = (model, "eager") if runtime == "unfused eager" else (folded, runtime)
            runners.append(make_runtime(source, backend, threads=protocol.threads).run)
    rounds = measure_rounds(runners, protocol)
    return Row(name, norm, dict(zip(runtimes, rounds, strict=True)))


def cell(samples: list[list[float]]) -> str:
    stats = summarize([s for r in samples for s in r])
    return f"{stats.median_ms:7.3f} ({stats.iqr_ms:5.3f})"


def ratio_cell(ratio: tuple[float, float, float]) -> str:
    point, low, high = ratio
    return f"{point:5.2f} [{low:4.2f}, {high:4.2f}]"


def part_runtimes(args: argparse.Namespace) -> None:
    runtimes = [r for r in RUNTIMES if r in args.runtimes]
    protocol = Protocol(
        threads=args.threads,
        warmup=args.warmup,
        loops=args.loops,
        min_rounds=args.rounds,
        max_rounds=args.rounds,
        max_seconds=float("inf"),
    )
    print(
        f"## Runtimes: batch 1, {args.threads} thread(s), width {args.width}, {args.rounds} "
        f"interleaved rounds x {args.loops} loops; median (IQR) in ms"
    )
    header = f"{'model':<11} {'norm':<9}" + "".join(f" {r:>15}" for r in runtimes)
    print(header)
    rows = []
    for name in args.models:
        for norm in args.norms:
            row = measure_model(name, norm, runtimes, args.width, protocol)
            rows.append(row)
            print(
                f"{name:<11} {norm:<9}" + "".join(f" {cell(row.rounds[r]):>15}" for r in runtimes)
            )
    print()
    print("## Ratios (median ratio [95 % bootstrap CI]); >1 means the second is faster")
    comparisons = []
    if {"unfused eager", "eager"} <= set(runtimes):
        comparisons.append(("unfused eager", "eager", "fold speedup"))
    comparisons += [
        ("eager", r, f"eager/{r}") for r in ("torchscript", "onnxruntime") if r in runtimes
    ]
    default_ok: list[tuple[str, float, float, float]] = []
    print(
        f"{'model':<11} {'norm':<9}"
        + "".join(f" {label:>20}" for *_, label in comparisons)
        + f" {DEFAULT + '/fastest other':>22}"
    )
    speedups = []
    for row in rows:
        cells = []
        for numerator, denominator, label in comparisons:
            ratio = ratio_ci(row.rounds[numerator], row.rounds[denominator], args.resamples)
            cells.append(ratio_cell(ratio))
            if label == "fold speedup" and row.norm == "batch":
                speedups.append((f"{row.name}/{row.norm}", *ratio))
        line = f"{row.name:<11} {row.norm:<9}" + "".join(f" {c:>20}" for c in cells)
        others = [r for r in runtimes if r != DEFAULT]
        if DEFAULT in row.rounds and others:
            # Against the fastest other runtime: <= 1 means the default is the fastest itself.
            medians = {r: float(np.median(row.rounds[r])) for r in others}
            rival = min(medians, key=medians.__getitem__)
            versus = ratio_ci(row.rounds[DEFAULT], row.rounds[rival], args.resamples)
            default_ok.append((f"{row.name}/{row.norm}", *versus))
            line += f" {ratio_cell(versus):>20} ({rival})"
        print(line)
    print()
    if speedups:
        points = [s[1] for s in speedups]
        print(
            "fold speedup, BatchNorm models, eager, batch 1: "
            f"median {statistics.median(points):.3f}x over {len(points)} models "
            f"(range {min(points):.3f}x to {max(points):.3f}x)"
        )
        for label, point, low, high in speedups:
            print(f"  {label:<22} {point:.3f}x [{low:.3f}, {high:.3f}]")
    if default_ok:
        worst = max(default_ok, key=lambda d: d[1])
        fastest = sum(d[1] < 1 for d in default_ok)
        within = sum(d[1] <= 1.1 for d in default_ok)
        print(
            f"default backend (auto = {DEFAULT} on CPU): the fastest runtime for "
            f"{fastest}/{len(default_ok)} models, within 1.1x of the fastest for "
            f"{within}/{len(default_ok)}; worst {DEFAULT}/fastest-other {worst[0]} "
            f"{worst[1]:.3f}x [{worst[2]:.3f}, {worst[3]:.3f}]"
        )


def part_stability(args: argparse.Namespace) -> None:
    section = LatencySection()
    backend = resolve_backend(section.backend if args.backend == "spec" else args.backend)
    protocol = Protocol.from_section(section)
    chosen = STABILITY_MODELS[: args.stability]
    print(
        f"## Stability: {len(chosen)} models (BatchNorm, folded) measured twice in one process, "
        f"backend {backend}, the trial protocol ({protocol.loops} loops x <= "
        f"{protocol.max_rounds} rounds, stop at IQR/median <= {protocol.target_iqr:.0%})"
    )
    reference = reference_runtime(backend, protocol.threads, "cpu")
    runtimes = []
    with timing_conditions(protocol.threads):
        for name, width, extra in chosen:
            torch.manual_seed(0)
            model = with_random_statistics(
                models.build_model(name, norm="batch", width=width, **extra)
            )
            folded, _ = fold_batchnorm(model)
            label = f"{name} w{width:g}" + "".join(f" {k}{v}" for k, v in extra.items())
            runtimes.append((label, make_runtime(folded, backend, threads=protocol.threads)))
    passes = []
    for _ in range(2):
        measured = []
        for _label, runtime in runtimes:
            model_stats, reference_stats = measure_runners([runtime.run, reference.run], protocol)
            measured.append((model_stats, model_stats.median_ms / reference_stats.median_ms))
        passes.append(measured)
    print(
        f"{'model':<22} {'pass 1 ms (IQR/med)':>20} {'pass 2 ms (IQR/med)':>20} "
        f"{'ratio 1':>8} {'ratio 2':>8}"
    )
    for index, (label, _runtime) in enumerate(runtimes):
        (s1, r1), (s2, r2) = passes[0][index], passes[1][index]
        print(
            f"{label:<22} {s1.median_ms:9.3f} ({s1.relative_iqr:6.1%}) "
            f"{s2.median_ms:9.3f} ({s2.relative_iqr:6.1%}) {r1:8.3f} {r2:8.3f}"
        )
    first = [s.median_ms for s, _ in passes[0]]
    second = [s.median_ms for s, _ in passes[1]]
    tau_ms = kendall_tau(first, second)
    tau_ratio = kendall_tau([r for _, r in passes[0]], [r for _, r in passes[1]])
    spreads = [s.relative_iqr for measured in passes for s, _ in measured]
    print(
        f"Kendall tau between the two rankings: {tau_ms:.3f} (ms), {tau_ratio:.3f} "
        f"(latency_ratio); IQR/median: median {statistics.median(spreads):.1%}, "
        f"max {max(spreads):.1%}, {sum(s <= 0.05 for s in spreads)}/{len(spreads)} <= 5 %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models", nargs="+", default=models.list_models(), help="model families timed"
    )
    parser.add_argument("--norms", nargs="+", default=list(models.NORMS), help="norms timed")
    parser.add_argument(
        "--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
        help="runtimes of part 1",
    )  # fmt: skip
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of the models")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads while timing")
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved rounds per model (part 1)"
    )
    parser.add_argument("--loops", type=int, default=30, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing")
    parser.add_argument(
        "--resamples", type=int, default=2000, help="bootstrap resamples of the ratios' intervals"
    )
    parser.add_argument("--stability", type=int, default=10, help="models in part 2 (0 = skip)")
    parser.add_argument(
        "--backend", default="spec", help="backend of part 2 (spec: the spec's default)"
    )
    parser.add_argument("--skip-runtimes", action="store_true", help="only part 2")
    args = parser.parse_args()
    listed("--models", ",".join(args.models), models.list_models())
    listed("--norms", ",".join(args.norms), models.NORMS)
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    fingerprint = device_fingerprint(DEFAULT, args.threads, torch.device("cpu"))
    print(
        f"# {fingerprint['cpu_model']}, {fingerprint['usable_cores']} usable cores, "
        f"torch {fingerprint['torch_version']}, {fingerprint['backend']}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    if not args.skip_runtimes:
        part_runtimes(args)
        print()
    if args.stability:
        part_stability(args)
    print(f"# {time.perf_counter() - start:.0f} s; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

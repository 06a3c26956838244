"""Training throughput of the trial loop vs a minimal hand-written PyTorch loop, and fused vs
unfused latency.

    uv run python benchmarks/throughput.py [--data PATH.npz] [--model vgg] [--rounds 3]
    uv run python benchmarks/throughput.py --formats [--models vgg,resnet] [--norms batch,group]

Both loops train the same model in NCHW memory on the same images with the same batch size,
optimizer and schedule; rounds are interleaved (trial loop, plain loop, trial loop, ...) and
medians reported, so background load hits both alike. The figure is the ratio trial/plain
(1.0 = no overhead).

--formats instead times the trial loop per model x norm in NCHW and in channels-last memory,
interleaved (alternating which goes first), and prints the ratio next to the format the trial
loop picks for that norm (`hpo.train.loop.memory_format_for`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from hpo.core.spec import DataSection  # noqa: E402
from hpo.core.trial_config import TrialConfig  # noqa: E402
from hpo.measure.fusion import fold_batchnorm  # noqa: E402
from hpo.measure.protocol import Protocol, measure_runners  # noqa: E402
from hpo.measure.runtimes import make_runner  # noqa: E402
from hpo.train.data import TensorDataset, load_raw, prepare  # noqa: E402
from hpo.train.loop import memory_format_for, train  # noqa: E402
from studies import SAMPLE, listed, require_sample  # noqa: E402


def plain_loop(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int, epochs: int, lr: float
) -> float:
    """The textbook loop: pre-normalized tensors, SGD + OneCycle, no augmentation. Images/s."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    steps = len(labels) // batch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps * epochs
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels))
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            loss = criterion(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return steps * batch * epochs / (time.perf_counter() - start)


def compare_formats(data: TensorDataset, args: argparse.Namespace) -> None:
    """Trial-loop images/s per model x norm in NCHW vs channels-last, rounds interleaved."""
    formats = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}
    print(
        f"{len(data.train)} images x {args.epochs} epoch(s), batch 128, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds, medians"
    )
    for name in args.models.split(","):
        for norm in args.norms.split(","):
            config = TrialConfig.from_params({"model": name, "norm": norm})
            rates: dict[str, list[float]] = {label: [] for label in formats}
            for round_ in range(args.rounds):
                # Alternate which format goes first, so a warming or loaded machine favours
                # neither.
                order = list(formats.items())[:: 1 if round_ % 2 == 0 else -1]
                for label, memory_format in order:
                    torch.manual_seed(round_)
                    model = models.build_model(name, norm=norm)
                    result = train(
                        model,
                        data,
                        config,
                        epochs=args.epochs,
                        seed=round_,
                        memory_format=memory_format,
                    )
                    rates[label].append(result.images_per_second)
            nchw, last = (statistics.median(rates[label]) for label in formats)
            picked = memory_format_for(torch.device("cpu"), norm) == torch.channels_last
            print(
                f"{name:10s} {norm:8s} NCHW {nchw:6.0f}  channels-last {last:6.0f} images/s  "
                f"ratio {last / nchw:.2f}x  trial loop uses "
                f"{'channels-last' if picked else 'NCHW'}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", type=Path, default=SAMPLE, help="the CIFAR-10 sample (keras .npz layout)"
    )
    parser.add_argument(
        "--model", default="vgg", choices=models.list_models(), help="model of the loop timing"
    )
    parser.add_argument("--train-size", type=int, default=2048, help="training images")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timing")
    parser.add_argument("--rounds", type=int, default=3, help="timings per loop (median)")
    parser.add_argument("--formats", action="store_true", help="NCHW vs channels-last instead")
    parser.add_argument(
        "--models", default=",".join(models.list_models()), help="models of --formats"
    )
    parser.add_argument("--norms", default=",".join(models.NORMS), help="norms of --formats")
    args = parser.parse_args()
    require_sample(args.data)
    args.models = ",".join(listed("--models", args.models, models.list_models()))
    args.norms = ",".join(listed("--norms", args.norms, models.NORMS))
    torch.set_flush_denormal(True)
    section = DataSection(dataset=str(args.data), train_size=args.train_size, val_size=500)
    data = prepare(load_raw(section), section, torch.device("cpu"))
    if args.formats:
        compare_formats(data, args)
        return
    config = TrialConfig.from_params(
        {
            "model": args.model,
            "norm": "batch",
            "lr": 0.05,
            "optimizer": "nesterov",
            "scheduler": "onecycle",
        }
    )
    plain_images = data.normalize(data.train.images)
    trial_rates, plain_rates = [], []
    for round_ in range(args.rounds):
        torch.manual_seed(round_)
        model = models.build_model(args.model, norm="batch")
        trial_rates.append(
            # NCHW, as the plain loop: this measures the loop's overhead, not the memory format
            # (--formats measures that).
            train(
                model,
                data,
                config,
                epochs=args.epochs,
                seed=round_,
                augment_batches=False,
                memory_format=torch.contiguous_format,
            ).images_per_second
        )
        torch.manual_seed(round_)
        model = models.build_model(args.model, norm="batch")
        plain_rates.append(
            plain_loop(model, plain_images, data.train.labels, 128, args.epochs, 0.05)
        )
    trial, plain = statistics.median(trial_rates), statistics.median(plain_rates)
    print(
        f"model {args.model}, {len(data.train)} images x {args.epochs} epoch(s), batch 128, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds"
    )
    print(f"trial loop (no augmentation) median {trial:8.0f} images/s")
    print(f"plain PyTorch loop           median {plain:8.0f} images/s")
    print(f"ratio trial/plain            {trial / plain:8.3f}")
    torch.manual_seed(0)
    model = models.build_model(args.model, norm="batch")
    train(model, data, config, epochs=1, seed=0)
    model.eval()
    folded, report = fold_batchnorm(model)
    unfused, fused = measure_runners(
        [make_runner(model, "eager"), make_runner(folded, "eager")],
        Protocol(threads=1, warmup=50, loops=100, max_rounds=20, target_iqr=0.02, max_seconds=20),
    )
    print(f"latency, batch 1, 1 thread, eager ({report.n_folded} BatchNorms folded):")
    print(f"  unfused median {unfused.median_ms:.3f} ms (IQR {unfused.iqr_ms:.3f})")
    print(f"  folded  median {fused.median_ms:.3f} ms (IQR {fused.iqr_ms:.3f})")
    print(f"  speedup unfused/folded {unfused.median_ms / fused.median_ms:.3f}x")


if __name__ == "__main__":
    main()

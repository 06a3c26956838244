"""The quickstart study on the CIFAR-10 sample, once per seed, as `hpo run` runs it.

    uv run python benchmarks/quickstart.py [--spec studies/quickstart.toml] [--seeds 0,1,2]
        [--set section.key=value ...] [--data PATH] [--jobs 1] [--json]

Each seed runs the spec with `--set study.seed=N` in a fresh SQLite file, in this process (or in
--jobs worker processes) through the code `hpo run` uses, from a warm environment (no download,
Python and torch already imported). Printed per seed and as medians: wall time and the process's
CPU time (user + system, all threads: on a machine shared with other work the wall time grows,
the CPU time much less), trials complete and pruned, the best trial by validation accuracy with
its test accuracy (single pass), the first trial's (what the search added over it; with
`[study] start_from_first` that is the spec's starting configuration), the Pareto front, and the
sampler's time and the trials' waits for latency probes as shares of the trials' time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from hpo.core import results
from hpo.core.spec import Fixed, load_spec
from hpo.store.queries import result_of
from studies import ROOT, SAMPLE, refuse, require_sample, run_spec


def seed_run(seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run the spec for one seed and summarize what it found."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    values = {"study.seed": seed, "data.dataset": str(args.data)}
    cpu = time.process_time()
    run = run_spec(args.spec, values, args.set, folder / f"quickstart-{seed}.db")
    cpu = time.process_time() - cpu
    sampler_share, probe_share = run.overhead_shares()
    complete = sorted((result_of(t) for t in run.complete), key=lambda r: r.number)
    best = max(complete, key=lambda r: r.accuracy)
    first = next((r for r in complete if r.number == 0), None)
    return {
        "seed": seed,
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": cpu,
        "complete": len(complete),
        "pruned": sum(t.state == TrialState.PRUNED for t in run.trials),
        "sampler_share": sampler_share,
        "probe_share": probe_share,
        "best": summary(best),
        "first": None if first is None else summary(first),
        "front": [summary(r) for r in results.pareto_front(complete)],
    }


def summary(result: results.TrialResult) -> dict[str, Any]:
    """A trial's objectives, test accuracy and params, as printed and as JSON."""
    return {
        "trial": result.number,
        "val_accuracy": result.accuracy,
        "test_accuracy": result.test_accuracy,
        "latency_ms": result.latency_ms,
        "params": result.params,
    }


def line(trial: dict[str, Any], searched: list[str]) -> str:
    """One trial on one line: number, accuracies, latency and the searched params."""
    test = trial["test_accuracy"]
    params = ", ".join(
        f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in trial["params"].items()
        if key in searched
    )
    return (
        f"trial {trial['trial']}: val {trial['val_accuracy']:.2%}, test "
        f"{'-' if test is None else f'{test:.2%}'}, {trial['latency_ms']:.3f} ms ({params})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--spec", type=Path, default=ROOT / "studies" / "quickstart.toml", help="study spec"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated study seeds")
    parser.add_argument("--set", action="append", default=[], help="spec override (repeatable)")
    parser.add_argument(
        "--data", type=Path, default=SAMPLE, help="the CIFAR-10 sample (keras .npz layout)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (processes)")
    parser.add_argument("--json", action="store_true", help="one JSON object per seed, then one")
    args = parser.parse_args()
    require_sample(args.data)
    if args.jobs < 1:
        refuse(f"--jobs {args.jobs}: expected an integer >= 1")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        refuse(f"--seeds {args.seeds!r}: expected comma-separated integers")
    with tempfile.TemporaryDirectory(prefix="hpo-quickstart-") as folder:
        if args.jobs == 1:
            runs = [seed_run(seed, args, Path(folder)) for seed in seeds]
        else:
            with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(seed_run, seed, args, Path(folder)) for seed in seeds]
                runs = [future.result() for future in futures]
    medians = {
        "seeds": seeds,
        "jobs": args.jobs,
        "wall_seconds_median": statistics.median(r["wall_seconds"] for r in runs),
        "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in runs),
        "best_val_median": statistics.median(r["best"]["val_accuracy"] for r in runs),
        "best_test_median": statistics.median(r["best"]["test_accuracy"] for r in runs),
        "best_test_min": min(r["best"]["test_accuracy"] for r in runs),
    }
    search = load_spec(args.spec, args.set).search
    searched = [key for key, domain in search.items() if not isinstance(domain, Fixed)]
    if args.json:
        for run in runs:
            print(json.dumps(run))
        print(json.dumps(medians))
        return
    for run in runs:
        print(
            f"seed {run['seed']}: wall {run['wall_seconds']:.0f} s, CPU {run['cpu_seconds']:.0f} "
            f"s, {run['complete']} complete + {run['pruned']} pruned; sampler "
            f"{run['sampler_share']:.1%} + probes {run['probe_share']:.1%} of trial time"
        )
        print(f"  best  {line(run['best'], searched)}")
        if run["first"] is not None:
            added = run["best"]["val_accuracy"] - run["first"]["val_accuracy"]
            print(f"  first {line(run['first'], searched)}")
            print(f"  the search added {added * 100:+.1f} points of validation accuracy")
        print("  front:")
        for trial in run["front"]:
            print(f"    {line(trial, searched)}")
    print(
        f"medians over seeds {args.seeds}: wall {medians['wall_seconds_median']:.0f} s, CPU "
        f"{medians['cpu_seconds_median']:.0f} s, best val {medians['best_val_median']:.2%}, "
        f"its test {medians['best_test_median']:.2%} (lowest {medians['best_test_min']:.2%})"
    )


if __name__ == "__main__":
    main()

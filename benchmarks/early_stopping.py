"""Pareto-aware early stopping on the CIFAR-10 sample: the same studies with the pruner off and on.

    uv run python benchmarks/early_stopping.py [--spec studies/quickstart.toml] [--trials 20]
        [--seeds 3] [--eta 3] [--set section.key=value ...] [--data PATH] [--json]

For each seed, the spec runs twice in this process exactly as `hpo run` runs it, once with
`[study] pruner = "none"` and once with `"pareto"`, at the same `n_trials` (pruned trials count).
Printed per run and as medians over the seeds: wall time, trials finished and pruned,
hypervolume (one reference point for every run of the benchmark: accuracy 0, 1.1 x the slowest
complete trial), best validation accuracy, and the pruner's false stops: how many trials of the
unpruned study's front the rule would have stopped, replayed on that study's own learning
curves in trial order.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from optuna.trial import TrialState

from hpo.core import results
from hpo.core.spec import load_spec
from hpo.core.trial_attrs import VAL_CURVE_ATTR
from hpo.search.pruning import ParetoHalving
from hpo.store.artifacts import latency_spread
from hpo.store.queries import result_of
from studies import (
    ROOT,
    SAMPLE,
    StudyRun,
    common_reference,
    refuse,
    require_sample,
    run_spec,
    volume,
)


def false_stops(run: StudyRun, pruner: ParetoHalving, epochs: int) -> tuple[int, int]:
    """(front trials the rule would have stopped, front size) on the unpruned run's curves."""
    ordered = sorted(run.complete, key=lambda t: t.number)
    front = {r.number for r in results.pareto_front([result_of(t) for t in ordered])}
    stopped = 0
    for index, trial in enumerate(ordered):
        if trial.number not in front:
            continue
        curve, latency = trial.user_attrs[VAL_CURVE_ATTR], trial.values[1]
        for rung in pruner.rungs(epochs):
            earlier = [
                (t.user_attrs[VAL_CURVE_ATTR][rung - 1], t.values[1], latency_spread(t))
                for t in ordered[:index]
            ]
            if not pruner.keeps((curve[rung - 1], latency, latency_spread(trial)), earlier):
                stopped += 1
                break
    return stopped, len(front)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--spec", type=Path, default=ROOT / "studies" / "quickstart.toml", help="study spec"
    )
    parser.add_argument("--trials", type=int, default=20, help="n_trials of every study")
    parser.add_argument("--seeds", type=int, default=3, help="study seeds, each run both ways")
    parser.add_argument("--eta", type=int, default=3, help="the pareto pruner's pruner_eta")
    parser.add_argument("--set", action="append", default=[], help="spec override (repeatable)")
    parser.add_argument(
        "--data", type=Path, default=SAMPLE, help="the CIFAR-10 sample (keras .npz layout)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    require_sample(args.data)
    for option in ("trials", "seeds"):
        if getattr(args, option) < 1:
            refuse(f"--{option} {getattr(args, option)}: expected an integer >= 1")
    if args.eta < 2:
        refuse(f"--eta {args.eta}: expected an integer >= 2")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs: dict[str, list[StudyRun]] = {"none": [], "pareto": []}
    with tempfile.TemporaryDirectory(prefix="hpo-early-") as folder:
        for seed in range(args.seeds):
            for pruner in runs:
                values = {
                    "study.pruner": pruner,
                    "study.pruner_eta": args.eta,
                    "study.seed": seed,
                    "study.n_trials": args.trials,
                    "data.dataset": str(args.data),
                }
                db = Path(folder) / f"{pruner}-{seed}.db"
                runs[pruner].append(run_spec(args.spec, values, args.set, db))
                if not args.json:
                    run = runs[pruner][-1]
                    print(
                        f"  seed {seed} pruner {pruner:>6}: {run.wall_seconds:.0f} s, "
                        f"best {run.best_accuracy():.2%}",
                        flush=True,
                    )
        reference = common_reference([r for rs in runs.values() for r in rs])
        epochs = load_spec(args.spec, args.set).train.epochs
        stops = [false_stops(r, ParetoHalving(args.eta), epochs) for r in runs["none"]]
        rows = []
        for pruner, mine in runs.items():
            row = {
                "pruner": pruner,
                "trials": args.trials,
                "seeds": args.seeds,
                "reference": reference,
                "wall_seconds": [r.wall_seconds for r in mine],
                "wall_seconds_median": statistics.median(r.wall_seconds for r in mine),
                "pruned_median": statistics.median(
                    sum(t.state == TrialState.PRUNED for t in r.trials) for r in mine
                ),
                "complete_median": statistics.median(len(r.complete) for r in mine),
                "hypervolume": [volume(r, reference) for r in mine],
                "hypervolume_median": statistics.median(volume(r, reference) for r in mine),
                "best_accuracy_median": statistics.median(r.best_accuracy() for r in mine),
            }
            if pruner == "none":
                row["false_stops"] = [f"{s}/{n}" for s, n in stops]
            rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    none, pareto = rows
    print(f"\n{args.spec.name}, {args.trials} trials, {args.seeds} seeds (medians):")
    for row in rows:
        print(
            f"  pruner {row['pruner']:>6}: wall {row['wall_seconds_median']:.0f} s, "
            f"{row['complete_median']:.0f} complete + {row['pruned_median']:.0f} pruned, "
            f"HV {row['hypervolume_median']:.4f} {[round(v, 4) for v in row['hypervolume']]}, "
            f"best accuracy {row['best_accuracy_median']:.2%}"
        )
    speedup = none["wall_seconds_median"] / pareto["wall_seconds_median"]
    kept = pareto["hypervolume_median"] / none["hypervolume_median"]
    print(
        f"  wall time ratio none/pareto {speedup:.2f}x, HV ratio pareto/none {kept:.3f}, "
        f"false stops of the unpruned front: {', '.join(none['false_stops'])}"
    )


if __name__ == "__main__":
    main()

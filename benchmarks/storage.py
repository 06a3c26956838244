"""Storage throughput with many workers, how long `hpo best` takes on a big study, and how long
a redraw of the dashboard figures takes.

    uv run python benchmarks/storage.py [--pg postgresql://postgres@127.0.0.1:5432]
        [--workers 1,2,4,8] [--trials 200] [--best-trials 10000] [--repeats 5]
        [--figure-trials 10,300,1000]

Part 1: W worker processes (the real worker loop, heartbeat on, Random sampler) share one study
whose objective does nothing, on SQLite (a temp file) and PostgreSQL (a temp database, dropped
afterwards). Trials per second = COMPLETE trials / (last completion - first start), read from
the database, so process start-up is not counted. Part 2: a study with --best-trials COMPLETE
trials (params and user attributes like real trials, bulk-inserted), then the wall time of the
real `hpo best` command (a fresh process, as people run it) and of the query alone. Part 3: the
redraw a worker makes as trials end (`hpo.present.figures.publish`: read every trial, save nine
figures) on SQLite studies of --figure-trials such trials, median of the repeats after a first,
warm-up one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import psycopg  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from hpo.core import results  # noqa: E402
from hpo.core.trial_attrs import (  # noqa: E402
    CPU_MODEL_ATTR,
    DATASET_ATTR,
    FINAL_TRAIN_LOSS_ATTR,
    FOLD_MAX_ABS_DIFF_ATTR,
    FOLD_REPORT_ATTR,
    FUSED_EAGER_ATTR,
    LATENCY_ATTR,
    LATENCY_BACKEND_ATTR,
    LATENCY_DEVICE_ATTR,
    N_FOLDED_ATTR,
    N_KEPT_ATTR,
    N_PARAMS_ATTR,
    SPEEDUP_ATTR,
    TEST_ACCURACY_ATTR,
    THREADS_ATTR,
    TORCH_VERSION_ATTR,
    TRAIN_IMAGES_PER_SECOND_ATTR,
    TRAIN_SECONDS_ATTR,
    UNFUSED_EAGER_ATTR,
    VAL_ACCURACY_ATTR,
    WORKER_ATTR,
)
from hpo.run.worker import work_until_target  # noqa: E402
from hpo.store import queries, tables  # noqa: E402
from hpo.store.connect import StoredStudy, load_study, open_storage  # noqa: E402

DIRECTIONS = ["maximize", "minimize"]


def noop(trial: optuna.Trial) -> tuple[float, float]:
    """An objective that only asks for params: what is left is the storage's cost."""
    lr = trial.suggest_float("lr", 1e-3, 0.2, log=True)
    trial.suggest_categorical("optimizer", ["nesterov", "adam", "adamw"])
    return lr, 1.0 / lr


def worker_main(url: str, name: str, target: int, gate: Path) -> None:
    """One worker process of part 1: connect, say ready, wait for the gate, work."""
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stored = load_study(open_storage(url), name)
    stored.study.sampler = optuna.samplers.RandomSampler(seed=secrets.randbelow(2**31))
    (gate.parent / f"ready-{os.getpid()}").touch()
    while not gate.exists():  # all workers start together, after their imports
        time.sleep(0.01)
    work_until_target(stored, noop, target)


def throughput(url: str, workers: int, target: int, folder: Path) -> float:
    """Trials per second of `workers` processes finishing a `target`-trial no-op study."""
    name = f"bench-{workers}-{secrets.token_hex(3)}"
    optuna.create_study(storage=open_storage(url), study_name=name, directions=DIRECTIONS)
    gates = Path(tempfile.mkdtemp(dir=folder))
    command = [sys.executable, __file__, "--worker", url, name, str(target), str(gates / "go")]
    processes = [subprocess.Popen(command) for _ in range(workers)]
    while len(list(gates.glob("ready-*"))) < workers:
        if any(p.poll() for p in processes):
            raise SystemExit(f"a worker failed on {name}")
        time.sleep(0.05)
    (gates / "go").touch()
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a worker failed on {name}")
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    return len(done) / span.total_seconds()


# --- part 2: a big study --------------------------------------------------------------------

PARAMS = {
    "model": CategoricalDistribution(["vgg", "resnet", "simple_cnn"]),
    "norm": CategoricalDistribution(["batch", "group", "layer", "instance", "none"]),
    "optimizer": CategoricalDistribution(["nesterov", "sgd_momentum", "adamw", "adam"]),
    "lr": FloatDistribution(1e-3, 0.2, log=True),
    "scheduler": CategoricalDistribution(["onecycle", "cosine", "step", "lambda"]),
    "width": FloatDistribution(0.25, 2.0),
    "weight_decay": FloatDistribution(0.0, 1e-3),
    "label_smoothing": FloatDistribution(0.0, 0.2),
}


def user_attrs(rng: random.Random) -> dict[str, object]:
    """User attributes shaped like a real trial's (same keys, similar sizes)."""
    stats = {k: rng.random() for k in ("median_ms", "iqr_ms", "mean_ms", "std_ms", "p90_ms")}
    return {
        VAL_ACCURACY_ATTR: rng.random(),
        TEST_ACCURACY_ATTR: rng.random(),
        N_PARAMS_ATTR: rng.randrange(10_000, 2_000_000),
        TRAIN_SECONDS_ATTR: rng.random() * 100,
        TRAIN_IMAGES_PER_SECOND_ATTR: rng.random() * 1000,
        FINAL_TRAIN_LOSS_ATTR: rng.random(),
        FOLD_REPORT_ATTR: {
            "folded": [[f"features.{i}.conv", f"features.{i}.norm"] for i in range(4)]
        },
        N_FOLDED_ATTR: 4,
        N_KEPT_ATTR: 0,
        FOLD_MAX_ABS_DIFF_ATTR: rng.random() * 1e-6,
        DATASET_ATTR: "/data/cifar10-sample.npz",
        LATENCY_ATTR: {**stats, "loops": 50, "rounds": 3},
        UNFUSED_EAGER_ATTR: {**stats, "loops": 50, "rounds": 3},
        FUSED_EAGER_ATTR: {**stats, "loops": 50, "rounds": 3},
        SPEEDUP_ATTR: 1 + rng.random(),
        LATENCY_BACKEND_ATTR: "eager (torch 2.x)",
        LATENCY_DEVICE_ATTR: "cpu",
        THREADS_ATTR: 1,
        TORCH_VERSION_ATTR: "2.x",
        CPU_MODEL_ATTR: "some CPU",
        WORKER_ATTR: "host:1234",
    }


def populate(url: str, name: str, n: int, seed: int = 0) -> None:
    """A study with `n` COMPLETE trials, written with bulk INSERTs (add_trial takes minutes)."""
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, directions=DIRECTIONS)
    rng = random.Random(seed)
    study_id = StoredStudy.of(study, storage).study_id
    start = datetime(2025, 1, 1)
    chunk = 1000
    with storage.engine.begin() as connection:
        base = connection.execute(select(func.coalesce(func.max(tables.trials.c.trial_id), 0)))
        base = base.scalar_one()
        for first in range(0, n, chunk):
            numbers = range(first, min(n, first + chunk))
            rows = [
                {
                    "trial_id": base + number + 1,
                    "number": number,
                    "study_id": study_id,
                    "state": TrialState.COMPLETE,
                    "datetime_start": start + timedelta(minutes=number),
                    "datetime_complete": start + timedelta(minutes=number + 1),
                }
                for number in numbers
            ]
            connection.execute(tables.trials.insert(), rows)
            values, params, attrs = [], [], []
            for number in numbers:
                accuracy = rng.random()
                latency = 0.2 + accuracy + 2 * rng.random()  # accuracy costs latency, roughly
                for objective, value in enumerate((accuracy, latency)):
                    values.append(
                        {
                            "trial_id": base + number + 1,
                            "objective": objective,
                            "value": value,
                            "value_type": tables.TrialValueType.FINITE,
                        }
                    )
                for key, dist in PARAMS.items():
                    if isinstance(dist, CategoricalDistribution):
                        internal = float(rng.randrange(len(dist.choices)))
                    else:
                        internal = rng.uniform(dist.low, dist.high)
                    params.append(
                        {
                            "trial_id": base + number + 1,
                            "param_name": key,
                            "param_value": internal,
                            "distribution_json": optuna.distributions.distribution_to_json(dist),
                        }
                    )
                for key, value in user_attrs(rng).items():
                    attrs.append(
                        {"trial_id": base + number + 1, "key": key, "value_json": json.dumps(value)}
                    )
            connection.execute(tables.trial_values.insert(), values)
            connection.execute(tables.trial_params.insert(), params)
            connection.execute(tables.trial_user_attributes.insert(), attrs)
        if connection.dialect.name == "postgresql":
            # IDs were given explicitly: move the sequence past them.
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence('trials', 'trial_id'), :last)"),
                {"last": base + n},
            )
    storage.engine.dispose()


def time_best(url: str, name: str, repeats: int) -> tuple[float, float, int]:
    """Median wall time of the `hpo best` command and of its query alone; front size."""
    command = [sys.executable, "-m", "hpo", "best", "--storage", url, "--study-name", name]
    cli = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run([*command, "--format", "json"], capture_output=True, cwd=ROOT)
        cli.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(result.stderr.decode())
    front_size = len(json.loads(result.stdout))
    query = []
    for _ in range(repeats):
        started = time.perf_counter()
        stored = load_study(open_storage(url, create=False), name)
        results.pareto_front(queries.completed(stored))
        query.append(time.perf_counter() - started)
    return statistics.median(cli), statistics.median(query), front_size


def time_figures(url: str, name: str, repeats: int) -> float:
    """Median wall time of one redraw of the study's dashboard figures (after a warm-up one)."""
    from hpo.present.figures import publish

    stored = load_study(open_storage(url, create=False), name)
    publish(stored)  # imports plotly and optuna-dashboard
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        publish(stored)
        times.append(time.perf_counter() - started)
    stored.storage.engine.dispose()
    return statistics.median(times)


def time_import(repeats: int) -> float:
    """Median wall time of a bare `hpo --help`: the start-up part of any command."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hpo", "--help"], capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_pg_database(server: str) -> str:
    name = f"hpo_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_pg_database(server: str, name: str) -> None:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server (a temporary database is made there and dropped)",
    )  # fmt: skip
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts of part 1")
    parser.add_argument("--trials", type=int, default=200, help="trials per throughput run")
    parser.add_argument(
        "--best-trials", type=int, default=10_000, help="trials of the study `hpo best` reads"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timings of part 3 (median)")
    parser.add_argument(
        "--figure-trials", default="10,300,1000", help="study sizes of part 3, comma-separated"
    )
    parser.add_argument("--skip-throughput", action="store_true", help="skip part 1")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    folder = Path(tempfile.mkdtemp(prefix="hpo-bench-"))
    database = make_pg_database(args.pg)
    urls = {"sqlite": f"sqlite:///{folder / 'bench.db'}", "postgresql": f"{args.pg}/{database}"}
    try:
        print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        if not args.skip_throughput:
            counts = [int(w) for w in args.workers.split(",")]
            print(f"\nno-op trials per second ({args.trials} trials per run, heartbeat on)")
            print(f"{'workers':>8} {'sqlite':>10} {'postgresql':>12}")
            for workers in counts:
                row = [throughput(urls[b], workers, args.trials, folder) for b in urls]
                print(f"{workers:>8} {row[0]:>10.1f} {row[1]:>12.1f}", flush=True)

        print(f"\n`hpo best` on a study with {args.best_trials:,} COMPLETE trials (median of "
              f"{args.repeats})")  # fmt: skip
        print(f"{'storage':>10} {'command s':>10} {'query s':>9} {'front':>6}")
        for backend, url in urls.items():
            populate(url, "big", args.best_trials)
            cli, query, front = time_best(url, "big", args.repeats)
            print(f"{backend:>10} {cli:>10.2f} {query:>9.2f} {front:>6}", flush=True)
        print(f"start-up alone (`hpo --help`): {time_import(args.repeats):.2f} s")

        print(f"\ndashboard figures, one redraw on SQLite (median of {args.repeats})")
        print(f"{'trials':>8} {'seconds':>8}")
        for n in (int(v) for v in args.figure_trials.split(",")):
            url = f"sqlite:///{folder / f'figures-{n}.db'}"
            populate(url, "figures", n)
            print(f"{n:>8} {time_figures(url, 'figures', args.repeats):>8.2f}", flush=True)
    finally:
        drop_pg_database(args.pg, database)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
    else:
        main()

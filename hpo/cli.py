"""`hpo` command line: thin wrappers that parse, call the service modules, and print."""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from hpo.core.db_limits import name_problem, shorten
from hpo.core.errors import HpoError, StorageError, find_in_chain
from hpo.core.trial_attrs import LATENCY_MS_ATTR
from hpo.present.output import Format, SummaryFormat, print_studies, print_summary, print_trials
from hpo.store.url import DEFAULT_STORAGE


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit (2 = bad input)."""
    sys.stderr.write(f"hpo: error: {message}\n")
    raise typer.Exit(code)


@contextmanager
def _usage_errors_in_one_line() -> Iterator[None]:
    """Click's usage errors (a bad option value, a missing option) as one line, exit 2.

    Typer would draw them as a box of 5-6 lines; every other error is one line already.
    """
    try:
        yield
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise  # `hpo` or `hpo db` without a command: the help, as Typer shows it
        ctx = getattr(exc, "ctx", None)
        where = f"; see {ctx.command_path} --help" if ctx is not None else ""
        # Typer words a failed conversion "Value error, ..."; the rest of its message says it.
        message = " ".join(exc.format_message().replace("Value error, ", "").split()).rstrip(".")
        fail(f"{message}{where}", exc.exit_code)


class _OneLineErrors(TyperGroup):
    """The command group, with usage errors in the same one-line format as every other error."""

    def make_context(self, info_name: str | None, args: list[str], *a: Any, **kw: Any) -> Any:
        with _usage_errors_in_one_line():
            return super().make_context(info_name, args, *a, **kw)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_in_one_line(), _errors_as_exit_codes(ctx):
            return super().invoke(ctx)


# Where a command's --storage value is kept for the error translation (click shares `meta`
# between a group's context and its commands').
_STORAGE_META = "hpo.storage"
# Set when that value came from $HPO_STORAGE: its errors then name the variable.
_STORAGE_FROM_ENV_META = "hpo.storage_from_env"
STORAGE_ENV = "HPO_STORAGE"


def _remember_storage(ctx: typer.Context, value: str) -> str:
    ctx.meta[_STORAGE_META] = value
    source = ctx.get_parameter_source("storage")
    ctx.meta[_STORAGE_FROM_ENV_META] = getattr(source, "name", None) == "ENVIRONMENT"
    return value


@contextmanager
def _errors_as_exit_codes(ctx: Any) -> Iterator[None]:
    """Every command's errors as one line and an exit code: bad input (HpoError) exits 2; a
    trial that crashed or a database that stayed away exits 1 (not bad input); anything else
    is a bug and keeps its traceback."""
    try:
        yield
    except HpoError as exc:
        from_env = isinstance(exc, StorageError) and ctx.meta.get(_STORAGE_FROM_ENV_META)
        fail(f"{STORAGE_ENV}: {exc}" if from_env else str(exc))
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise  # Typer's own endings (--help, an exit code, a usage error): nothing to translate
    except Exception as exc:
        _fail_on_trial_error(exc, ctx.meta.get(_STORAGE_META, DEFAULT_STORAGE))


app = typer.Typer(
    cls=_OneLineErrors,
    help="Hyperparameter optimization for CIFAR CNNs: validation accuracy vs fused-inference "
    "latency, in an Optuna study stored in SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    help="SQL helpers for people who query the study database directly.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
# Piped output gets a wide fixed width so tables are not squeezed to 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
# Progress and notes go to stderr, so --format json output on stdout stays parseable.
notes = Console(stderr=True, soft_wrap=True)

StorageOption = Annotated[
    str,
    typer.Option(
        "--storage",
        envvar=STORAGE_ENV,
        show_envvar=True,
        help="Database URL, e.g. sqlite:///hpo.db or postgresql://user:pass@host:5432/db.",
        callback=_remember_storage,
    ),
]


def _study_name(name: str | None) -> str | None:
    """A study name every supported database can store (checked before any lookup or write)."""
    if name is not None and (problem := name_problem(name)):
        raise typer.BadParameter(f"{shorten(name)} {problem}")
    return name


StudyNameOption = Annotated[
    str, typer.Option("--study-name", help="Name of the study.", callback=_study_name)
]
FormatOption = Annotated[
    Format, typer.Option("--format", help="table for people; json or csv for programs.")
]
SummaryFormatOption = Annotated[
    SummaryFormat, typer.Option("--format", help="table for people; json for programs.")
]
ArtifactsOption = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        envvar="HPO_ARTIFACTS",
        show_envvar=True,
        help="Folder of the trials' stored models (default: next to a SQLite file, DB.artifacts).",
    ),
]
ModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--models",
        envvar="HPO_MODELS",
        show_envvar=True,
        help="A folder of model files or a module this process may import a model factory from "
        "(repeatable; HPO_MODELS: space-separated). A factory named only by the database is "
        "never imported.",
    ),
]
TrialOption = Annotated[int, typer.Option("--trial", min=0, help="Trial number to export.")]


def _out_folder(value: str) -> Path:
    """The --out folder; an empty one (an unset shell variable) would write into the current
    folder, and `-` is no folder."""
    if not value.strip():
        raise typer.BadParameter("empty; give the folder to write into")
    if value == "-":
        # Commonly standard output, which cannot hold several files: a folder named - would
        # surprise whoever meant that.
        raise typer.BadParameter("'-' is not a folder; the command writes several files")
    return Path(value)


OutOption = Annotated[
    Path,
    typer.Option(
        "--out", help="Folder to write into (created).", parser=_out_folder, metavar="PATH"
    ),
]


# Options shared by `run` and `create` (same spec, same overrides).
def _given_path(value: str) -> Path:
    """A path given on the command line; an empty one (an unset shell variable) would be read
    as the current folder."""
    if not value.strip():
        raise typer.BadParameter("empty; give a path")
    return Path(value)


SpecArgument = Annotated[
    Path,
    typer.Argument(metavar="SPEC", help="Study spec (TOML).", parser=_given_path),
]
StudyNameOverride = Annotated[
    str | None,
    typer.Option("--study-name", help=r"Override \[study] name.", callback=_study_name),
]
NTrialsOverride = Annotated[
    int | None, typer.Option("--n-trials", min=1, help=r"Override \[study] n_trials (total).")
]
DataOverride = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help=r"Dataset .npz (keras layout); overrides \[data] dataset.",
        parser=_given_path,
        metavar="PATH",
    ),
]
SetOverrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a spec value: section.key=value, or section.table.key=value (repeatable).",
    ),
]


def _warn(message: str) -> None:
    notes.print(f"hpo: warning: {message}", markup=False, highlight=False)


def _note(message: str) -> None:
    notes.print(f"hpo: {message}", markup=False, highlight=False)


def _flag_values(
    study_name: str | None, n_trials: int | None, data: Path | None
) -> dict[str, object]:
    """The spec values set by flags (applied after --set), so the stored spec shows them."""
    values = {"study.name": study_name, "study.n_trials": n_trials, "data.dataset": data}
    return {key: str(v) if isinstance(v, Path) else v for key, v in values.items() if v is not None}


@app.command()
def run(
    spec_path: SpecArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    study_name: StudyNameOverride = None,
    n_trials: NTrialsOverride = None,
    data: DataOverride = None,
    overrides: SetOverrides = None,
) -> None:
    """Create the study (or resume it) and run trials until it has n_trials in total."""
    from hpo.present.figures import FigureRefresh
    from hpo.run.runner import run_study
    from hpo.train.data import check_data_path

    if data is not None:
        check_data_path(data)  # blamed on --data, not on the spec's [data] dataset
    values = _flag_values(study_name, n_trials, data)
    figures = FigureRefresh(_warn)
    summary = run_study(spec_path, overrides or [], storage, console, values, figures)
    figures.flush()
    if summary.front:
        print_trials(console, summary.front, Format.table, "Pareto front")


@app.command()
def create(
    spec_path: SpecArgument,
    storage: StorageOption = DEFAULT_STORAGE,
    study_name: StudyNameOverride = None,
    n_trials: NTrialsOverride = None,
    data: DataOverride = None,
    overrides: SetOverrides = None,
) -> None:
    """Create the study (idempotent) with the spec stored in it, for `hpo worker`; no training."""
    from hpo.run.runner import create_or_update_study
    from hpo.train.data import check_data_path

    if data is not None:
        check_data_path(data)  # blamed on --data, not on the spec's [data] dataset
    from hpo.store.url import safe_url

    values = _flag_values(study_name, n_trials, data)
    summary = create_or_update_study(spec_path, overrides or [], storage, values)
    state = summary.counts
    if summary.given < summary.target:
        _note(
            f"study {summary.name} keeps its target of {summary.target} trials (given: "
            f"{summary.given}); a target is only raised"
        )
    console.print(
        f"study {summary.name} ready in {safe_url(storage)}: target {summary.target} trials, "
        f"{state.finished} finished, {state.running} running, {state.waiting} waiting"
    )


@app.command()
def worker(
    storage: StorageOption = DEFAULT_STORAGE,
    study_name: StudyNameOption = ...,  # type: ignore[assignment]
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset .npz on this machine; replaces the stored spec's data.dataset here.",
            parser=_given_path,
            metavar="PATH",
        ),
    ] = None,
    models: ModelsOption = None,
) -> None:
    """Join a study made by `hpo create` and run trials until the study's total is reached.

    A trial whose worker dies (no heartbeat for HPO_GRACE_PERIOD s, default 60; beats every
    HPO_HEARTBEAT_INTERVAL s, default 20) is marked FAIL and retried once; database outages
    are retried for HPO_DB_RETRY_SECONDS (default 120).
    """
    import secrets

    from hpo.present.figures import FigureRefresh
    from hpo.run.runner import join_study
    from models.user import ModelSources

    sources = ModelSources.parse(models or [])
    # A random seed salt: workers started together must not draw the same configurations.
    salt = secrets.randbelow(2**31)
    figures = FigureRefresh(_warn)
    summary = join_study(storage, study_name, data, console, salt, figures, sources)
    figures.flush()
    done = summary.worker
    progress = f"study {study_name} has {done.finished} of {done.target} finished"
    if done.all_dropped:
        # Exit 1, not 0: this worker added nothing, most likely because its heartbeat did not
        # reach the database in time (paused, or cut off) and the others took it for dead.
        fail(
            f"worker ran {done.trials_run} trial(s) and every result was dropped, as other "
            f"workers had marked them FAIL, taking this worker for dead (see its heartbeat "
            f"warnings); {progress}",
            code=1,
        )
    kept = f" ({done.dropped} dropped)" if done.dropped else ""
    console.print(f"worker ran {done.trials_run} trial(s){kept}; {progress}")


@app.command()
def best(
    ctx: typer.Context,
    storage: StorageOption = DEFAULT_STORAGE,
    study_name: StudyNameOption = ...,  # type: ignore[assignment]
    fmt: FormatOption = Format.table,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(
            "--max-latency-ms",
            help="Latency budget: list the most accurate trials within it instead of the "
            "front (in ms; a ratio with --rank-by latency_ratio).",
        ),
    ] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Show at most K trials.")] = None,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="Table: add test accuracy and every other param (default: fits 80 columns).",
        ),
    ] = False,
    rank_by: Annotated[
        str,
        typer.Option(
            "--rank-by",
            help="latency_ms, or latency_ratio (model/reference: comparable across machines; "
            "--max-latency-ms is then a ratio).",
        ),
    ] = LATENCY_MS_ATTR,
) -> None:
    """Print the Pareto front (accuracy vs latency), or the best trials under a latency budget."""
    from hpo.core.results import RANK_KEYS
    from hpo.store import queries
    from hpo.store.connect import check_made_by_hpo, load_study, open_storage

    if rank_by not in RANK_KEYS:
        fail(f"--rank-by: unknown value {rank_by!r}; allowed: {', '.join(RANK_KEYS)}")
    if max_latency_ms is not None and not 0 < max_latency_ms < math.inf:
        fail(f"--max-latency-ms {max_latency_ms:g}: expected a budget, a finite number > 0")
    stored = load_study(open_storage(storage, create=False, read_only=True), study_name)
    check_made_by_hpo(stored.study)  # another program's values are not accuracy and latency
    chosen = queries.best(stored, max_latency_ms, rank_by)
    if not chosen:
        # Programs still get an empty list or header; people get the reason, and exit 1.
        if fmt != Format.table:
            print_trials(console, chosen, fmt, "")
        sys.stderr.write(f"hpo: {queries.why_nothing_chosen(stored, max_latency_ms, rank_by)}\n")
        raise typer.Exit(1)
    if max_latency_ms is None:
        title = f"Pareto front of {study_name}"
    else:
        title = f"{study_name}: most accurate with {rank_by} <= {max_latency_ms:g}"
    print_trials(console, chosen[:top] if top else chosen, fmt, title, wide=wide, rank_by=rank_by)
    if fmt == Format.table:
        from hpo.present.study_view import export_command, models_folder_note

        # The next step for people: the first row's model, as files.
        first = chosen[0].number
        from_env = bool(ctx.meta.get(_STORAGE_FROM_ENV_META))
        command = export_command(stored, first, two_lines=True, storage_from_env=from_env)
        note = models_folder_note(stored)
        console.file.write(f"\nmodel of trial {first}:\n  {command}\n")
        if note:
            console.file.write(f"  ({note})\n")


@app.command()
def studies(storage: StorageOption = DEFAULT_STORAGE, fmt: FormatOption = Format.table) -> None:
    """List the studies in a database with their trial counts."""
    from hpo.store.connect import open_storage
    from hpo.store.queries import study_overviews

    overviews = study_overviews(open_storage(storage, create=False, read_only=True))
    print_studies(console, overviews, fmt)


@app.command("models")
def list_models_command(fmt: FormatOption = Format.table) -> None:
    """List the model families with their parameter counts at the default width."""
    import models
    from hpo.present.output import print_models

    rows = []
    for name in models.list_models():
        net = models.build_model(name, norm="batch")
        rows.append(
            {
                "name": name,
                "params": models.count_parameters(net),
                "description": models.model_info(name).description,
            }
        )
    print_models(console, rows, fmt)


@app.command("spec-reference")
def spec_reference_command() -> None:
    """Print the spec reference (every key, default and allowed value) as Markdown."""
    from hpo.core.reference import spec_reference

    console.file.write(spec_reference())


@app.command()
def dashboard(
    storage: StorageOption = DEFAULT_STORAGE,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on. The dashboard has no login: keep it local."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 8080,
    artifacts: ArtifactsOption = None,
) -> None:
    """Watch the studies in optuna-dashboard (specs as notes, stored models as artifacts)."""
    from hpo.present.dashboard import LOCALHOST, DashboardPlan, serve
    from hpo.store.url import safe_url

    if not host.strip():
        # An empty host (an unset shell variable) would listen on every interface.
        fail(f"--host {host!r}: expected an address, e.g. {LOCALHOST} (0.0.0.0 for every one)")

    def ready(plan: DashboardPlan) -> None:
        where = plan.artifacts if plan.artifacts is not None else "none (set --artifacts)"
        console.print(
            f"optuna-dashboard at {plan.url} for {safe_url(storage)} "
            f"({len(plan.studies)} studies; models from {where}); Ctrl-C stops it"
        )
        console.file.flush()  # the server blocks next; whoever reads a pipe needs the URL now
        if host not in (LOCALHOST, "localhost", "::1"):
            notes.print(f"hpo: warning: listening on {host}: anyone who can reach it sees the data")

    serve(storage, host, port, artifacts, ready)


@app.command()
def report(
    storage: StorageOption = DEFAULT_STORAGE,
    study_name: StudyNameOption = ...,  # type: ignore[assignment]
    out: OutOption = ...,  # type: ignore[assignment]
    fmt: SummaryFormatOption = SummaryFormat.table,
) -> None:
    """Write an HTML report: Pareto front, hypervolume history, best trial per group."""
    from hpo.present.report import write_report
    from hpo.store.connect import check_made_by_hpo, load_study, open_storage

    stored = load_study(open_storage(storage, create=False, read_only=True), study_name)
    check_made_by_hpo(stored.study)
    files = write_report(stored, out)
    print_summary(console, files.as_dict(), fmt, f"report of {study_name}")


@app.command()
def export(
    storage: StorageOption = DEFAULT_STORAGE,
    study_name: StudyNameOption = ...,  # type: ignore[assignment]
    trial: TrialOption = ...,  # type: ignore[assignment]
    out: OutOption = ...,  # type: ignore[assignment]
    artifacts: ArtifactsOption = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset .npz for retraining, if the stored path is gone.",
            parser=_given_path,
            metavar="PATH",
        ),
    ] = None,
    fmt: SummaryFormatOption = SummaryFormat.table,
    models: ModelsOption = None,
) -> None:
    """Write a trial's folded model as TorchScript and ONNX, with a JSON model card."""
    from hpo.present.export import export_trial
    from hpo.store.artifacts import open_store
    from hpo.store.connect import load_study, open_storage
    from hpo.train.data import local_npz
    from models.user import ModelSources

    local_npz(data)  # a bad --data fails before the database is opened
    sources = ModelSources.parse(models or [])
    stored = load_study(open_storage(storage, create=False, read_only=True), study_name)
    store = open_store(storage, artifacts)
    result = export_trial(stored, trial, out, store, data, notify=notes.print, models=sources)
    summary = {**result.as_dict(), "source": result.card["source"], **result.card["checks"]}
    print_summary(console, summary, fmt, f"{study_name} trial {trial}")


@db_app.command("views")
def db_views(
    storage: StorageOption = DEFAULT_STORAGE, fmt: SummaryFormatOption = SummaryFormat.table
) -> None:
    """Create the SQL view hpo_trials (decoded params, one row per trial) in the database."""
    from hpo.store.connect import open_storage
    from hpo.store.views import VIEW_NAME, create_views

    columns = create_views(open_storage(storage, create=False).engine)
    if fmt == SummaryFormat.json:
        print_summary(
            console, {"view": VIEW_NAME, "columns": [c.as_dict() for c in columns]}, fmt, ""
        )
        return
    console.print(f"created view {VIEW_NAME}: {', '.join(c.name for c in columns)}")
    console.print(
        f"try: SELECT * FROM {VIEW_NAME} WHERE latency_ms < 2 ORDER BY accuracy DESC LIMIT 5"
    )


def quiet_libraries() -> None:
    """Keep Optuna's per-trial lines out of the output: the worker prints its own, one a trial."""
    import logging

    import optuna

    from hpo.store.optuna_internals import FAILED_TRIAL_LOG_PREFIX, OPTIMIZE_LOGGER

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    failed_trials = logging.getLogger(OPTIMIZE_LOGGER)
    if not any(isinstance(f, _FailedTrialRecords) for f in failed_trials.filters):
        failed_trials.addFilter(_FailedTrialRecords(FAILED_TRIAL_LOG_PREFIX))


class _FailedTrialRecords:
    """Drops Optuna's "Trial N failed ..." records (with their tracebacks)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def filter(self, record: object) -> bool:
        return not str(getattr(record, "msg", "")).startswith(self.prefix)


def _fail_on_trial_error(exc: Exception, storage: str) -> NoReturn:
    """One line (exit 1) for a trial that crashed or a database that stayed away; else re-raise.

    Neither is bad input, hence exit 1, not 2.
    """
    from hpo.run.failures import TrialCrashed
    from hpo.store.resilience import is_transient, outage_message

    if is_transient(exc):
        fail(outage_message(exc, storage), code=1)
    if isinstance(exc, TrialCrashed):
        fail(str(exc), code=1)
    raise exc


def _help_in_paragraphs(*apps: typer.Typer) -> None:
    """Each command's help from its docstring, one line per paragraph: Typer keeps the line
    breaks of every paragraph after the first, which then read ragged at any other width."""
    for each in apps:
        for info in each.registered_commands:
            doc = info.help or inspect.getdoc(info.callback)
            if doc:
                info.help = "\n\n".join(" ".join(part.split()) for part in doc.split("\n\n"))


_help_in_paragraphs(app, db_app)


def main() -> None:
    """Console-script entry point."""
    try:
        from hpo.run.signals import sigterm_as_interrupt

        quiet_libraries()
        # SIGTERM ends every command like Ctrl-C: one line, exit 143 (a worker turns it into
        # FAIL `interrupted` for its running trial), also while it is still starting.
        with sigterm_as_interrupt():
            app()
    except (KeyboardInterrupt, SystemExit) as exc:
        # Typer turns Ctrl-C into exit code 130 (SystemExit chained to the KeyboardInterrupt);
        # find the interrupt to tell SIGTERM (143) from Ctrl-C (130).
        interrupt = find_in_chain(exc, lambda e: isinstance(e, KeyboardInterrupt))
        if interrupt is None:
            raise
        from hpo.run.signals import Terminated, interrupted_trial, queued_again

        number, again = interrupted_trial(interrupt), queued_again(interrupt)
        stopped = "" if number is None else f"; trial {number} was marked FAIL (interrupted)"
        if again is not None:
            stopped += f" and its configuration queued again as trial {again}"
        sys.stderr.write(f"hpo: interrupted{stopped}\n")
        sys.exit(143 if isinstance(interrupt, Terminated) else 130)

"""Study specs: TOML -> validated, typed objects. Every error names the key and what is allowed."""

from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from hpo.core.db_limits import blank, name_problem, shorten, text_problem
from hpo.core.errors import SpecError
from hpo.core.model_ref import FORMS, is_model_ref, parse_model_ref
from hpo.core.names import DEVICES, LATENCY_BACKENDS, PRUNERS, SAMPLERS
from hpo.core.params import (
    BY_NAME,
    CATALOG,
    RESERVED_MODEL_ARGS,
    Hyperparameter,
    factory_may_name,
    model_param,
)
from hpo.core.results import RESULT_NAMES

# Seeds are what numpy's generators take: 0 .. 2**32 - 1.
SEED_LIMIT = 2**32
# Optuna numbers trials in a 32-bit SQL integer; a target is only ever raised, so a typo here
# would stay.
MAX_TRIALS = 2**31 - 1
# The most intra-op threads a new study's latency measurement may use: the largest machines
# have several hundred hardware threads, and pools of many thousands crash ONNX Runtime (a
# segfault at 100,000) or hang it.
MAX_THREADS = 1024


class _Section(BaseModel):
    # inf passes `gt=0` and is stored as `Infinity`, which is not JSON (PostgreSQL refuses it).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _none_spelled_out(cls, data: Any) -> Any:
        """TOML has no null: a key that may be none takes the string "none" (`seed = "none"`,
        `--set study.seed=none`), so a default can be cleared from a spec or the command line."""
        if not isinstance(data, dict):
            return data
        return {
            key: None if _may_be_none(cls.model_fields.get(key)) and _says_none(value) else value
            for key, value in data.items()
        }


def _may_be_none(field: FieldInfo | None) -> bool:
    return field is not None and type(None) in get_args(field.annotation)


def _says_none(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "none"


class StudySection(_Section):
    """[study]: what the study is called, how many trials in total, which sampler."""

    name: str = Field(min_length=1, description="study name in the database")
    n_trials: int = Field(
        10, ge=1, le=MAX_TRIALS, description="total trials across all runs and workers"
    )
    sampler: Literal[SAMPLERS] = Field("auto", description="auto = TPE (Optuna's default)")
    seed: int | None = Field(
        0, ge=0, lt=SEED_LIMIT, description="sampler seed; a single-worker study is reproducible"
    )
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        description="latency budget: an architecture whose probe is slower is never trained",
    )
    pruner: Literal[PRUNERS] = Field(
        "none",
        description="pareto = stop trials dominated on (accuracy so far, latency) at rungs",
    )
    pruner_eta: int = Field(
        3, ge=2, description="pareto pruner: the best 1/eta at a rung go on, and any undominated"
    )
    pruner_min_epochs: int = Field(
        1, ge=1, description="pareto pruner: first rung; rungs at min_epochs * eta**k epochs"
    )
    start_from_first: bool = Field(
        False,
        description="trial 0 takes each [search] list's first value and each range's first "
        "(default: its middle, geometric when log), [search.model_params] too, before the "
        "sampler proposes anything (not with the grid sampler)",
    )
    random_start: int | None = Field(
        None,
        ge=1,
        description="trials (the starting trial included) before tpe, gp, latency_aware and "
        "latency_joint propose from their model; default: each sampler's own (10). A short "
        "study wants fewer",
    )


class DataSection(_Section):
    """[data]: which images, how many, and the validation split."""

    dataset: str = Field(
        "cifar10", description="cifar10, cifar100, or a path to a keras-layout .npz"
    )
    root: str = Field("data", description="where torchvision datasets are cached/downloaded")
    train_size: int | None = Field(
        None, ge=1, description="train on a random subset (cheap trials)"
    )
    val_size: int = Field(1000, ge=1, description="images carved from train for validation")
    split_seed: int = Field(
        0, ge=0, lt=SEED_LIMIT, description="seed of the validation split and the subset"
    )


class TrainSection(_Section):
    """[train]: the training run of each trial."""

    epochs: int = Field(5, ge=1, description="epochs per trial")
    device: Literal[DEVICES] = Field("auto", description="auto = CUDA when present, else CPU")
    # torch's generators take any 64-bit seed, signed or not.
    seed: int = Field(
        0,
        ge=-(2**63),
        lt=2**64,
        description="seed of weights init, batch order and augmentation",
    )
    augment: bool = Field(
        True, description="random translation ([search] translate pixels) + horizontal flip"
    )
    eval_batch_size: int = Field(1000, ge=1, description="batch size for accuracy evaluation")


class LatencySection(_Section):
    """[latency]: how single-image inference latency of the folded network is measured."""

    backend: Literal[LATENCY_BACKENDS] = Field(
        "auto",
        description="runtime that is timed; auto = onnxruntime on CPU, eager on CUDA "
        "(the fastest measured by benchmarks/latency.py)",
    )
    threads: int = Field(
        1, ge=1, description=f"intra-op threads while timing (a new study: at most {MAX_THREADS})"
    )
    warmup: int = Field(20, ge=0, description="untimed runs before timing")
    loops: int = Field(50, ge=5, description="timed runs per round")
    max_rounds: int = Field(10, ge=1, description="rounds at most (stops early when stable)")
    target_iqr: float = Field(0.05, gt=0, description="stop once IQR/median is below this")
    max_seconds: float = Field(
        5.0,
        gt=0,
        description="time cap for one measurement, warmup included (checked after each round)",
    )


SECTIONS: dict[str, type[_Section]] = {
    "study": StudySection,
    "data": DataSection,
    "train": TrainSection,
    "latency": LatencySection,
}


@dataclass(frozen=True)
class Fixed:
    """A hyperparameter fixed to one value."""

    value: Any


@dataclass(frozen=True)
class Choice:
    """A hyperparameter chosen from a list."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """A numeric hyperparameter drawn from [low, high] (log scale when `log`)."""

    low: float
    high: float
    log: bool
    step: float | None = None
    # The value of trial 0 under `[study] start_from_first` (None: the range's middle).
    first: float | None = None


Domain = Fixed | Choice | Range


@dataclass(frozen=True)
class Spec:
    """A validated study spec; `raw` is the TOML as given (after overrides), stored in the study."""

    study: StudySection
    data: DataSection
    train: TrainSection
    latency: LatencySection
    search: dict[str, Domain]
    raw: dict[str, Any]
    # [search.model_params]: a user model's own hyperparameters, in the spec's order.
    model_params: dict[str, Domain] = field(default_factory=dict)

    def domain(self, name: str) -> Domain:
        """The spec's domain for `name`, or the catalog default fixed."""
        return self.search.get(name, Fixed(BY_NAME[name].default))

    @property
    def model_ref(self) -> str | None:
        """The factory the spec's model names (`FILE.py:NAME`, ...), or None for a family."""
        model = self.search.get("model")
        return model.value if isinstance(model, Fixed) and is_model_ref(model.value) else None

    def model_hyperparameters(self) -> list[tuple[Hyperparameter, Domain]]:
        """Each of [search.model_params] as a hyperparameter with its domain."""
        written = self.raw["search"][MODEL_PARAMS] if self.model_params else {}
        return [(model_param(name, written[name]), d) for name, d in self.model_params.items()]


def _parse_domain(param: Hyperparameter, value: Any, where: str | None = None) -> Domain:
    where = where or f"[search] {param.name}"
    if isinstance(value, dict):
        if param.kind == "categorical":
            raise SpecError(
                f"{where}: is a choice; give one value or a list of values, not a range"
            )
        unknown = set(value) - {"low", "high", "log", "step", "first"}
        if unknown or not {"low", "high"} <= set(value):
            raise SpecError(
                f"{where}: a range needs keys low and high (optional: log, step, first); "
                f"got {', '.join(sorted(value))}"
            )
        low, high = value["low"], value["high"]
        for bound in (low, high):
            if problem := param.check_value(bound):
                raise SpecError(f"{where}: {problem}")
        if low >= high:
            raise SpecError(f"{where}: low ({low}) must be below high ({high})")
        log = value.get("log", param.log)
        if not isinstance(log, bool):
            raise SpecError(f"{where}: log must be true or false, got {log!r}")
        if log and low <= 0:
            raise SpecError(f"{where}: a log range needs low > 0, got {low}")
        step = value.get("step")
        if step is not None and (
            isinstance(step, bool)
            or not isinstance(step, int | float)
            or not 0 < step < math.inf
            or log
        ):
            by_default = f" ({param.name} is log by default)" if log and "log" not in value else ""
            raise SpecError(
                f"{where}: step must be a positive finite number and needs log = false{by_default}"
            )
        if step is not None and param.kind == "int" and not float(step).is_integer():
            raise SpecError(f"{where}: an integer range needs a whole step, got {step!r}")
        if step is not None and (problem := _off_the_steps(low, high, step)):
            raise SpecError(f"{where}: {problem}")
        first = value.get("first")
        if first is not None and (param.check_value(first) is not None or not low <= first <= high):
            raise SpecError(f"{where}: first must be a value in [{low}, {high}], got {first!r}")
        if step is not None and first is not None and _off_the_steps(low, first, step):
            nearest = low + round((first - low) / step) * step
            raise SpecError(
                f"{where}: first ({first}) is not on the range's steps of {step} from {low}; "
                f"e.g. {nearest:.12g}"
            )
        return Range(low=low, high=high, log=log, step=step, first=first)
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{where}: the list of choices is empty")
        for item in value:
            if problem := param.check_value(item):
                raise SpecError(f"{where}: {problem}")
        if len(set(map(_choice_key, value))) != len(value):
            raise SpecError(f"{where}: the list of choices has duplicates")
        return Choice(tuple(value))
    if problem := param.check_value(value):
        raise SpecError(f"{where}: {problem}")
    return Fixed(value)


def _choice_key(value: Any) -> str:
    """A choice as duplicates compare: numbers by value (0 and 0.0 alike, as Python and Optuna
    compare them), anything else as written."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    return json.dumps(value)


def _off_the_steps(low: float, high: float, step: float) -> str:
    """Why `high` is not `low` plus whole steps ('' when it is). Optuna would otherwise move
    high to the last step below it, with a warning, and search another range than written."""
    steps = (high - low) / step
    # Float steps (0.1) leave rounding dust in the quotient, far below this; a range off by a
    # real fraction of a step is refused however many steps it holds.
    if abs(steps - round(steps)) <= 1e-9:
        return ""
    whole = math.floor(steps)
    if whole < 1:
        return f"step {step} is wider than the range [{low}, {high}]"
    fits = [f"{low + k * step:.12g}" for k in (whole, whole + 1)]
    return (
        f"step {step} does not divide high - low ({high - low:.12g}); "
        f"make high {fits[0]} or {fits[1]}, or change the step"
    )


def parse_search(table: Any) -> dict[str, Domain]:
    """Validate the [search] table against the hyperparameter catalog."""
    if not isinstance(table, dict):
        raise SpecError("[search] must be a table")
    unknown = [key for key in table if key not in BY_NAME and key != MODEL_PARAMS]
    if unknown:
        allowed = ", ".join([*(p.name for p in CATALOG), MODEL_PARAMS])
        raise SpecError(f"[search] unknown key {unknown[0]!r}; allowed: {allowed}")
    search = {
        key: _parse_model(value) if key == "model" else _parse_domain(BY_NAME[key], value)
        for key, value in table.items()
        if key != MODEL_PARAMS
    }
    if problem := _family_problem(search):
        raise SpecError(problem)
    return search


MODEL_PARAMS = "model_params"
# What a model param's value or choice may be (what Optuna stores as a categorical choice).
_SCALARS = (str, int, float, bool)


def _parse_model(value: Any) -> Domain:
    """A family (or a list of them) as any choice, or one model factory."""
    if is_model_ref(value):
        parse_model_ref(value)
        return Fixed(value)
    if isinstance(value, list) and any(is_model_ref(item) for item in value):
        raise SpecError(
            '[search] model: a model factory is given alone (model = "nets/tiny.py:build"), '
            "not in a list"
        )
    try:
        return _parse_domain(BY_NAME["model"], value)
    except SpecError as exc:
        raise SpecError(f"{exc}; or a model factory: {FORMS}") from None


def parse_model_params(search: dict[str, Domain], table: Any) -> dict[str, Domain]:
    """Validate [search.model_params]: the named factory's own hyperparameters."""
    if not isinstance(table, dict):
        raise SpecError(f"[search] {MODEL_PARAMS} must be a table")
    model = search.get("model")
    if table and not (isinstance(model, Fixed) and is_model_ref(model.value)):
        raise SpecError(
            f"[search.{MODEL_PARAMS}] applies to a model factory only ([search] model = "
            f"{FORMS}); the built-in families take the [search] keys"
        )
    params: dict[str, Domain] = {}
    for name, value in table.items():
        where = f"[search.{MODEL_PARAMS}] {name}"
        if not name.isidentifier():
            raise SpecError(f"{where}: a parameter name must be a Python identifier")
        if not factory_may_name(name):
            taken = "an argument hpo passes" if name in RESERVED_MODEL_ARGS else "a [search] key"
            raise SpecError(f"{where}: the name is {taken}; rename the factory's parameter")
        values = value if isinstance(value, list) else [value]
        if not isinstance(value, dict) and not all(isinstance(v, _SCALARS) for v in values):
            raise SpecError(f"{where}: expected a value, a list of values or a range (low, high)")
        params[name] = _parse_domain(model_param(name, value), value, where)
    return params


def _family_problem(search: dict[str, Domain]) -> str | None:
    """Why a family option in [search] could never apply: no model of the spec takes it."""
    model = search.get("model", Fixed(BY_NAME["model"].default))
    names = model.values if isinstance(model, Choice) else (model.value,)
    for key in search:
        families = BY_NAME[key].families
        if families and is_model_ref(names[0]):
            return (
                f"[search] {key}: applies to the built-in families ({', '.join(families)}); "
                f"a model factory takes its own params from [search.{MODEL_PARAMS}]"
            )
        if families and not set(names) & set(families):
            which = (
                f"model {names[0]} has" if len(names) == 1 else f"models {', '.join(names)} have"
            )
            return (
                f"[search] {key}: {which} no {key} choice; {key} applies to {', '.join(families)}"
            )
    return None


def never_applying(search: dict[str, Domain]) -> dict[str, str]:
    """The conditional keys of [search] that could never apply, each with why: none of the
    values its parent can take makes it apply (momentum with only Adam, step_size without the
    step scheduler, ...). Searched, such a key searches nothing."""
    found = {}
    for key in search:
        condition = BY_NAME[key].condition
        parent = condition.key
        if parent is None or parent == "model":  # families: `_family_problem`
            continue
        domain = search.get(parent, Fixed(BY_NAME[parent].default))
        if isinstance(domain, Range):
            continue
        values = domain.values if isinstance(domain, Choice) else (domain.value,)
        if not any(condition({parent: value}) for value in values):
            given = ", ".join(str(v) for v in values)
            found[key] = (
                f"[search] {key}: never applies with {parent} = {given}; it applies when "
                f"{condition.describe()}"
            )
    return found


def _condition_problem(search: dict[str, Domain]) -> str | None:
    """Why a conditional key in [search] could never apply (`never_applying`), or None."""
    return next(iter(never_applying(search).values()), None)


def _section_error(name: str, section: type[_Section], exc: ValidationError) -> SpecError:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(section.model_fields)
        return SpecError(f"[{name}] unknown key {key!r}; allowed: {allowed}")
    if error["type"] == "literal_error":
        return SpecError(
            f"[{name}] {key}: unknown value {value!r}; allowed: "
            f"{error['ctx']['expected'].replace(' or ', ', ')}"
        )
    if error["type"] == "missing":
        return SpecError(f"[{name}] {key}: is required")
    field = section.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    none = ', or "none"' if _may_be_none(field) else ""
    return SpecError(f"[{name}] {key}: {error['msg'].lower()}{none} (got {shorten(value)})")


def _storable_problem(study: StudySection, raw: dict[str, Any]) -> str | None:
    """Why the spec could not be stored in every supported database, or None."""
    if problem := name_problem(study.name):
        return f"[study] name {shorten(study.name)} {problem}"
    # Optuna stores the spec as JSON (ASCII, escaped); `default=str` sizes any TOML date too.
    size = len(json.dumps(raw, default=str))
    if problem := text_problem(size):
        return f"the spec {problem}"
    return None


def validate(raw: dict[str, Any]) -> Spec:
    """Turn a raw spec dict into a `Spec`, or raise SpecError naming the first problem."""
    unknown = [key for key in raw if key not in SECTIONS and key != "search"]
    if unknown:
        allowed = ", ".join([*SECTIONS, "search"])
        raise SpecError(f"unknown section [{unknown[0]}]; allowed: {allowed}")
    sections: dict[str, _Section] = {}
    for name, section in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise SpecError(f"[{name}] must be a table")
        try:
            # Strict: "5" or true for a count, 2.0 for epochs, 1 for a switch are mistakes
            # to name, not values to convert (an int for a float is still taken).
            sections[name] = section.model_validate(table, strict=True)
        except ValidationError as exc:
            raise _section_error(name, section, exc) from None
    search = parse_search(raw.get("search", {}))
    model_params = parse_model_params(search, raw.get("search", {}).get(MODEL_PARAMS, {}))
    if problem := _storable_problem(sections["study"], raw):  # type: ignore[arg-type]
        raise SpecError(problem)
    raw = _nones_stored_as_null(raw)
    return Spec(**sections, search=search, raw=raw, model_params=model_params)  # type: ignore[arg-type]


def _nones_stored_as_null(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with each section key written as "none" (`_Section`) as null: the stored spec is
    read by SQL too (the view's latency budget), which must see no value, not a string."""
    resolved = dict(raw)
    for name, section in SECTIONS.items():
        table = raw.get(name)
        if isinstance(table, dict):
            resolved[name] = {
                key: None if _may_be_none(section.model_fields.get(key)) and _says_none(v) else v
                for key, v in table.items()
            }
    return resolved


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (or `section.table.key=value`, a key of a table inside the
    section); the value is read as TOML, or taken as a plain string."""
    path, sep, value_text = text.partition("=")
    keys = path.strip().split(".")
    if not sep or len(keys) < 2 or not all(keys):
        raise SpecError(
            f"--set {text!r}: expected section.key=value or section.table.key=value "
            "(e.g. train.epochs=1, search.model_params.channels=[8, 16])"
        )
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    return keys, value


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A copy of `raw` with each `section.key=value` text override applied, then each
    `section.key` -> value of `values` (typed values from command-line flags)."""
    result = copy.deepcopy(raw)
    pairs = [(*parse_override(text), text) for text in overrides]
    pairs += [(dotted.split("."), value, dotted) for dotted, value in (values or {}).items()]
    for keys, value, text in pairs:
        table = result
        # Tables on the way are made if missing, so one key of a table can be set alone.
        for depth, key in enumerate(keys[:-1], start=1):
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise SpecError(
                    f"--set {text!r}: {'.'.join(keys[:depth])} is not a table, so it has no key "
                    f"{keys[depth]!r}; set it whole ({'.'.join(keys[:depth])}=value)"
                )
        table[keys[-1]] = value
    return result


def with_values(spec: Spec, values: Mapping[str, Any]) -> Spec:
    """`spec` with some `section.key` values replaced (e.g. a local dataset path), validated."""
    return validate(apply_overrides(spec.raw, [], values))


def read_toml(path: Path) -> dict[str, Any]:
    """Read a spec file; a missing file or bad TOML is a SpecError naming the file."""
    try:
        # utf-8-sig: a byte-order mark, which some Windows editors write, is not TOML.
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at position "
            f"{exc.start}); TOML files are UTF-8: save it as UTF-8"
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: malformed TOML: {exc}") from None


def load_spec(
    path: Path, overrides: list[str] | None = None, values: Mapping[str, Any] | None = None
) -> Spec:
    """Read, override (`--set` texts, then typed `values`) and validate a spec file."""
    written = read_toml(path)
    raw = apply_overrides(written, overrides or [], values)
    try:
        spec = validate(raw)
        problem = new_spec_problem(spec)
    except SpecError as exc:
        problem = str(exc)
    if problem:
        raise SpecError(f"{_source_of_problem(path, written, raw)}: {problem}")
    return spec


def _source_of_problem(path: Path, written: dict[str, Any], given: dict[str, Any]) -> str:
    """Whom a problem of the spec `given` belongs to: the file, or, when the file as written is
    fine, the values given on the command line (`--set`, `--study-name`, ...)."""
    if given == written:
        return str(path)
    try:
        if new_spec_problem(validate(written)) is None:
            return f"{path} with the command line's values"
    except SpecError:
        pass
    return str(path)


def new_spec_problem(spec: Spec) -> str | None:
    """Why a spec given on the command line may not start a study, beyond `validate`'s rules,
    or None. A study's stored spec is not held to these, so a study stored without them can
    still be joined and exported."""
    name = spec.study.name
    if blank(name):
        # Blank in every listing: nobody could tell which study it is, nor type its name.
        return (
            f"[study] name {shorten(name)} has no visible character; allowed: at least one "
            f"letter, digit or sign"
        )
    if name != name.strip():
        # "a" and "a " look alike in every listing, yet would name two studies.
        return f"[study] name {shorten(name)} starts or ends with white space"
    if spec.latency.threads > MAX_THREADS:
        # Checked for new specs only: a study stored with more still loads.
        return f"[latency] threads: {spec.latency.threads} is more than {MAX_THREADS}"
    if problem := _condition_problem(spec.search):
        # New specs only: a study stored with such a key (accepted before) still loads.
        return problem
    for param in spec.model_params:
        if param in RESULT_NAMES:
            # `hpo best` writes a trial's results and params side by side.
            return (
                f"[search.{MODEL_PARAMS}] {param}: the name is a result's "
                f"({', '.join(RESULT_NAMES)}); rename the factory's parameter"
            )
    return None


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'  # TOML has no null (`_Section`)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise SpecError(f"cannot write {value!r} as TOML")


def dump_toml(raw: dict[str, Any]) -> str:
    """A raw spec (sections of plain values, lists and ranges) written back as TOML."""
    blocks = []
    for section, table in raw.items():
        lines = [f"[{section}]"] + [f"{key} = {_toml_value(v)}" for key, v in table.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"

"""Create or load the two-objective study for a spec, with the spec stored in it.

The spec travels in the database (study user attribute `spec`), so a worker needs only the URL
and the study name; it is also written as the study's note, which optuna-dashboard shows.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict
from typing import Any

import optuna

from hpo.core.comparable import noted_changes, refused_change, setting
from hpo.core.errors import DataError, HpoError, SpecError
from hpo.core.names import DIRECTIONS, METRIC_NAMES
from hpo.core.spec import Spec, dump_toml, never_applying, validate
from hpo.core.trial_attrs import SPEC_ATTR
from hpo.search.space import first_values
from hpo.store.claims import forget_claims
from hpo.store.connect import StoredStudy, check_made_by_hpo, check_objectives, study_names
from hpo.store.resilience import ResilientRDBStorage
from hpo.train.data import DataShape
from models.user import UserModel

_NOTE_TITLE = "Study spec"
# Study system attribute: the DataShape of the data the study was created with.
DATA_ATTR = "hpo:data"
# The SHA-256 of the file a user's model factory was imported from when the study was created.
FACTORY_ATTR = "hpo:model_factory"
_log = logging.getLogger("hpo.study")


def create_or_load_study(
    spec: Spec,
    storage: ResilientRDBStorage,
    data: DataShape | None = None,
    source: str = "the data",
    factory: UserModel | None = None,
) -> StoredStudy:
    """The study named by the spec; created with the spec (and the shape of its `data`, read
    from `source`, when known, and the file of its model `factory`) stored in it, or loaded if
    it exists.

    A study that exists with a different search space, other data, or with other settings that
    make trials comparable (FIXED_AT_CREATION), is refused: mixing them in one study would make
    its Pareto front meaningless. Other changed settings are allowed, each with a note.
    """
    study, created = _create_or_load(spec.study.name, storage)
    stored = None if created else _stored_spec(study)
    if stored is None and not created:
        stored = _spec_of_unfinished_creation(study)
    handle = StoredStudy.of(study, storage)
    if data is not None:
        check_data(handle, data, source, record=False)
    check_factory(handle, factory, record=False)
    if stored is None:
        forget_claims(StoredStudy.of(study, storage))
        set_metric_names(study)
        study.set_user_attr(SPEC_ATTR, spec.raw)
        if spec.study.start_from_first:
            # A known-good configuration first: the sampler's own first draws are random.
            study.enqueue_trial(first_values(spec))
    elif _searched(stored) != _searched(spec.raw):
        raise SpecError(
            f"study {spec.study.name!r} already exists with a different [search] table; "
            f"use another --study-name (or the same search space)"
        )
    else:
        _check_comparable(spec, validate(stored))
        # Keep the stored spec current (e.g. a raised n_trials) for workers that read it.
        study.set_user_attr(SPEC_ATTR, kept_target(spec.raw, stored))
    if data is not None:
        check_data(handle, data, source)  # recorded once every check has passed
    check_factory(handle, factory)
    if stored != spec.raw:
        write_spec_note(study)
    return handle


def _searched(raw: dict[str, Any]) -> dict[str, Any]:
    """A spec's [search] table as searched: without keys that could never apply, which a
    study stored before they were refused may hold (removing one changes nothing)."""
    search = raw.get("search", {})
    try:
        idle = never_applying(validate(raw).search)
    except SpecError:
        return search
    return {key: value for key, value in search.items() if key not in idle}


def _create_or_load(name: str, storage: ResilientRDBStorage) -> tuple[optuna.Study, bool]:
    """The study `name`, and whether this call created it.

    Of several processes starting one new study at once (`hpo run` or `create` on each
    machine), only the one whose creation the database accepted sets it up: each setting it up
    would queue the first configuration once per process, and they would all train it.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, directions=list(DIRECTIONS), load_if_exists=False
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        check_objectives(study)
        return study, False
    return study, True


def _spec_of_unfinished_creation(study: optuna.Study) -> dict[str, Any] | None:
    """None for a study without hpo's spec that may be taken over: an empty one, as an `hpo
    create` stopped between creating it and storing the spec leaves. One with trials was made
    by another program (its trials would count as hpo's): SpecError; unless its spec has come
    meanwhile, from a creator slower than CREATOR_WAIT_S (with the first trial it queued)."""
    check_made_by_hpo(study)
    return study.user_attrs.get(SPEC_ATTR)


# How long a process that found the study already there waits for its creator's spec.
CREATOR_WAIT_S = 2.0


def _stored_spec(study: optuna.Study) -> dict[str, Any] | None:
    """The spec stored in a study this process did not create.

    A study created a moment ago by another process gets its spec just after its creation;
    None when none comes (a study made without hpo, or whose creator stopped before storing
    it: this process sets it up then).
    """
    deadline = time.monotonic() + CREATOR_WAIT_S
    while (stored := study.user_attrs.get(SPEC_ATTR)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return stored


def check_data(stored: StoredStudy, data: DataShape, source: str, *, record: bool = True) -> None:
    """Refuse data of another shape than the study's (other classes or training images): its
    trials would not be comparable, and a network for other classes is another task. Recorded
    (when `record`) where the study has no shape yet: new, or made before shapes were kept."""
    attrs = stored.storage.get_study_system_attrs(stored.study_id)
    known = attrs.get(DATA_ATTR)
    if known is None:
        if record:
            stored.storage.set_study_system_attr(stored.study_id, DATA_ATTR, asdict(data))
        return
    if DataShape(**known) != data:
        raise DataError(
            f"{source}: {data.describe()}, but study {stored.name!r} was created with data of "
            f"{DataShape(**known).describe()}: its trials would not be comparable; give it a "
            f"copy of that data, or use --study-name for a new study"
        )


def check_factory(stored: StoredStudy, factory: UserModel | None, *, record: bool = True) -> None:
    """Refuse a model factory whose file is not the one the study was created with: its
    trials, probed latencies and stored models came from that code, and a changed network would
    be timed by the old one's probes, or exported as another network. Recorded (when `record`)
    where the study has none yet: new, or made before factories were kept."""
    if factory is None or factory.sha256 is None:
        return  # a built-in family, or torchvision's (its version is in the probes' key)
    known = stored.storage.get_study_system_attrs(stored.study_id).get(FACTORY_ATTR)
    if known is None:
        if record:
            stored.storage.set_study_system_attr(
                stored.study_id, FACTORY_ATTR, {"reference": factory.ref, "sha256": factory.sha256}
            )
        return
    if known["sha256"] != factory.sha256:
        raise SpecError(
            f"model {factory.ref}: {factory.origin} is not the file study {stored.name!r} was "
            f"created with (SHA-256 {factory.sha256[:12]}, not {known['sha256'][:12]}): its "
            "trials, latencies and stored models came from that code; restore the file, or use "
            "--study-name for a new study"
        )


def _check_comparable(spec: Spec, stored: Spec) -> None:
    name = spec.study.name
    key = refused_change(stored, spec)
    if key is not None:
        raise SpecError(
            f"study {name!r} was created with {key} = {setting(stored, key)!r}, not "
            f"{setting(spec, key)!r}: its trials would not be comparable; keep the value, or "
            f"use --study-name for a new study"
        )
    for key in noted_changes(stored, spec):
        _log.warning(
            "hpo: study %r: %s changes from %r to %r for the trials run from now on",
            name,
            key,
            setting(stored, key),
            setting(spec, key),
        )


def kept_target(raw: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the stored spec's n_trials when that is higher: a study's target only rises.

    Running the original command again (or an older spec) must not undo a target someone
    raised, which other workers may be working towards.
    """
    given = validate(raw).study.n_trials
    before = validate(stored).study.n_trials
    if before <= given:
        return raw
    return {**raw, "study": {**raw.get("study", {}), "n_trials": before}}


def set_metric_names(study: optuna.Study) -> None:
    """Name the objectives (accuracy, latency_ms), so the dashboard puts them on its axes."""
    with warnings.catch_warnings():
        # Marked experimental since Optuna 3.2; it is the public way to name objectives.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))


def stored_spec(study: optuna.Study) -> Spec:
    """The spec stored in the study when it was created (validated again)."""
    raw: dict[str, Any] | None = study.user_attrs.get(SPEC_ATTR)
    if raw is None:
        raw = _spec_of_unfinished_creation(study)
    if raw is None:
        raise HpoError(
            f"study {study.study_name!r} has no stored spec: it is being created right now "
            f"(try again in a moment), or its `hpo create` was stopped before writing it (run "
            f"`hpo create SPEC --study-name {study.study_name}` again to finish it)"
        )
    return validate(raw)


def spec_note(raw: dict[str, Any]) -> str:
    """The note shown on a study's dashboard page: its spec as TOML."""
    return f"## {_NOTE_TITLE}\n\n```toml\n{dump_toml(raw)}```\n"


def write_spec_note(study: optuna.Study) -> bool:
    """Add the study's spec to its dashboard note when the note has no spec section yet.

    The note is a person's to edit: once the spec section is there (edited or not), nothing is
    rewritten; a note with other text gets the spec section appended below it. True if written.
    """
    from optuna_dashboard import get_note, save_note

    raw = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(raw, dict):
        return False
    current = get_note(study)
    if _has_spec_section(current):
        return False
    body = spec_note(raw)
    save_note(study, f"{current.rstrip()}\n\n{body}" if current.strip() else body)
    return True


def _has_spec_section(note: str) -> bool:
    return any(line.strip() == f"## {_NOTE_TITLE}" for line in note.splitlines())


def prepare_for_dashboard(storage: ResilientRDBStorage) -> list[str]:
    """Give every hpo study its spec note and metric names; returns the study names, sorted."""
    names = study_names(storage)
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        if SPEC_ATTR in study.user_attrs:
            if study.metric_names is None and len(study.directions) == len(METRIC_NAMES):
                set_metric_names(study)
            write_spec_note(study)
    return sorted(names)

"""Spec validation: good specs parse, every bad one names the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.core.errors import SpecError
from hpo.core.names import OPTIMIZERS, SCHEDULERS
from hpo.core.spec import (
    Choice,
    Fixed,
    Range,
    apply_overrides,
    dump_toml,
    load_spec,
    new_spec_problem,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]


def spec(**search: object) -> dict:
    return {"study": {"name": "t"}, "search": dict(search)}


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.study.name


def test_domains_parse() -> None:
    parsed = validate(spec(lr={"low": 1e-3, "high": 0.1}, optimizer=["sgd", "adam"], norm="group"))
    assert parsed.search["lr"] == Range(1e-3, 0.1, log=True)
    assert parsed.search["optimizer"] == Choice(("sgd", "adam"))
    assert parsed.search["norm"] == Fixed("group")
    assert parsed.domain("scheduler") == Fixed("onecycle")  # catalog default


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (spec(optimizer="adamm"), "[search] optimizer: unknown value 'adamm'; allowed: sgd,"),
        (spec(scheduler=["cosine", "warp"]), "[search] scheduler: unknown value 'warp'"),
        (spec(norm="batchnorm"), "allowed: batch, group, layer, instance, none"),
        (spec(model="alexnet"), "[search] model: unknown value 'alexnet'; allowed:"),
        (spec(lr={"low": 0.1, "high": 0.01}), "[search] lr: low (0.1) must be below high (0.01)"),
        (spec(lr={"low": 0.1, "high": 0.1}), "must be below high"),
        (spec(lr={"low": 0, "high": 0.1}), "[search] lr: 0 is out of range"),
        (spec(lr={"low": -1, "high": 0.1}), "[search] lr: -1 is out of range"),
        (spec(lrr=0.1), "[search] unknown key 'lrr'; allowed: model, norm"),
        (spec(optimizer={"low": 1, "high": 2}), "is a choice"),
        (spec(optimizer=[]), "list of choices is empty"),
        (spec(batch_size=[64, 64.0]), "[search] batch_size: the list of choices has duplicates"),
        (spec(pool="min"), "[search] pool: unknown value 'min'; allowed: auto, max, avg, conv"),
        (
            spec(model="resnet", kernel="5x5"),
            "[search] kernel: model resnet has no kernel choice; kernel applies to simple_cnn, vgg",
        ),
        (
            spec(model=["vgg", "resnet"], growth_rate=[12, 24]),
            "[search] growth_rate: models vgg, resnet have no growth_rate choice; growth_rate "
            "applies to densenet",
        ),
        (spec(kernel="3x3"), "[search] kernel: model resnet has no kernel choice"),  # default
        (spec(loss="hinge"), "[search] loss: unknown value 'hinge'; allowed: cross_entropy, nll"),
        ({"study": {"name": "t", "sampler": "bayes"}}, "[study] sampler: unknown value 'bayes'"),
        ({"study": {"name": "t", "colour": 1}}, "[study] unknown key 'colour'; allowed: name"),
        ({"study": {}}, "[study] name: is required"),
        ({"study": {"name": "t"}, "trian": {}}, "unknown section [trian]; allowed: study"),
        ({"study": {"name": "t"}, "train": {"epochs": 0}}, "[train] epochs:"),
        ({"study": {"name": "t", "n_trials": "5"}}, "[study] n_trials: input should be a valid"),
        ({"study": {"name": "t", "n_trials": True}}, "[study] n_trials: input should be a valid"),
        ({"study": {"name": "t"}, "train": {"epochs": 2.0}}, "[train] epochs: input should be"),
        ({"study": {"name": "t"}, "train": {"augment": 1}}, "[train] augment: input should be"),
        ({"study": {"name": "t", "seed": -1}}, "[study] seed: input should be greater than or"),
        ({"study": {"name": "t", "seed": 2**32}}, "[study] seed: input should be less than"),
        ({"study": {"name": "t"}, "data": {"split_seed": -1}}, "[data] split_seed: input"),
        ({"study": {"name": "t"}, "train": {"seed": 2**64}}, "[train] seed: input should be"),
    ],
)
def test_bad_specs_name_the_key(raw: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        validate(raw)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            spec(optimizer="adam", momentum=[0.5, 0.9]),
            "[search] momentum: never applies with optimizer = adam; it applies when optimizer "
            "in sgd_momentum, nesterov, rmsprop",
        ),
        (
            spec(scheduler=["cosine", "onecycle"], step_size=[1, 2]),
            "[search] step_size: never applies with scheduler = cosine, onecycle; it applies when "
            "scheduler = step",
        ),
        (spec(se_ratio=[4, 8]), "[search] se_ratio: never applies with attention = none"),
        (spec(label_smoothing=0.1, loss="mse"), "[search] label_smoothing: never applies"),
    ],
)
def test_a_new_spec_with_a_key_that_never_applies_is_refused(raw: dict, expected: str) -> None:
    """Searched, such a key searches nothing. A stored spec that has one (accepted before)
    still validates, so its study loads."""
    validate(raw)
    problem = new_spec_problem(validate(raw))
    assert problem is not None and expected in problem


def test_a_conditional_key_is_accepted_when_one_parent_value_applies() -> None:
    for raw in (
        spec(optimizer=["adam", "nesterov"], momentum=[0.5, 0.9]),
        spec(momentum=0.8),  # the default optimizer (nesterov) takes it
        spec(attention=["none", "se"], se_ratio=[4, 8]),
    ):
        assert new_spec_problem(validate(raw)) is None


def test_all_optimizers_and_schedulers_are_accepted() -> None:
    parsed = validate(spec(optimizer=list(OPTIMIZERS), scheduler=list(SCHEDULERS)))
    assert parsed.search["optimizer"] == Choice(OPTIMIZERS)
    assert parsed.search["scheduler"] == Choice(SCHEDULERS)


def test_overrides_are_toml_values_or_strings() -> None:
    raw = apply_overrides(
        {"study": {"name": "t"}},
        ["train.epochs=2", "data.dataset=../x.npz", 'search.norm=["batch", "none"]'],
    )
    assert raw["train"]["epochs"] == 2
    assert raw["data"]["dataset"] == "../x.npz"
    assert raw["search"]["norm"] == ["batch", "none"]


def test_override_needs_section_and_key() -> None:
    with pytest.raises(SpecError, match="expected section.key=value"):
        apply_overrides({}, ["epochs=2"])


def test_an_override_sets_one_key_of_a_table_in_a_section() -> None:
    raw = {"search": {"model": "nets/tiny.py:build", "model_params": {"blocks": [1, 2]}}}
    changed = apply_overrides(raw, ["search.model_params.channels=[8]", "search.x.y.z=1"])
    assert changed["search"]["model_params"] == {"blocks": [1, 2], "channels": [8]}
    assert changed["search"]["x"] == {"y": {"z": 1}}
    with pytest.raises(SpecError, match="search.model is not a table, so it has no key 'name'"):
        apply_overrides(raw, ["search.model.name=x"])


def test_a_new_study_name_has_no_white_space_at_either_end(tmp_path: Path) -> None:
    path = tmp_path / "spaced.toml"
    path.write_text('[study]\nname = "t "\n')
    with pytest.raises(SpecError, match=r"\[study\] name 't ' starts or ends with white space"):
        load_spec(path)
    # A study stored under such a name is still read.
    assert validate({"study": {"name": "t "}}).study.name == "t "


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "studies" / "quickstart.toml").read_bytes())
    assert load_spec(path).study.name == "quickstart"


def test_a_new_study_has_at_most_1024_latency_threads_a_stored_one_any(tmp_path: Path) -> None:
    path = tmp_path / "threads.toml"
    path.write_text('[study]\nname = "t"\n[latency]\nthreads = 100000\n')
    with pytest.raises(SpecError, match=r"threads.toml: \[latency\] threads: 100000 is more"):
        load_spec(path)
    assert validate({"study": {"name": "t"}, "latency": {"threads": 2000}}).latency.threads == 2000


def test_a_spec_in_another_encoding_says_toml_is_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[study]\nname = "étude"\n'.encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.toml: not UTF-8 text \(byte 0xe9 at position"):
        load_spec(path)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[study\nname = 'x'\n")
    with pytest.raises(SpecError, match="bad.toml: malformed TOML"):
        load_spec(path)


def test_a_bad_command_line_value_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "fine.toml"
    path.write_text('[study]\nname = "fine"\n')
    with pytest.raises(
        SpecError, match=r"fine.toml with the command line's values: \[study\] name"
    ):
        load_spec(path, ["study.name="])
    path.write_text('[study]\nname = "fine"\ncolour = 1\n')
    with pytest.raises(SpecError, match=r"fine.toml: \[study\] unknown key 'colour'"):
        load_spec(path, ["study.n_trials=3"])


def test_a_key_that_may_be_none_takes_the_string_none() -> None:
    """TOML has no null: `"none"` clears a default (an unseeded study) or a spec's value from
    the command line, and a key that may not be none still refuses it."""
    raw = {"study": {"name": "n", "random_start": 3, "max_latency_ms": 2.0}}
    cleared = validate(
        apply_overrides(raw, ["study.random_start=none", "study.seed=None", "data.train_size=none"])
    )
    assert cleared.study.random_start is None and cleared.study.seed is None
    assert cleared.data.train_size is None and cleared.study.max_latency_ms == 2.0
    # Stored as null, not as the string: SQL reads the stored spec too.
    assert cleared.raw["study"]["random_start"] is None and cleared.raw["study"]["seed"] is None
    assert 'seed = "none"' in dump_toml(cleared.raw)
    assert validate({"study": {"name": "n", "max_latency_ms": "none"}}).study.max_latency_ms is None
    with pytest.raises(SpecError, match=r"\[study\] n_trials: input should be a valid integer \("):
        validate({"study": {"name": "n", "n_trials": "none"}})
    with pytest.raises(
        SpecError, match=r'\[study\] seed: input should be a valid integer, or "none"'
    ):
        validate({"study": {"name": "n", "seed": "abc"}})

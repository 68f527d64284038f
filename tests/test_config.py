"""Typed config (``umt.config``): dataclasses from plain data, overrides, YAML files, hashing (the
study's own checks: ``study/test_study_config.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from umt.config import (
    apply_overrides,
    config_hash,
    from_dict,
    parse_override,
    read_yaml,
    to_dict,
)
from umt.data import DataConfig
from umt.engine import TrainConfig
from umt.errors import UMTError
from umt.study import StudyConfig, TuneConfig, load_config

# -- from_dict -------------------------------------------------------------------------------


def test_from_dict_builds_nested_dataclasses() -> None:
    cfg = from_dict(
        StudyConfig,
        {"name": "x", "train": {"epochs": 4}, "data": {"synthetic": {"n_train": 30}}},
    )
    assert isinstance(cfg, StudyConfig)
    assert isinstance(cfg.train, TrainConfig)
    assert cfg.name == "x"
    assert cfg.train.epochs == 4
    assert cfg.data.synthetic.n_train == 30
    # Keys left out keep their defaults, at every level.
    assert cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.data.name == DataConfig().name == "avdigits"


def test_from_dict_converts_int_to_float() -> None:
    cfg = from_dict(StudyConfig, {"train": {"lr": 1}, "umt": {"weights": {"a": 2}}})
    assert type(cfg.train.lr) is float and cfg.train.lr == 1.0
    assert type(cfg.umt.weights["a"]) is float and cfg.umt.weights["a"] == 2.0


def test_from_dict_converts_lists_to_tuples() -> None:
    cfg = from_dict(
        StudyConfig,
        {"seeds": [4, 5], "methods": ["joint"], "probe": {"l2": [1, 0.5]}},
    )
    assert cfg.seeds == (4, 5)
    assert cfg.methods == ("joint",)
    assert cfg.probe.l2 == (1.0, 0.5)
    assert all(type(v) is float for v in cfg.probe.l2)


def test_from_dict_reads_a_single_value_as_a_one_item_tuple() -> None:
    assert from_dict(StudyConfig, {"seeds": 7}).seeds == (7,)


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({"train": {"epoch": 3}}, "train.epoch", "train.epochs"),
        ({"seed": [1]}, "seed", "seeds"),
        (
            {"data": {"synthetic": {"n_trian": 3}}},
            "data.synthetic.n_trian",
            "data.synthetic.n_train",
        ),
    ],
)
def test_unknown_key_names_the_dotted_key_and_suggests_the_close_match(
    data: dict[str, object], key: str, suggestion: str
) -> None:
    with pytest.raises(UMTError) as info:
        from_dict(StudyConfig, data)
    msg = str(info.value)
    assert f"unknown key {key!r}" in msg
    assert f"did you mean {suggestion!r}" in msg


def test_unknown_key_lists_the_valid_keys() -> None:
    with pytest.raises(UMTError, match="Valid keys: .*epochs.*lr"):
        from_dict(StudyConfig, {"train": {"zzzzzz": 1}})


def test_unknown_key_without_a_close_match_suggests_nothing() -> None:
    with pytest.raises(UMTError) as info:
        from_dict(StudyConfig, {"train": {"zzzzzz": 1}})
    assert "did you mean" not in str(info.value)
    assert "'train.zzzzzz'" in str(info.value)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"train": {"epochs": "abc"}}, "train.epochs", "an integer"),
        ({"train": {"lr": True}}, "train.lr", "a number"),
        ({"train": {"progress": 1}}, "train.progress", "true or false"),
        ({"seeds": 3.5}, "seeds[0]", "an integer"),
        ({"name": 3}, "name", "a string"),
        ({"train": 3}, "train", "a mapping"),
        ({"seeds": {"a": 1}}, "seeds", "a list"),
    ],
)
def test_wrong_type_names_the_key_and_the_expected_type(
    data: dict[str, object], key: str, expected: str
) -> None:
    with pytest.raises(UMTError) as info:
        from_dict(StudyConfig, data)
    msg = str(info.value)
    assert msg.startswith(f"{key}: expected {expected}"), msg


def test_wrong_type_quotes_the_bad_value() -> None:
    with pytest.raises(UMTError, match="got 'abc'"):
        from_dict(StudyConfig, {"train": {"epochs": "abc"}})


# -- overrides -------------------------------------------------------------------------------


def test_parse_override_splits_nested_keys() -> None:
    assert parse_override("data.synthetic.n_train=20") == (["data", "synthetic", "n_train"], 20)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a=3", 3),
        ("a=0.5", 0.5),
        ("a=true", True),
        ("a=null", None),
        ("a=[0, 1]", [0, 1]),
        ("a={w: 10}", {"w": 10}),
        ("a=mse", "mse"),
        ("a='5'", "5"),
        ("a=x=y", "x=y"),  # split at the first '='
    ],
)
def test_parse_override_reads_the_value_as_yaml(text: str, value: object) -> None:
    assert parse_override(text) == (["a"], value)


@pytest.mark.parametrize(
    ("text", "value"), [("lr=1e-3", 1e-3), ("lr=2E5", 2e5), ("lr=-1e-2", -0.01)]
)
def test_parse_override_reads_exponent_notation_as_a_float(text: str, value: float) -> None:
    _, got = parse_override(text)
    assert type(got) is float and got == value


@pytest.mark.parametrize("text", ["train.epochs", "", "=3", "train..lr=1", "train.=1"])
def test_parse_override_rejects_malformed_text(text: str) -> None:
    with pytest.raises(UMTError, match="override"):
        parse_override(text)


def test_override_without_equals_says_what_form_is_expected() -> None:
    with pytest.raises(UMTError, match="key=value"):
        apply_overrides({}, ["train.epochs"])


def test_apply_overrides_sets_nested_keys_and_leaves_the_input_alone() -> None:
    raw = {"train": {"epochs": 3, "lr": 0.1}, "name": "a"}
    out = apply_overrides(raw, ["train.epochs=5", "data.synthetic.preset=paired", "name=b"])
    assert out == {
        "train": {"epochs": 5, "lr": 0.1},
        "name": "b",
        "data": {"synthetic": {"preset": "paired"}},
    }
    assert raw == {"train": {"epochs": 3, "lr": 0.1}, "name": "a"}


def test_apply_overrides_later_wins() -> None:
    assert apply_overrides({}, ["seeds=[0]", "seeds=[1, 2]"]) == {"seeds": [1, 2]}


def test_override_into_a_scalar_is_refused() -> None:
    with pytest.raises(UMTError, match="'train' is a value, not a section"):
        apply_overrides({"train": 3}, ["train.epochs=5"])


# -- YAML files ------------------------------------------------------------------------------


def test_read_yaml_reads_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 2\n")
    assert read_yaml(path) == {"name": "x", "train": {"epochs": 2}}


def test_read_yaml_of_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert read_yaml(path) == {}


def test_read_yaml_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(UMTError, match="does not exist") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


def test_read_yaml_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: [1, 2\n")
    with pytest.raises(UMTError, match="not valid YAML") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("3\n", "int")])
def test_read_yaml_non_mapping_names_the_file_and_what_it_holds(
    tmp_path: Path, text: str, kind: str
) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(UMTError, match=f"must hold a mapping of keys, got {kind}") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


def test_load_config_reads_a_file_then_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("name: mine\nseeds: [3, 4]\ntrain:\n  epochs: 7\n  lr: 0.5\n")
    cfg = load_config(path, ["train.lr=1e-3", "umt.weight=2"])
    assert cfg.name == "mine"
    assert cfg.seeds == (3, 4)
    assert cfg.train.epochs == 7  # from the file
    assert cfg.train.lr == 1e-3  # the override wins over the file
    assert cfg.umt.weight == 2.0


def test_load_config_without_a_file_is_the_defaults_plus_overrides() -> None:
    off = TuneConfig(enabled=False)  # the recipe as configured: no shipped layer
    assert load_config(overrides=["tune.enabled=false"]) == StudyConfig(tune=off)
    assert load_config(overrides=["seeds=[9]", "tune.enabled=false"]) == StudyConfig(
        seeds=(9,), tune=off
    )
    # avdigits, the default data set, ships a recipe found by the search: a layer under yours.
    shipped = load_config(overrides=["recipes={joint: {lr: 0.02}}"])
    assert shipped.recipes["joint"] == {"lr": 0.02} and "teacher-audio" in shipped.recipes
    assert shipped.model.modality == load_config().model.modality != {}


def test_load_config_unknown_key_in_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(UMTError, match="did you mean 'train.epochs'"):
        load_config(path)


def test_yaml_date_value_gives_a_config_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("name: 2024-05-01\n")
    try:
        cfg = load_config(path)
    except UMTError as e:
        assert "name" in str(e)
    else:
        assert cfg.name == "2024-05-01"


# -- hashing and round trips -----------------------------------------------------------------


def test_config_hash_is_stable_and_short() -> None:
    a = config_hash(StudyConfig(), 0, {"x": [1, 2]})
    b = config_hash(StudyConfig(), 0, {"x": [1, 2]})
    assert a == b
    assert len(a) == 12 and int(a, 16) >= 0


def test_config_hash_does_not_depend_on_dict_order() -> None:
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_config_hash_changes_with_any_field() -> None:
    base = config_hash(StudyConfig())
    assert config_hash(load_config(overrides=["train.lr=0.002"])) != base
    assert config_hash(load_config(overrides=["data.synthetic.n_train=11"])) != base
    assert config_hash(StudyConfig(), 1) != config_hash(StudyConfig(), 2)


def test_to_dict_gives_plain_data() -> None:
    d = to_dict(StudyConfig())
    assert isinstance(d, dict)
    assert d["seeds"] == [0, 1, 2]  # tuples become lists (YAML- and JSON-ready)
    assert isinstance(d["train"], dict) and d["train"]["epochs"] == TrainConfig().epochs


def test_to_dict_round_trips_through_from_dict() -> None:
    cfg = load_config(
        overrides=[
            "name=rt",
            "seeds=[5, 6]",
            "methods=[joint, umt]",
            "umt.weights={a: 3}",
            "ume.weights={a: 1, b: 2}",
            "data.synthetic.strengths=[1, 2]",
            "model.film_condition=a",
            "train.devices=2",
            "probe.l2=[0.1]",
        ]
    )
    assert from_dict(StudyConfig, to_dict(cfg)) == cfg
    assert from_dict(StudyConfig, to_dict(StudyConfig())) == StudyConfig()

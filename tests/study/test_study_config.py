"""The study's configuration (``StudyConfig``) refuses what cannot run, naming the key: from
overrides and when built directly."""

from __future__ import annotations

import pytest

from umt.errors import UMTError
from umt.study import StudyConfig, load_config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("methods=[joint, bogus]", "methods: unknown \\['bogus'\\]; expected some of"),
        ("methods=[joint, joint]", "each method once"),
        ("seeds=[]", "seeds: give at least one seed"),
        ("choice.split=test", "choice.split: the rule must not look at the test split"),
        ("choice.split=dev", "choice.split: expected 'val'"),
        ("mask_fill=median", "mask_fill: expected one of .*got 'median'"),
        ("train.epochs=0", "train.epochs: expected at least 1"),
    ],
)
def test_study_config_validation(override: str, message: str) -> None:
    with pytest.raises(UMTError, match=message):
        load_config(overrides=[override])


def test_study_config_validation_also_applies_to_direct_construction() -> None:
    with pytest.raises(UMTError, match="seeds"):
        StudyConfig(seeds=())
    with pytest.raises(UMTError, match="mask_fill"):
        StudyConfig(mask_fill="nan")


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_study_config_accepts_each_mask_fill(fill: str) -> None:
    assert load_config(overrides=[f"mask_fill={fill}"]).mask_fill == fill

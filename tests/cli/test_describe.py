"""``umt config --describe`` (issue 16): every key of the default configuration has a one-line
description taken from the config dataclasses' docstrings, and the output stays valid YAML."""

from __future__ import annotations

import pytest
import yaml

from umt.cli import main
from umt.cli.describe import describe, leaf_keys
from umt.config import to_dict
from umt.study import StudyConfig, load_config


def test_every_leaf_key_of_the_default_config_has_a_description() -> None:
    docs = describe(StudyConfig)
    keys = leaf_keys(load_config())
    assert len(keys) > 100  # every section's settings, not only the top level
    missing = [k for k in keys if not docs.get(k, "").strip()]
    assert missing == []


def test_descriptions_come_from_the_docstrings() -> None:
    docs = describe(StudyConfig)
    assert docs["seeds"].startswith("training seeds")  # StudyConfig's Attributes section
    assert "scheduler" in docs["train.gamma"]  # named in ``scheduler``'s entry
    assert docs["g2d.weight"] == docs["umt.weight"] != ""  # G2DConfig inherits UMT's keys


def test_config_describe_prints_valid_yaml_with_a_comment_per_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--describe", "--set", "train.epochs=3"]) == 0
    text = capsys.readouterr().out
    cfg = load_config(overrides=["train.epochs=3"])
    assert yaml.safe_load(text) == to_dict(cfg)  # the comments change nothing
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped and not stripped.startswith(("#", "- ")) and ":" in stripped:
            # every key line (not a list item, not a value continued) follows its comment
            assert lines[i - 1].lstrip().startswith("# "), line
    assert "# (no description)" not in text

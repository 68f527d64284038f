"""The shape of the code base that the Task seam established (issue 14): checks that fail when a
task branch, an oversized module or a second registration creeps back in."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from umt.methods import METHODS, stage_display_name
from umt.methods.base import ALL_TASKS
from umt.study import StudyConfig
from umt.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "umt"
MAX_LINES = 520


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_longer_than_one_sitting(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines"


def _string_compares(path: Path) -> list[str]:
    """``x == "segmentation"``-style comparisons (and ``in``) against a task's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in TASKS:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_only_the_tasks_and_the_data_formats_compare_task_names() -> None:
    # The data layer parses files that declare their task (a label shape check); everything
    # above it asks the task object.
    allowed = ("tasks/", "data/")
    found = [
        hit
        for path in _modules()
        if not str(path.relative_to(SRC)).startswith(allowed)
        for hit in _string_compares(path)
    ]
    assert found == []


def test_every_method_is_registered_once_with_its_settings_section() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(StudyConfig)}
    for name, spec in METHODS.items():
        assert spec.tasks <= set(TASKS), name
        if spec.config is not None:
            assert fields[name] is spec.config, name  # the section comes from the registry
            assert type(StudyConfig().settings(name)) is spec.config
        else:
            assert name not in fields
        assert stage_display_name(name) == spec.display
    assert set(TASKS) == ALL_TASKS


def test_a_method_without_support_for_a_task_is_refused_before_training(tmp_path: Path) -> None:
    from umt.errors import UMTError
    from umt.study import load_config, run_study

    cfg = load_config(
        overrides=["data.name=rgbd", "methods=[joint, ogm_ge]", "seeds=[0]", "train.epochs=1"]
    )
    with pytest.raises(UMTError, match=r"\['ogm_ge'\] do not support segmentation"):
        run_study(cfg, tmp_path, log=lambda _: None)
    assert not (tmp_path / "default").exists()

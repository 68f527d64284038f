"""The shape of the code base (issues 14 and 25): layers as folders whose imports point down, one
registry entry per method and per data set, modules that fit one sitting, and no task branch
outside the tasks. Each check fails when what it guards creeps back in."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from umt.data import DATASETS
from umt.methods import METHODS, stage_display_name
from umt.methods.base import ALL_TASKS
from umt.study import StudyConfig
from umt.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "umt"
MAX_LINES = 400

#: The layers, top down: a module imports only from its own layer and the ones below it
#: (docs/architecture.md draws them). ``umt/__init__.py`` is the public face, above them all.
LAYERS = [
    ("cli",),
    ("search",),
    ("study",),
    ("yours",),
    ("report",),
    ("engine",),
    ("tasks",),
    ("methods",),
    ("probe",),
    ("models",),
    ("data",),
    ("config", "io", "errors"),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {_name(p): p for p in _modules()}


def _imports(path: Path) -> Iterator[str]:
    """Every ``umt`` module ``path`` imports, anywhere in it (inside functions and under
    ``TYPE_CHECKING`` too): ``from umt.a import b`` is ``umt.a.b`` where that is a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "umt")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "umt":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in NAMES else node.module


def _layer(module: str) -> int:
    return RANK[module.split(".")[1]]


def test_every_top_level_entry_is_a_layer() -> None:
    entries = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    entries -= {"__init__", "__pycache__", "configs", "py"}
    assert entries == set(RANK), "a new top-level module: place it in a layer's folder"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_longer_than_one_sitting(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines"


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} -> {target}"
        for module, path in NAMES.items()
        if module != "umt"
        for target in _imports(path)
        if target != "umt" and _layer(target) < _layer(module)
    ]
    upward += [f"{m} -> umt" for m, p in NAMES.items() if m != "umt" and "umt" in _imports(p)]
    assert upward == []


def test_no_import_cycle_between_modules() -> None:
    graph = {m: {t for t in _imports(p) if t in NAMES and t != m} for m, p in NAMES.items()}
    graph.pop("umt")
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


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
    sections = {name for name, spec in METHODS.items() if spec.config is not None}
    # StudyConfig's sections are exactly the methods with settings, each of its class.
    assert {n for n in fields if n in METHODS} == sections
    for name, spec in METHODS.items():
        assert spec.tasks <= set(TASKS), name
        if spec.config is not None:
            assert fields[name] in (spec.config, spec.config.__name__), name
            assert type(StudyConfig().settings(name)) is spec.config
        assert stage_display_name(name) == spec.display
        for key in spec.search_space:  # every searched key is a setting or a recipe field
            top = key.split(".")[0]
            assert top == "train" or key in {f.name for f in dataclasses.fields(spec.config)}
    assert set(TASKS) == ALL_TASKS


def test_every_data_set_is_registered_once() -> None:
    for name, spec in DATASETS.items():
        assert spec.task is None or spec.task in TASKS, name
        assert spec.description, name
    # Nothing else lists data set names: a second list drifts (the stale-cache bug of issue 25).
    listed = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in _modules()
        if path.name != "registry.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Tuple | ast.List | ast.Set)
        and len(node.elts) >= 2
        and all(isinstance(e, ast.Constant) and e.value in DATASETS for e in node.elts)
    ]
    assert listed == []


def test_a_method_without_support_for_a_task_is_refused_before_training(tmp_path: Path) -> None:
    from umt.errors import UMTError
    from umt.study import load_config, run_study

    cfg = load_config(
        overrides=["data.name=rgbd", "methods=[joint, ogm_ge]", "seeds=[0]", "train.epochs=1"]
    )
    with pytest.raises(UMTError, match=r"\['ogm_ge'\] do not support segmentation"):
        run_study(cfg, tmp_path, log=lambda _: None)
    assert not (tmp_path / "default").exists()

"""An equal tuning budget (``tune:``): every method's grid is tried on validation, the best value
kept, then the study runs with the chosen values.

Each trial is an ordinary study (``run_study``) in ``<run>/tune/trial<i>`` with the ``i``-th value
of every method's grid, so nothing in the runner changes: a trial's stages have their own keys
and are cached like any stage. The teachers do not depend on the method settings: they are
trained once and copied into the other trials, and the chosen trial's stages are copied into the
study's own directory, where their keys make them cached. Optionally the teachers' recipe is
searched first (``tune.teacher_lr``, ``tune.teacher_grid``: learning rate, encoder width or kind,
...), and the best combination (mean teacher val score) becomes the study's, shared by the fused
models.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from umt.config import from_dict, set_path, to_dict
from umt.data import DataBundle, UserData
from umt.errors import UMTError
from umt.io import write_json
from umt.methods import METHODS
from umt.models import EncoderFactory
from umt.report.trust import values_text
from umt.study import Log, StudyResult, run_study
from umt.study.config import StudyConfig, TuneConfig


def grids(cfg: StudyConfig) -> dict[str, dict[str, tuple[Any, ...]]]:
    """The grid of each tuned method: ``tune.grid``, or the defaults for the study's methods.

    Example:
        >>> from umt.study.config import load_config
        >>> grids(load_config(overrides=["tune.enabled=true"]))
        {'joint': {'train.lr': (0.0003, 0.001, 0.003)}, 'umt': {'weight': (1.0, 5.0, 20.0)}}
    """
    grid = dict(cfg.tune.grid)
    if not grid:
        if cfg.tune.trials != 3:
            raise UMTError(
                f"tune.trials={cfg.tune.trials}: the default grids have 3 values each; give "
                "tune.grid for another budget"
            )
        grid = {m: dict(METHODS[m].search_space) for m in cfg.methods if METHODS[m].search_space}
    outside = [m for m in grid if m not in cfg.methods]
    if outside:
        raise UMTError(f"tune.grid: {outside} are not in methods {list(cfg.methods)}")
    return grid


def with_values(cfg: StudyConfig, values: dict[str, dict[str, Any]]) -> StudyConfig:
    """``cfg`` with ``values[method][key]`` set: a field of the method's settings, or
    ``train.<field>`` of its recipe (each converted and checked as the YAML would be)."""
    changes: dict[str, Any] = {}
    recipes = {m: dict(r) for m, r in cfg.recipes.items()}
    for method, keys in values.items():
        section = cfg.settings(method)
        plain: dict[str, Any] = {}
        for key, value in keys.items():
            if key.startswith("train."):
                recipes.setdefault(method, {})[key.removeprefix("train.")] = value
            elif section is None:
                raise UMTError(f"tune.grid.{method}.{key}: {method} has only train.<field> keys")
            else:
                plain[key] = value
        if plain:
            changes[method] = from_dict(
                type(section), {**to_dict(section), **plain}, prefix=f"tune.grid.{method}"
            )
    return dataclasses.replace(cfg, recipes=recipes, **changes)


def teacher_grid(tune: TuneConfig) -> dict[str, tuple[Any, ...]]:
    """The teachers' search: ``tune.teacher_lr`` (as ``train.lr``) and ``tune.teacher_grid``.

    Example:
        >>> teacher_grid(TuneConfig(teacher_lr=(1e-3, 1e-2), teacher_grid={"model.encoder.channels": (8, 16)}))
        {'train.lr': (0.001, 0.01), 'model.encoder.channels': (8, 16)}
    """
    lr = {"train.lr": tuple(tune.teacher_lr)} if tune.teacher_lr else {}
    return {**lr, **tune.teacher_grid}


def with_recipe(cfg: StudyConfig, values: dict[str, Any]) -> StudyConfig:
    """``cfg`` with each ``train.<field>`` / ``model.<field>`` of ``values`` set (dotted keys
    into nested sections; converted and checked as the YAML would be).

    Example:
        >>> from umt.study.config import load_config
        >>> cfg = with_recipe(load_config(), {"train.lr": 0.01, "model.encoder.channels": 16})
        >>> cfg.train.lr, cfg.model.encoder.channels
        (0.01, 16)
    """
    sections = {"train": to_dict(cfg.train), "model": to_dict(cfg.model)}
    for key, value in values.items():
        set_path(sections, key.split("."), value, what=f"tune.teacher_grid.{key}")
    return dataclasses.replace(
        cfg,
        train=from_dict(type(cfg.train), sections["train"], prefix="train"),
        model=from_dict(type(cfg.model), sections["model"], prefix="model"),
    )


def _trial_name(values: dict[str, Any]) -> str:
    """A teachers' trial's directory name: ``teachers-lr0.001-channels16``."""
    short = {key.rsplit(".", 1)[-1]: value for key, value in values.items()}
    return "teachers-" + values_text(short).replace("=", "").replace(", ", "-")


def _copy_stages(src: Path, dst: Path, keep: Any) -> None:
    """Copy the finished stages ``keep(name)`` of every seed from run ``src`` to run ``dst``
    (without checkpoints: ``result.json`` and ``model.pt`` make a stage cached)."""
    for seed_dir in sorted(src.glob("seed*")):
        for stage in sorted(seed_dir.iterdir()):
            target = dst / seed_dir.name / stage.name
            if keep(stage.name) and (stage / "result.json").is_file() and not target.exists():
                shutil.copytree(stage, target, ignore=shutil.ignore_patterns("checkpoints"))


def _val(summary: dict[str, Any], method: str | None) -> float:
    """The mean val score of ``method``'s stages (over seeds and fusion modules), or of the
    teachers (``None``); NaN when none finished."""
    first: dict[str, Any] = next(iter(summary["methods"].values()), {})
    key = next((x for x in first if x.startswith("val_")), "val_acc")
    scores = [
        e[key]["mean"]
        for s, e in summary["methods"].items()
        if (s.startswith("teacher-") if method is None else s.split("-")[0] == method)
    ]
    return sum(scores) / len(scores) if scores else math.nan


def _best(curve: list[dict[str, Any]]) -> int:
    vals = [-math.inf if math.isnan(p["val"]) else p["val"] for p in curve]
    return vals.index(max(vals))


def edges(curve: list[dict[str, Any]], chosen: dict[str, Any]) -> list[str]:
    """The numeric keys whose chosen value is the smallest or the largest one tried: the best
    value may lie beyond the grid, which should then be widened.

    Example:
        >>> curve = [{"values": {"weight": w, "loss": "mse"}} for w in (1.0, 5.0, 20.0)]
        >>> edges(curve, {"weight": 20.0, "loss": "mse"}), edges(curve, {"weight": 5.0, "loss": "mse"})
        (['weight'], [])
    """

    def numeric(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    found = []
    for key, value in chosen.items():
        tried = [p["values"][key] for p in curve]
        if not all(numeric(v) for v in tried):  # names, flags, lists: no range to widen
            continue
        if len(set(tried)) >= 2 and value in (min(tried), max(tried)):
            found.append(key)
    return found


def run_tuned(
    cfg: StudyConfig,
    out: str | Path,
    *,
    log: Log,
    report: bool,
    data: UserData | DataBundle | None = None,
    encoders: Mapping[str, EncoderFactory] | None = None,
) -> StudyResult:
    """Tune (``cfg.tune``), then run the study with the chosen values; its summary gains a
    ``tune`` entry: the budget, each method's curve (val score per value) and choice."""
    out = Path(out)
    root = out / cfg.name
    trials = root / "tune"  # each trial a study of its own, named plainly, under the study
    base = dataclasses.replace(cfg, tune=TuneConfig())  # trials and the final run: plain studies
    tune: dict[str, Any] = {"trials": cfg.tune.trials if cfg.tune.enabled else 0, "methods": {}}
    teachers: Path | None = None  # a run whose teachers every later run reuses
    search = teacher_grid(cfg.tune)
    if search:
        curve: list[dict[str, Any]] = []
        for combo in itertools.product(*search.values()):
            values = dict(zip(search, combo, strict=True))
            name = _trial_name(values)
            log(f"tune: teachers with {values_text(values)}")
            trial = dataclasses.replace(with_recipe(base, values), name=name, methods=())
            res = run_study(trial, trials, log=log, report=False, data=data, encoders=encoders)
            run = f"{cfg.name}/tune/{name}"  # relative to out
            curve.append({"values": values, "val": _val(res.summary, None), "run": run})
        best = _best(curve)
        chosen_recipe = curve[best]["values"]
        tune["teachers"] = {
            "chosen": chosen_recipe,
            "curve": curve,
            "edge": edges(curve, chosen_recipe),
        }
        base = with_recipe(base, chosen_recipe)
        teachers = out / str(curve[best]["run"])
    grid = grids(cfg) if cfg.tune.enabled else {}
    runs: list[Path] = []
    for i in range(cfg.tune.trials if grid else 0):
        values = {m: {key: vals[i] for key, vals in keys.items()} for m, keys in grid.items()}
        name = f"trial{i}"
        trial = dataclasses.replace(
            with_values(base, values),
            name=name,
            methods=tuple(m for m in cfg.methods if m in grid),
        )
        if teachers is not None:
            _copy_stages(teachers, trials / name, lambda s: s.startswith("teacher-"))
        log(f"tune: trial {i + 1}/{cfg.tune.trials}: {values}")
        res = run_study(trial, trials, log=log, report=False, data=data, encoders=encoders)
        teachers = teachers or trials / name
        runs.append(trials / name)
        for m in grid:
            entry = tune["methods"].setdefault(m, {"curve": []})
            entry["curve"].append({"values": values[m], "val": _val(res.summary, m)})
    chosen: dict[str, dict[str, Any]] = {}
    for m, entry in tune["methods"].items():
        best = _best(entry["curve"])
        entry["chosen"] = chosen[m] = entry["curve"][best]["values"]
        entry["edge"] = edges(entry["curve"], chosen[m])
        _copy_stages(runs[best], root, lambda s, m=m: s.split("-")[0] == m)
    if teachers is not None:
        _copy_stages(teachers, root, lambda s: s.startswith("teacher-"))
    final = with_values(base, chosen)
    result = run_study(final, out, log=log, report=False, data=data, encoders=encoders)
    if not result.main:
        return result
    result.summary["tune"] = tune
    write_json(root / "summary.json", result.summary)
    if report:
        from umt.report import write_report

        write_report(result.summary, root)
    return result

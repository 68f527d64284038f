"""The recipe search (issues 26 and 30): every method's budget on validation, the configured values
tried first, the chosen values retrained at the study's own seeds, every trial in the summary,
and a search killed at any point resuming to the numbers of an uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import quiet

from umt.errors import UMTError
from umt.io import read_json
from umt.search import run_study, source
from umt.search.space import Choice, Range, at_edge, teacher_space, with_method, with_teacher
from umt.study import load_config

SEARCH = [
    "tune.enabled=true",
    "tune.teacher_budget=2",
    "tune.budget=2",
    "methods=[joint,umt,ume]",
]


def test_where_the_recipe_comes_from(tiny_overrides: list[str]) -> None:
    cfg = load_config(overrides=tiny_overrides)
    assert source(cfg, None) == "configured"  # a built-in set without a shipped recipe
    assert source(load_config(overrides=[*tiny_overrides, "tune.enabled=true"]), None) == "searched"
    assert source(load_config(overrides=[*tiny_overrides, "tune.enabled=false"]), None) == "off"
    assert source(cfg, object()) == "searched"  # your own data is searched
    folder = load_config(overrides=["data.name=folder", "data.root=/somewhere"])
    assert source(folder, None) == "searched"


def test_the_spaces_follow_the_inputs_and_the_values_land_in_the_config() -> None:
    cfg = load_config()
    image = teacher_space(cfg, "a", (1, 16, 16), True)
    assert image["encoder"] == Choice(("cnn", "mlp")) and "cnn.channels" in image
    series = teacher_space(cfg, "a", (3, 64), True)
    assert series["encoder"] == Choice(("mlp", "cnn1d"))
    vector = teacher_space(cfg, "a", (12,), True)
    assert "encoder" not in vector and "mlp.hidden" in vector  # one kind: only its width
    assert isinstance(vector["lr"], Range) and vector["lr"].low < cfg.train.lr < vector["lr"].high
    chosen = with_teacher(cfg, "a", {"encoder": "mlp", "mlp.hidden": 64, "lr": 0.003})
    assert chosen.model.encoder_of("a").name == "mlp" and chosen.model.encoder_of("a").hidden == 64
    assert chosen.train_for("teacher-a").lr == 0.003 and chosen.train.lr == cfg.train.lr
    tuned = with_method(cfg, "umt", {"weight": 20.0, "train.lr": 0.002})
    assert tuned.umt.weight == 20.0 and tuned.train_for("umt").lr == 0.002
    assert at_edge({"w": Choice((1.0, 5.0))}, {"w": 5.0}) == ["w"]


def test_a_searched_study_retrains_the_chosen_values_at_its_seeds(
    tmp_path: Path, easy_overrides: list[str]
) -> None:
    cfg = load_config(overrides=[*easy_overrides, *SEARCH, "seeds=[0]"])
    result = run_study(cfg, tmp_path, log=quiet)
    search = result.summary["search"]
    assert search["source"] == "searched" and search["seed"] == 1000
    units = search["units"]
    assert set(units) == {"teacher-strong", "teacher-weak", "joint", "umt", "ume"}
    for name, unit in units.items():
        assert 1 <= len(unit["trials"]) <= 2, name  # the budget, the same for every method
        assert unit["trials"][0]["number"] == 0
    # The configured values are the first trial of every unit.
    assert units["joint"]["trials"][0]["values"]["train.lr"] == pytest.approx(cfg.train.lr)
    assert units["umt"]["trials"][0]["values"]["weight"] == cfg.umt.weight
    assert "train.lr" in units["umt"]["space"]  # every trained method searches its lr too
    # The study's own stages were trained at its seed, afresh, with the chosen values.
    joint = result.summary["per_seed"]["0"]["stages"]["joint"]
    assert joint["lr"] == pytest.approx(units["joint"]["chosen"]["train.lr"])
    assert (result.run_dir / "seed0" / "joint" / "result.json").is_file()
    assert (result.run_dir / "search" / "optuna.db").is_file()
    report = (result.run_dir / "report.md").read_text()
    assert "Recipe searched on validation" in report
    assert (result.run_dir / "figures" / "sensitivity.png").stat().st_size > 1000


def test_the_first_half_of_a_budget_is_quasi_random_and_the_same_on_every_run(
    tmp_path: Path,
) -> None:
    import optuna

    from umt.search.trials import Trials, Unit, _sampler

    unit = Unit("joint", {"train.lr": Range(1e-4, 1e-2)}, {"train.lr": 1e-3}, 4)
    assert isinstance(_sampler(1000, unit, 1), optuna.samplers.QMCSampler)
    assert isinstance(_sampler(1000, unit, 2), optuna.samplers.TPESampler)

    def drawn(where: Path) -> list[float]:
        where.mkdir()
        trials = Trials(f"sqlite:///{where / 'o.db'}", "t", 1000, "none", own=True)
        fresh = Unit("joint", unit.space, unit.first, 4)
        trials.run(fresh, lambda values, trial, at: values["train.lr"], where, 1e18, quiet)
        return [t["values"]["train.lr"] for t in fresh.trials]

    first = drawn(tmp_path / "a")
    assert len(first) == 4 and first[0] == 1e-3 and len(set(first)) == 4
    assert all(1e-4 <= lr <= 1e-2 for lr in first)
    assert drawn(tmp_path / "b") == first  # seeded: another run asks for the same values


@pytest.mark.parametrize(
    ("lead", "ties", "chosen"),
    [
        (0.005, "first", "configured"),  # 2 of 400 samples: within one SE (0.015), kept
        (0.05, "first", "best"),  # beyond noise: the better values win
        (0.005, "cost", "cheapest"),
        (0.0, None, "best"),  # no band: the raw best (ties by trial number)
    ],
)
def test_a_unit_breaks_ties_within_noise_by_its_rule(
    tmp_path: Path, lead: float, ties: str | None, chosen: str
) -> None:
    """Accuracy first: a trial beats another only beyond one standard error of the validation
    accuracy; within it a method keeps its configured values, a teacher the cheapest recipe."""
    from umt.search.trials import Trials, Unit

    space = {"train.lr": Choice((1e-3, 2e-3, 4e-3))}
    score = {1e-3: 0.90, 2e-3: 0.90 + lead, 4e-3: 0.90 + lead / 2}
    cost = {1e-3: 3, 2e-3: 2, 4e-3: 1}

    def objective(values: dict, trial: object, at: Path) -> float:
        trial.set_user_attr("cost", cost[values["train.lr"]])  # type: ignore[attr-defined]
        return score[values["train.lr"]]

    unit = Unit("joint", space, {"train.lr": 1e-3}, 6, noise_of=400 if ties else 0)
    unit.ties = ties or "cost"
    Trials(f"sqlite:///{tmp_path / 'o.db'}", "t", 0, "none", own=True).run(
        unit, objective, tmp_path, 1e18, quiet
    )
    assert {t["values"]["train.lr"] for t in unit.trials} == set(score)  # every value tried
    want = {"configured": 1e-3, "best": 2e-3 if lead else 1e-3, "cheapest": 4e-3}[chosen]
    assert unit.chosen == {"train.lr": want}


def test_bad_search_settings_are_one_clear_error(tiny_overrides: list[str]) -> None:
    with pytest.raises(UMTError, match="tune.budget"):
        load_config(overrides=[*tiny_overrides, "tune.budget=-1"])
    with pytest.raises(UMTError, match="tune.space.nope"):
        load_config(overrides=[*tiny_overrides, "tune.space={nope: {x: [1]}}"])
    with pytest.raises(UMTError, match="tune.pruner"):
        load_config(overrides=[*tiny_overrides, "tune.pruner=sometimes"])


def _run(out: Path, args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if fault:
        env["UMT_FAULT"] = fault
    cmd = [sys.executable, "-m", "umt.cli", "run", "--out", str(out)]
    for a in args:
        cmd += ["--set", a]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "fault",
    ["done:seed1000/teacher-weak", "step:umt:3"],
    ids=["after-a-teacher-trial", "inside-a-umt-trial"],
)
def test_a_search_killed_resumes_to_the_uninterrupted_numbers(
    tmp_path: Path, easy_overrides: list[str], fault: str
) -> None:
    args = [*easy_overrides, *SEARCH, "seeds=[0]"]
    clean = _run(tmp_path / "clean", args)
    assert clean.returncode == 0, clean.stderr[-2000:]
    killed = _run(tmp_path / "killed", args, fault)
    assert killed.returncode != 0  # the fault point killed it
    clock = tmp_path / "killed" / "default" / "search" / "seconds.json"
    before = read_json(clock)["seconds"]  # what the killed process spent, saved at every trial
    resumed = _run(tmp_path / "killed", args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = read_json(tmp_path / "clean" / "default" / "summary.json")
    b = read_json(tmp_path / "killed" / "default" / "summary.json")
    assert b["search"]["seconds"] >= before  # the budget spent counts the killed process too
    for unit in a["search"]["units"]:
        assert a["search"]["units"][unit]["chosen"] == b["search"]["units"][unit]["chosen"], unit
    for stage, entry in a["methods"].items():
        assert b["methods"][stage]["test_acc"] == entry["test_acc"], stage

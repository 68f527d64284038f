"""The equal tuning budget: each method's grid on validation, the val-best value kept and run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import quiet

from umt.errors import UMTError
from umt.io import read_json
from umt.search import run_study
from umt.study import load_config


def test_tune_keeps_the_val_best_value_and_writes_the_curve(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    grid = "tune.grid={joint: {train.lr: [0.001, 0.03]}, umt: {weight: [0.5, 20.0]}}"
    cfg = load_config(
        overrides=[
            *tiny_overrides,
            "methods=[joint,umt]",
            "tune.enabled=true",
            "tune.trials=2",
            grid,
        ]
    )
    result = run_study(cfg, tmp_path, log=quiet)
    tune = result.summary["tune"]
    assert tune["trials"] == 2 and set(tune["methods"]) == {"joint", "umt"}
    trials = [
        read_json(tmp_path / "default" / "tune" / f"trial{i}" / "summary.json") for i in (0, 1)
    ]
    for method, key, values in (
        ("joint", "train.lr", [0.001, 0.03]),
        ("umt", "weight", [0.5, 20.0]),
    ):
        curve = tune["methods"][method]["curve"]
        assert [p["values"][key] for p in curve] == values
        # Each point is that trial's own val score; the choice is the first best of them.
        vals = [t["methods"][method]["val_acc"]["mean"] for t in trials]
        assert [p["val"] for p in curve] == vals
        best = vals.index(max(vals))
        assert tune["methods"][method]["chosen"] == {key: values[best]}
        # Two values: either choice is at the edge of the grid, and is flagged as such.
        assert tune["methods"][method]["edge"] == [key]
        # The study ran with the chosen value: the very stage of the best trial (same key).
        chosen = trials[best]["per_seed"]["0"]["stages"][method]
        assert result.summary["per_seed"]["0"]["stages"][method]["key"] == chosen["key"]
        assert result.summary["methods"][method]["val_acc"]["mean"] == max(vals)
    assert result.trained == []  # every stage came from a trial
    joint_lr = tune["methods"]["joint"]["chosen"]["train.lr"]
    assert result.summary["methods"]["joint"]["recipe"]["lr"] == joint_lr
    report = (result.run_dir / "report.md").read_text()
    assert "same budget: 2 trial(s) per method" in report
    assert "At the edge of its grid** (weight)" in report and "widen tune.grid.umt" in report
    assert (result.run_dir / "figures" / "sensitivity.png").stat().st_size > 1000


def test_tune_refuses_unequal_budgets(tiny_overrides: list[str]) -> None:
    with pytest.raises(UMTError, match="same budget"):
        load_config(
            overrides=[*tiny_overrides, "tune.trials=2", "tune.grid={umt: {weight: [1.0]}}"]
        )
    with pytest.raises(UMTError, match="ume"):
        load_config(overrides=["tune.trials=1", "tune.grid={ume: {weights: [1.0]}}"])


def test_teacher_lr_search_sets_the_study_lr(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(
        overrides=[*tiny_overrides, "methods=[joint]", "tune.teacher_lr=[0.0001,0.01]"]
    )
    result = run_study(cfg, tmp_path, log=quiet)
    searched = result.summary["tune"]["teachers"]
    runs = [read_json(tmp_path / p["run"] / "summary.json") for p in searched["curve"]]
    means = [
        sum(e["val_acc"]["mean"] for e in r["methods"].values()) / len(r["methods"]) for r in runs
    ]
    assert [p["val"] for p in searched["curve"]] == means
    chosen = [0.0001, 0.01][means.index(max(means))]
    assert searched["chosen"] == {"train.lr": chosen}
    # Teachers and the fused model ran with the chosen lr (the teachers copied, not retrained).
    for entry in result.summary["methods"].values():
        assert entry["recipe"]["lr"] == chosen
    assert result.trained == ["seed0/joint"]
    report = (result.run_dir / "report.md").read_text()
    assert "teachers' recipe: chose train.lr=" in report
    assert "widen tune.teacher_lr/teacher_grid" in report


def test_teacher_grid_searches_every_combination_and_the_study_shares_the_best(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = load_config(
        overrides=[
            *tiny_overrides,
            "methods=[joint]",
            "tune.teacher_lr=[0.0001,0.01]",
            "tune.teacher_grid={model.encoder.hidden: [4, 32]}",
        ]
    )
    result = run_study(cfg, tmp_path, log=quiet)
    searched = result.summary["tune"]["teachers"]
    tried = [p["values"] for p in searched["curve"]]
    assert tried == [
        {"train.lr": lr, "model.encoder.hidden": h} for lr in (0.0001, 0.01) for h in (4, 32)
    ]
    vals = [p["val"] for p in searched["curve"]]
    assert searched["chosen"] == tried[vals.index(max(vals))]
    assert searched["edge"] == ["train.lr", "model.encoder.hidden"]  # two values each: both ends
    assert (tmp_path / cfg.name / "tune" / "teachers-lr0.01-hidden32").is_dir()
    # The fused model was built with the chosen width: its encoders' first layer has that size.
    state = torch.load(tmp_path / cfg.name / "seed0" / "joint" / "model.pt", weights_only=True)
    for modality in ("strong", "weak"):
        first = state[f"encoders.{modality}.net.1.weight"]  # (Flatten, Linear, ...): the Linear
        assert first.shape[0] == searched["chosen"]["model.encoder.hidden"]
    assert result.trained == ["seed0/joint"]


def test_teacher_grid_refuses_keys_outside_the_recipe(tiny_overrides: list[str]) -> None:
    with pytest.raises(UMTError, match="expected train.<field> or model.<field>"):
        load_config(overrides=["tune.teacher_grid={umt.weight: [1.0]}"])
    with pytest.raises(UMTError, match="give it once"):
        load_config(overrides=["tune.teacher_lr=[0.1]", "tune.teacher_grid={train.lr: [0.1]}"])
    cfg = load_config(overrides=[*tiny_overrides, "tune.teacher_grid={model.encoder.hiden: [4]}"])
    with pytest.raises(UMTError, match="did you mean 'model.encoder.hidden'"):
        run_study(cfg, "unused", log=quiet)


def test_grid_edges_flag_only_numeric_values_at_the_ends_of_what_was_tried() -> None:
    from umt.search.tune import edges

    curve = [{"values": {"lr": lr, "opt": o}} for lr in (0.1, 0.01, 0.03) for o in ("sgd", "adam")]
    assert edges(curve, {"lr": 0.1, "opt": "sgd"}) == ["lr"]  # the largest, listed first
    assert edges(curve, {"lr": 0.01, "opt": "adam"}) == ["lr"]  # the smallest
    assert edges(curve, {"lr": 0.03, "opt": "sgd"}) == []  # inside; strings never flagged
    assert edges([{"values": {"lr": 0.1}}], {"lr": 0.1}) == []  # one value: no grid to widen
    flags = [{"values": {"on": b}} for b in (True, False)]
    assert edges(flags, {"on": True}) == []  # booleans are not a range
    stages = [{"values": {"stages": v}} for v in ([0], [0, 1])]
    assert edges(stages, {"stages": [0]}) == []  # lists (unhashable) are not a range either

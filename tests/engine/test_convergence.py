"""Training that converges: early stopping, the plateau schedule, the flags of a stage still
improving at the cap or a teacher under its own probe; per-method recipes; unchanged keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from helpers import quiet
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from umt.config import config_hash
from umt.engine import StageModule, TrainConfig, is_converged
from umt.io import read_json
from umt.methods import Joint
from umt.report.trust import stage_flags
from umt.study import load_config, run_study
from umt.study.cache import train_key as _hash_train


def _ckpt(run: Path, stage: str) -> dict:
    return torch.load(run / "seed0" / stage / "checkpoints" / "last.ckpt", weights_only=True)


def test_default_training_key_is_the_parent_commits() -> None:
    # config_hash(_hash_train(...)) of the then-default recipe, computed on commit 5a0f25b before
    # patience and plateau_patience existed: run directories of that recipe keep their stage
    # keys. The default recipe has since changed (40-epoch cap, plateau, patience 6): new keys.
    old = TrainConfig(epochs=20, scheduler="none", patience=0)
    assert config_hash(_hash_train(old)) == "0132e3951147"
    assert config_hash(_hash_train(replace(old, optimizer="sgd", lr=0.05))) == "e292afb2c941"
    assert config_hash(_hash_train(replace(old, patience=3))) != "0132e3951147"
    assert config_hash(_hash_train(TrainConfig())) != "0132e3951147"
    assert _hash_train(TrainConfig())["patience"] == 6  # not omitted: it is not the old 0


def test_early_stopping_stops_and_records_the_epoch(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = load_config(
        overrides=[*tiny_overrides, "methods=[]", "train.epochs=60", "train.patience=2"]
    )
    result = run_study(cfg, tmp_path, log=quiet, report=False)
    for m in ("strong", "weak"):
        r = read_json(result.run_dir / "seed0" / f"teacher-{m}" / "result.json")
        # Stopped two epochs after the best (no strict improvement since), well before the cap.
        assert r["stopped_epoch"] == r["best_epoch"] + 2 < 59
        assert r["converged"] is True and r["epochs"] == 60
        logged = [
            ln.split(",")
            for ln in (result.run_dir / "seed0" / f"teacher-{m}" / "metrics.csv")
            .read_text()
            .splitlines()
        ]
        epoch = logged[0].index("epoch")
        assert max(int(row[epoch]) for row in logged[1:] if row[epoch]) == r["stopped_epoch"]


def test_plateau_scheduler_halves_the_lr_when_val_stops_improving(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = TrainConfig(lr=0.01, scheduler="plateau", plateau_patience=1, gamma=0.5)
    module = StageModule(
        nn.Linear(2, 2), Joint(), cfg, "s", metric=MulticlassAccuracy(2), metric_key="acc"
    )
    conf = module.configure_optimizers()
    assert conf["lr_scheduler"]["monitor"] == "val/acc"
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for score in (0.5, 0.6, 0.6, 0.6, 0.6, 0.6):  # val accuracy per epoch
        sched.step(score)
        lrs.append(opt.param_groups[0]["lr"])
    # "max" mode: a second epoch without improvement (patience 1) halves it, twice.
    assert lrs == [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025]
    overrides = ["methods=[]", "train.epochs=4", "train.scheduler=plateau"]
    result = run_study(load_config(overrides=[*tiny_overrides, *overrides]), tmp_path, log=quiet)
    assert result.summary["methods"]["teacher-weak"]["val_acc"]["mean"] > 0.1  # 10 classes


def test_flags_for_the_best_epoch_at_the_cap_and_an_under_trained_head() -> None:
    at_cap = [{"best_epoch": 9, "epochs": 10, "val_acc": 0.70}]
    early = [{"best_epoch": 3, "epochs": 10, "val_acc": 0.70}]
    assert stage_flags("joint", early, None, "acc") == []
    assert stage_flags("joint", at_cap, None, "acc")[0].startswith("best epoch at the cap")
    # 2.5 points under the probe: within the 3-point allowance; 3.5 points: flagged.
    assert stage_flags("teacher-a", early, 0.725, "acc") == []
    flags = stage_flags("teacher-a", early, 0.735, "acc")
    assert len(flags) == 1 and "3.5 points below the linear probe" in flags[0]
    # Best at the first epoch: a failure to learn, unless the stage started from trained
    # encoders (UMT from its teachers or joint's) and kept its start.
    first = {"best_epoch": 0, "stopped_epoch": 6, "epochs": 40, "val_acc": 0.7}
    assert stage_flags("umt", [first], None, "acc")[0].startswith("best epoch is the first")
    assert stage_flags("umt", [{**first, "warm_start": True}], None, "acc") == []
    # result.json's own converged (early stopping) wins over the epoch arithmetic.
    assert stage_flags("joint", [{**at_cap[0], "converged": True}], None, "acc") == []
    assert not is_converged(18, 20) and is_converged(17, 20)


def test_a_one_epoch_study_flags_every_stage_and_reports_it(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = load_config(overrides=[*tiny_overrides, "methods=[joint]", "train.epochs=1"])
    result = run_study(cfg, tmp_path, log=quiet)
    for stage, entry in result.summary["methods"].items():
        assert any(f.startswith("best epoch at the cap") for f in entry["flags"]), stage
        assert entry["recipe"] == {"optimizer": "adam", "lr": 0.01}
    report = (result.run_dir / "report.md").read_text()
    assert "**Flags:**" in report and "joint (naive fusion): best epoch at the cap" in report


def test_a_method_recipe_changes_its_optimiser_and_key_only(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    base = [*tiny_overrides, "methods=[joint,ogm_ge]"]
    plain = run_study(load_config(overrides=base), tmp_path / "a", log=quiet, report=False)
    sgd = ["ogm_ge.train.optimizer=sgd", "ogm_ge.train.lr=0.02"]  # the default: sgd, 0.05
    tuned = run_study(load_config(overrides=[*base, *sgd]), tmp_path / "b", log=quiet)
    keys_a = {s: r["key"] for s, r in plain.summary["per_seed"]["0"]["stages"].items()}
    keys_b = {s: r["key"] for s, r in tuned.summary["per_seed"]["0"]["stages"].items()}
    assert keys_a["ogm_ge"] != keys_b["ogm_ge"]
    assert {s: k for s, k in keys_a.items() if s != "ogm_ge"} == {
        s: k for s, k in keys_b.items() if s != "ogm_ge"
    }
    stage = tuned.run_dir / "seed0" / "ogm_ge"
    config = yaml.safe_load((stage / "config.yaml").read_text())
    assert config["train"]["optimizer"] == "sgd" and config["train"]["lr"] == 0.02
    groups = _ckpt(tuned.run_dir, "ogm_ge")["optimizer_states"][0]["param_groups"]
    assert groups[0]["lr"] == 0.02 and groups[0]["momentum"] == 0.9  # SGD's, not Adam's betas
    assert "betas" in _ckpt(tuned.run_dir, "joint")["optimizer_states"][0]["param_groups"][0]
    assert tuned.summary["methods"]["ogm_ge"]["recipe"] == {"optimizer": "sgd", "lr": 0.02}
    report = (tuned.run_dir / "report.md").read_text()
    assert "OGM-GE sgd (lr 0.02)" in report
    assert "under an adaptive optimiser" not in report  # OGM-GE ran under SGD here


def test_recipes_are_checked_by_name() -> None:
    from umt.errors import UMTError

    with pytest.raises(UMTError, match="optimiser|optimizer"):
        load_config(overrides=["ogm_ge.train.optimiser=sgd"])
    assert load_config(overrides=["joint.train.lr=0.01"]).train_for("joint").lr == 0.01

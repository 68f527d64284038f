"""Where numbers came from, and what keys the cache (issue 28, cases 5, 9 and 10): the NYU
loader's ``labels13/`` in the data's content key; no commit recorded from another project's
checkout; a resumed study says which stages an earlier run trained; a TorchScript teacher is said
to run its own code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT
from helpers.runs import TINY
from torch import nn

from umt.data import DataConfig
from umt.data.fingerprint import data_key
from umt.models.pretrained import read_teacher
from umt.search import run_study
from umt.study import load_config
from umt.study.provenance import git_commit


def test_nyuv2_13_class_labels_are_part_of_the_data_key(tmp_path: Path) -> None:
    root = tmp_path / "nyu"
    (root / "labels13").mkdir(parents=True)
    (root / "meta.json").write_text("{}")
    np.save(root / "labels13" / "train.npy", np.zeros((2, 4, 4), np.uint8))
    cfg = DataConfig(name="nyuv2", root=str(root))
    before = data_key(cfg)
    np.save(root / "labels13" / "train.npy", np.ones((2, 4, 4), np.uint8))  # edited labels
    assert data_key(cfg) != before


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_no_commit_is_recorded_from_a_checkout_that_does_not_hold_the_code(tmp_path: Path) -> None:
    outer = tmp_path / "their-project"
    outer.mkdir()
    _git(outer, "init", "-q")
    (outer / "README").write_text("theirs\n")
    _git(outer, "add", "README")
    _git(outer, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    package = outer / ".venv" / "site-packages" / "umt"  # installed inside their checkout
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert git_commit(package) is None
    assert git_commit(outer) == _git(outer, "rev-parse", "HEAD")  # a tracked folder: its commit


def test_a_resumed_study_says_which_stages_an_earlier_run_trained(tmp_path: Path) -> None:
    cfg = load_config(overrides=[*TINY, "methods=[]"])
    first = run_study(cfg, tmp_path, log=lambda _: None)
    assert first.summary["provenance"]["runs"]["from_earlier_runs"] == []
    (tmp_path / "default" / "seed0" / "teacher-weak" / "result.json").unlink()
    again = run_study(cfg, tmp_path, log=lambda _: None)
    runs = again.summary["provenance"]["runs"]
    assert runs["trained_now"] == ["seed0/teacher-weak"]
    assert runs["from_earlier_runs"] == ["seed0/teacher-strong"]
    stages = again.summary["per_seed"]["0"]["stages"]
    total = sum(stages[s]["train_seconds"] for s in ("teacher-strong", "teacher-weak"))
    assert runs["train_seconds_all_runs"] == pytest.approx(total, abs=0.02)
    report = (tmp_path / "default" / "report.md").read_text()
    assert "1 trained stage(s) come from an earlier run in this directory" in report
    assert "`seed0/teacher-strong`" in report
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["provenance"]["runs"] == runs


def test_a_torchscript_teacher_is_said_to_run_its_own_code(tmp_path: Path) -> None:
    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.script(nn.Linear(3, 2)), str(path))
    with pytest.warns(UserWarning, match=r"TorchScript module, a program: the study runs its code"):
        read_teacher(path, what="teachers.a")
    docs = (ROOT / "docs" / "configuration.md").read_text()
    assert "TorchScript" in docs and "runs its code" in docs

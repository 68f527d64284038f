"""Damaged stage files (issue 28, cases 3 and 4): every rerun raised a traceback, or used the
damaged file silently. Now a file that is not what the stage left is detected (a record that is
not JSON, or a content hash recorded in ``result.json`` when the stage finished) and only that
stage is recomputed: the summary equals the undamaged run's."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.runs import TINY, numbers

from umt.search import run_study
from umt.study import load_config

STAGES = Path("default") / "seed0"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """A finished tiny study (its folder, a copy of it) and its numbers. Each test damages the
    folder itself, restored from the copy first: a run directory in another place would be a
    moved one, whose checkpoints name their old folder."""
    out = tmp_path_factory.mktemp("finished")
    result = run_study(load_config(overrides=TINY), out, log=lambda _: None)
    copy = tmp_path_factory.mktemp("copy")
    shutil.copytree(out, copy, dirs_exist_ok=True)
    return out, copy, numbers(result.summary)


def _restored(finished: tuple[Path, Path, dict[str, Any]]) -> Path:
    out, copy, _ = finished
    shutil.rmtree(out)
    shutil.copytree(copy, out)
    return out


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x9fgarbage{")


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_values(path: Path) -> None:
    a = np.load(path)
    np.save(path, np.zeros_like(a))  # a valid .npy of the right shape: only its values are wrong


def _flip(path: Path) -> None:
    a = np.load(path)
    np.save(path, 1 - a)


def _zero_weights(path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, path)


def _retrain_umt(run: Path) -> None:
    shutil.rmtree(run / STAGES / "umt")  # UMT trains again: it reads the teachers' features


Damage = Callable[[Path], None]
CASES: dict[str, tuple[Damage, list[str]]] = {
    # case 3: a record that is not JSON (or an array cut off): a traceback on every rerun
    "result.json garbage": (lambda r: _garbage(r / STAGES / "joint/result.json"), ["joint"]),
    "probe.json garbage": (lambda r: _garbage(r / STAGES / "joint/probe.json"), []),
    "features-train.json garbage": (
        lambda r: (_garbage(r / STAGES / "teacher-strong/features-train.json"), _retrain_umt(r)),
        ["umt"],
    ),
    "features-train.npy cut off": (
        lambda r: (_cut(r / STAGES / "teacher-strong/features-train.npy"), _retrain_umt(r)),
        ["umt"],
    ),
    "config.yaml garbage, the stage retrains": (
        lambda r: (
            _garbage(r / STAGES / "joint/config.yaml"),
            (r / STAGES / "joint/result.json").unlink(),
        ),
        ["joint"],
    ),
    # case 4: silently wrong numbers
    "teacher features zeroed": (
        lambda r: (_zero_values(r / STAGES / "teacher-weak/features-train.npy"), _retrain_umt(r)),
        ["umt"],
    ),
    "test outcomes flipped": (lambda r: _flip(r / STAGES / "umt/test-outcomes.npy"), ["umt"]),
    "best.ckpt of a finished stage cut off": (
        lambda r: _cut(r / STAGES / "joint/checkpoints/best.ckpt"),
        ["joint"],
    ),
    "metrics.csv deleted": (lambda r: (r / STAGES / "joint/metrics.csv").unlink(), ["joint"]),
    "model.pt zeroed": (  # it loads: only its values are wrong; UMT, keyed on it, stays
        lambda r: _zero_weights(r / STAGES / "teacher-weak/model.pt"),
        ["teacher-weak"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_stage_file_is_recomputed_not_trusted(
    finished: tuple[Path, Path, dict[str, Any]], case: str
) -> None:
    run, expected = _restored(finished), finished[2]
    damage, retrained = CASES[case]
    damage(run)
    lines: list[str] = []
    again = run_study(load_config(overrides=TINY), run, log=lines.append)
    assert again.trained == [f"seed0/{s}" for s in retrained], lines
    assert numbers(again.summary) == expected
    # ... and a third run finds everything whole
    third = run_study(load_config(overrides=TINY), run, log=lambda _: None)
    assert third.trained == []


def test_a_damage_is_said_in_one_line_naming_the_file(
    finished: tuple[Path, Path, dict[str, Any]],
) -> None:
    run = _restored(finished)
    _flip(run / STAGES / "joint/test-outcomes.npy")
    lines: list[str] = []
    run_study(load_config(overrides=TINY), run, log=lines.append)
    said = [line for line in lines if "test-outcomes.npy" in line]
    assert len(said) == 1 and "changed since the stage finished" in said[0], lines
    assert "recomputing that stage" in said[0]

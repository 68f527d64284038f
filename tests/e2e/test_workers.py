"""Stages trained at once in worker processes (``jobs=2``) give the same numbers as one after
another, every stage trained once, and a killed worker's stage resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.runs import numbers

from umt.errors import UMTError
from umt.study import load_config, run_study


def test_workers_give_the_serial_numbers_and_resume_after_a_killed_worker(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    study = [*tiny_overrides, "methods=[joint,umt,ume]"]
    serial = run_study(
        load_config(overrides=[*study, "jobs=1", "name=serial"]),
        tmp_path,
        report=False,
        log=lambda _: None,
    )
    lines: list[str] = []
    monkeypatch.setenv("UMT_FAULT", "step:joint:3")  # a worker is killed mid-stage
    with pytest.raises(UMTError, match="worker process died while training .*seed0/joint"):
        run_study(
            load_config(overrides=[*study, "jobs=2", "name=workers"]),
            tmp_path,
            report=False,
            log=lines.append,
        )
    assert any("started in a worker" in line for line in lines)
    monkeypatch.delenv("UMT_FAULT")
    resumed = run_study(
        load_config(overrides=[*study, "jobs=2", "name=workers"]),
        tmp_path,
        report=False,
        log=lines.append,
    )
    assert "seed0/joint" in resumed.trained  # the killed stage, finished now
    assert len(set(resumed.trained)) == len(resumed.trained)  # nothing trained twice
    assert _numbers(resumed.summary) == _numbers(serial.summary)
    for seed in (0,):  # each stage's own record too (keys, epochs, scores)
        for stage in ("teacher-strong", "teacher-weak", "joint", "umt"):
            a = json.loads(
                (tmp_path / "serial" / f"seed{seed}" / stage / "result.json").read_text()
            )
            b = json.loads(
                (tmp_path / "workers" / f"seed{seed}" / stage / "result.json").read_text()
            )
            # ``files``: the content hashes of the stage's files (some hold times): not numbers
            a, b = ({k: v for k, v in numbers(r).items() if k != "files"} for r in (a, b))
            assert a == b, stage


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without its times, provenance and the study's name (serial vs workers)."""
    return {k: v for k, v in numbers(summary).items() if k != "study"}

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


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has stopped (its new parent may never reap it)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_end_when_the_study_process_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the study leaves no worker training on (and writing) behind it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers.runs import TINY

    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(tmp_path)]
    for o in [*TINY, "jobs=2", "train.epochs=200", "train.patience=0", "seeds=[0,1]"]:
        args += ["--set", o]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    study = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert study.stdout is not None
    started = 0
    for line in study.stdout:  # both workers have a stage (each is spawned on demand)
        started += b"started in a worker" in line
        if started == 2:
            break
    deadline = time.monotonic() + 20
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [p for p in _children(study.pid) if b"spawn_main" in _cmdline(p)]
        time.sleep(0.1)
    assert len(workers) == 2, workers
    study.send_signal(signal.SIGKILL)
    study.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""

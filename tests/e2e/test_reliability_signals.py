"""Ctrl-C and SIGTERM inside training (issue 28, case 1): Lightning caught the interrupt inside
``trainer.fit`` and exited 1 with nothing said. A real ``umt run`` is signalled from outside while
its first stage trains: it exits 130 (SIGINT) or 143 (SIGTERM) with the resume message, leaves
nothing half-written, and the same command resumes to the uninterrupted run's numbers."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.runs import TINY, half_written, numbers, umt_process

from umt.search import run_study
from umt.study import load_config

# Long enough (40 epochs of 4 steps) that a signal sent after the first epoch lands in training.
LONG = [*TINY, "train.epochs=40", "methods=[]"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("whole")
    return numbers(run_study(load_config(overrides=LONG), out, log=lambda _: None).summary)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_inside_training_stops_resumably(
    tmp_path: Path, uninterrupted: dict[str, Any], sig: signal.Signals, status: int
) -> None:
    stage = tmp_path / "default" / "seed0" / "teacher-strong"
    proc = umt_process(tmp_path, LONG)
    deadline = time.monotonic() + 120
    while not (stage / "checkpoints" / "last.ckpt").is_file():  # the first epoch is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)

    assert not (stage / "result.json").exists(), "the stage finished before the signal came"
    assert proc.returncode == status, (out, err)
    assert err.strip() == "umt: interrupted; run the same command again to resume", err
    assert half_written(tmp_path) == []
    for ckpt in stage.rglob("*.ckpt"):
        torch.load(ckpt, map_location="cpu", weights_only=True)  # each whole

    lines: list[str] = []  # the same command again (in this process: quicker)
    resumed = run_study(load_config(overrides=LONG), tmp_path, log=lines.append)
    assert any("resuming stage teacher-strong from epoch" in line for line in lines), lines
    assert numbers(resumed.summary) == uninterrupted


def test_an_interrupt_inside_fit_reaches_the_caller_and_ctrl_c_works_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process: Ctrl-C at a training step raises ``KeyboardInterrupt`` out of ``run_study``
    (Lightning turned it into ``SystemExit(1)``), and Ctrl-C is handled again afterwards
    (Lightning left it ignored)."""
    monkeypatch.setenv("UMT_FAULT", "step:teacher-strong:3")
    monkeypatch.setenv("UMT_FAULT_SIGNAL", "INT")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_study(load_config(overrides=[*TINY, "methods=[]"]), tmp_path, log=lambda _: None)
    assert signal.getsignal(signal.SIGINT) is before
    assert half_written(tmp_path) == []

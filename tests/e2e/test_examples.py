"""The "your own model" examples run, find the lazy visual encoder and close its gap: the plain
loop and Lightning here; the Hugging Face Trainer and the DDP loop in
tests/yours/test_examples_stacks.py."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ROOT

EXAMPLES = ROOT / "examples"


def run_example(name: str) -> dict[str, Any]:
    main = runpy.run_path(str(EXAMPLES / name))["main"]
    out: dict[str, Any] = main()
    return out


def check_gap_closes(out: dict[str, Any], printed: str) -> None:
    before, after = out["before"], out["after"]
    assert before.failures == ["visual"], before.table()  # the lazy encoder is found
    assert after["visual"].gap < before["visual"].gap - 0.05, (before.table(), after.table())
    assert after["visual"].model.test_acc > before["visual"].model.test_acc
    assert not after["audio"].failure
    # the teacher is the same in both diagnoses (given the second time)
    assert after["visual"].teacher.test_acc == pytest.approx(before["visual"].teacher.test_acc)
    line = f"visual: gap to the teacher {100 * before['visual'].gap:+.1f} -> "
    assert line + f"{100 * after['visual'].gap:+.1f} pts" in printed


def test_plain_loop_example(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_example("own_model_plain_loop.py")
    check_gap_closes(out, capsys.readouterr().out)


def test_lightning_example(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = run_example("own_model_lightning.py")
    check_gap_closes(out, capsys.readouterr().out)
    out["trainer"].save_checkpoint(tmp_path / "student.ckpt")
    state = torch.load(tmp_path / "student.ckpt", weights_only=True)["state_dict"]
    # the student's weights only: no teacher weight (and no projector: the sizes are equal)
    assert set(state) == {f"model.{k}" for k in out["module"].model.state_dict()}
    # the callback's probe gap, logged while it trained (epochs 5 and 10), closes
    history = out["history"]
    assert [row["epoch"] for row in history] == [4.0, 9.0]
    assert history[-1]["visual"] < out["before"]["visual"].gap - 0.05

"""The Hugging Face Trainer example runs, finds the lazy visual encoder and closes its gap (the
plain-loop and Lightning examples: tests/e2e/test_examples.py; DDP: test_ddp_example.py)."""

from __future__ import annotations

import re
import runpy

import pytest
from helpers import ROOT

EXAMPLES = ROOT / "examples"


def gaps(printed: str) -> tuple[float, float]:
    found = re.search(r"visual: gap to the teacher ([+-][\d.]+) -> ([+-][\d.]+) pts", printed)
    assert found, printed
    return float(found[1]), float(found[2])


def test_hf_trainer_example(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    out = runpy.run_path(str(EXAMPLES / "own_model_hf_trainer.py"))["main"]()
    before, after = gaps(capsys.readouterr().out)
    assert out["before"].failures == ["visual"], out["before"].table()
    assert after < before - 5
    logged = [h for h in out["trainer"].state.log_history if "distill/visual" in h]
    assert logged  # the distillation terms reach Hugging Face's logs

"""The DDP example (two gloo processes on the CPU) runs, finds the lazy visual encoder and closes
its gap. It runs in a subprocess with a time limit, so that a stuck rendezvous fails the test
instead of hanging the run; most of its time is three processes importing ``umt``."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import ROOT


def gaps(printed: str) -> tuple[float, float]:
    found = re.search(r"visual: gap to the teacher ([+-][\d.]+) -> ([+-][\d.]+) pts", printed)
    assert found, printed
    return float(found[1]), float(found[2])


def test_ddp_example() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "own_model_ddp.py")],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    before, after = gaps(run.stdout)
    assert "**modality failure**" in run.stdout.split("With UMTLoss")[0]
    assert after < before - 5, run.stdout

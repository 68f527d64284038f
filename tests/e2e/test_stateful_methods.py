"""Methods that carry state across steps and epochs (G2D's prioritisation, InfoReg's trace history,
Re-learning's re-initialisation): killed mid-epoch and resumed, a study gives the uninterrupted
result; under DDP their ranks stay in step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NEW = [
    "seeds=[0]",
    "data.name=synthetic",
    "methods=[g2d,inforeg,relearn]",
    "g2d.prioritize_end=0.34",  # a share of the 3 epochs: prioritised in epoch 0
    "relearn.every=0.67",  # a share of the 3 epochs: re-initialised at the start of epoch 2
    "relearn.max_samples=200",
    "train.epochs=3",
    "train.lr=0.01",
    "train.progress=false",
    "train.threads=1",
    "data.synthetic.n_train=320",
    "data.synthetic.n_val=101",
    "data.synthetic.n_test=100",
    "model.encoder.hidden=32",
    "model.encoder.feature_dim=16",
    "model.head_hidden=16",
    "probe.max_iter=20",
]


def _cli(out: Path, extra: list[str], fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.pop("UMT_FAULT", None)
    env["UMT_FAULT_SIGNAL"] = "KILL"
    if fault:
        env["UMT_FAULT"] = fault
    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(out)]
    for o in [*NEW, *extra]:
        args += ["--set", o]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The per-seed stage results without timings."""
    return {
        stage: {k: v for k, v in r.items() if k != "train_seconds"}
        for stage, r in summary["per_seed"]["0"]["stages"].items()
    }


def test_killed_new_methods_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    whole = _cli(tmp_path / "whole", [])
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = _numbers(json.loads((tmp_path / "whole" / "default" / "summary.json").read_text()))
    # Each new method killed mid-epoch 2 (5 steps an epoch): g2d after its prioritisation,
    # inforeg with a trace history, relearn right after its re-initialisation. Each run resumes
    # the stage the run before killed.
    out = tmp_path / "killed"
    for fault in ("step:g2d:12", "step:inforeg:12", "step:relearn:12"):
        killed = _cli(out, [], fault)
        assert killed.returncode != 0 and "Traceback" not in killed.stdout
    resumed = _cli(out, [])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "default" / "summary.json").read_text())
    assert _numbers(summary) == expected  # bit-identical on CPU


@pytest.mark.slow  # about 50 s here (2 processes, 2 teachers and 3 methods): over the 40 s budget
def test_new_methods_under_ddp_keep_the_ranks_in_step(tmp_path: Path) -> None:
    extra = ["train.epochs=2", "train.batch_size=32", "train.devices=2", "train.strategy=ddp"]
    extra += ["train.accelerator=cpu", "relearn.every=0.5"]  # every epoch of 2
    done = _cli(tmp_path, extra)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    for stage, r in summary["per_seed"]["0"]["stages"].items():
        # fit_val_acc: each rank's model on its half of val, synced; val_acc: rank 0's model
        # on all of val. Equal only if the ranks' models are the same after every re-init and
        # regulation (diverged ranks would each score their own model).
        assert r["fit_val_acc"] == pytest.approx(r["val_acc"], abs=1e-6), stage
    assert {"g2d", "inforeg", "relearn"} <= set(summary["methods"])

"""Tiny studies run as a user runs them, for the reliability tests (issue 28): the command in a
subprocess (signals, kills, a full disk), and a summary's numbers without what differs between
any two runs (times, the date, the machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: A tiny study: two teachers, joint, UMT and UME in seconds.
TINY = [
    "seeds=[0]",
    "data.name=synthetic",
    "train.epochs=2",
    "train.lr=0.01",
    "train.progress=false",
    "train.threads=1",
    "jobs=1",
    "data.synthetic.n_train=200",
    "data.synthetic.n_val=100",
    "data.synthetic.n_test=100",
    "model.encoder.hidden=32",
    "model.encoder.feature_dim=16",
    "model.head_hidden=16",
    "probe.max_iter=20",
]

_TIMES = ("train_seconds", "wall_seconds", "provenance", "cost")  # cost: the verdict's seconds


def numbers(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``summary`` without its times and provenance: what two runs of one study must share."""

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if k not in _TIMES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return dict(strip(summary))


def umt_command(
    out: Path,
    overrides: Sequence[str] = TINY,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``umt run --out OUT --set ...`` in a fresh process (no fault injection unless ``env``
    sets it)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("UMT_")}
    full.update(env or {})
    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    return subprocess.run(args, env=full, capture_output=True, text=True, timeout=timeout)


def umt_process(out: Path, overrides: Sequence[str] = TINY) -> subprocess.Popen[str]:
    """``umt run`` started in the background (to be signalled)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMT_")}
    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def half_written(run_dir: Path) -> list[Path]:
    """What an interrupted write could leave: temporary files and partial folders."""
    return [p for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".partial"))]

"""The default study's wall time (issue 17: ``umt run`` in at most 120 s on 2 quiet cores).

:func:`time_default_study` is the hook: it times ``umt run`` in a fresh process (imports, data,
every stage, probes, report: what a user waits for) and reads the stages' own training seconds
from the ``summary.json`` it writes. ``DEFAULT`` runs the default study with one seed (the seeds
run one after another, so three seeds take about three times as long); ``QUICK`` a tiny study,
for the smoke test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import umt

#: ``--set`` overrides of the timed run: the default study, one seed.
DEFAULT = ("seeds=[0]",)
#: A study of a few seconds (tiny synthetic data and models), to check that the hook works.
QUICK = (
    "seeds=[0]",
    "data.name=synthetic",
    "data.synthetic.n_train=64",
    "data.synthetic.n_val=32",
    "data.synthetic.n_test=32",
    "train.epochs=1",
    "model.encoder.hidden=8",
    "model.encoder.feature_dim=8",
    "model.head_hidden=8",
    "probe.max_iter=5",
)


def time_default_study(
    overrides: Sequence[str] = DEFAULT, *, threads: int = 1, fresh_process: bool = True
) -> dict[str, Any]:
    """Wall seconds of ``umt run --set train.threads=THREADS --set OVERRIDE ...``, the stages'
    ``train_seconds`` (``summary.json``) and their share of the wall time.

    ``fresh_process=False`` calls ``run_study`` in this process instead, without the report
    (no interpreter start, imports or figures: for the smoke test).

    Raises:
        RuntimeError: ``umt run`` failed (its error output is in the message).
    """
    sets = [f"train.threads={threads}", "train.progress=false", *overrides]
    src = str(Path(umt.__file__).resolve().parents[1])  # the same umt as this process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="umt-bench-study-") as out:
        args = [sys.executable, "-m", "umt.cli", "run", "--out", out]
        for s in sets:
            args += ["--set", s]
        start = time.perf_counter()
        if fresh_process:
            done = subprocess.run(args, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"`{' '.join(args)}` failed:\n{done.stderr[-3000:]}")
        else:
            from umt.study import load_config, run_study

            run_study(load_config(overrides=sets), out, log=lambda _: None, report=False)
        wall = time.perf_counter() - start
        summary = json.loads(next(Path(out).glob("*/summary.json")).read_text())
    stages = {
        f"seed{seed}/{stage}": float(r["train_seconds"])
        for seed, run in summary["per_seed"].items()
        for stage, r in run["stages"].items()
        if "train_seconds" in r
    }
    total = sum(stages.values())
    return {
        "default_wall_s": wall,
        "stages_train_s": stages,
        "stages_train_sum_s": total,
        "stages_over_wall": total / wall,
        "seeds": len(summary["per_seed"]),
        "overrides": sets,
        "fresh_process": fresh_process,
    }

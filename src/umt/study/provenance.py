"""Where a study's numbers came from: software versions, machine, date, and the key settings.

``summary.json`` holds it under ``provenance`` and ``report.md`` ends with it, so that a number
quoted from a report can be traced to the code and settings that produced it. It is not part of
any cache key.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from umt.study.config import StudyConfig


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), with ``-dirty``
    if it has uncommitted changes; ``None`` outside a checkout, without git, or where ``path``'s
    files are not tracked by the checkout around it (a package installed inside another
    project's checkout: that project's commit says nothing about this code)."""
    where = path if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        tracked = subprocess.run(
            ["git", "-C", str(where), "ls-files", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if tracked.returncode != 0 or not tracked.stdout.strip():
            return None
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def version() -> str:
    """This package's version, as installed (``unknown`` when run from a bare source tree)."""
    try:
        return importlib.metadata.version("unimodal-teacher")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def provenance(cfg: StudyConfig) -> dict[str, Any]:
    """The software, machine and key settings of a study run now (plain JSON data).

    Example:
        >>> from umt.study import load_config
        >>> p = provenance(load_config(overrides=["train.epochs=3"]))
        >>> p["settings"]["epochs"], sorted(p["versions"])
        (3, ['lightning', 'numpy', 'python', 'torch', 'umt'])
    """
    import lightning
    import numpy

    train = cfg.train
    umt_settings = cfg.settings("umt")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "versions": {
            "umt": version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "gpu": gpu,
        "settings": {
            "data": cfg.data.name,
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "optimizer": train.optimizer,
            "lr": train.lr,
            "weight_decay": train.weight_decay,
            "scheduler": train.scheduler,
            "precision": train.precision,
            "encoder": cfg.model.encoder.name,
            "fusion": list(cfg.fusion) or cfg.model.fusion,
            "umt_lambda": umt_settings.weight,
            "umt_lambda_per_modality": dict(umt_settings.weights),
            "umt_loss": umt_settings.loss,
            "seeds": list(cfg.seeds),
        },
    }


def run_history(
    per_seed: dict[int, dict[str, Any]], trained: list[str], wall_seconds: float
) -> dict[str, Any]:
    """Which trained stages this run trained and which it found finished by an earlier run (a
    resumed or repeated study): ``wall_seconds`` covers this run only, ``train_seconds_all_runs``
    every stage's training, interrupted runs included.

    Example:
        >>> per_seed = {0: {"stages": {"joint": {"train_seconds": 2.0}, "ume": {}}}}
        >>> run_history(per_seed, [], 1.5)["from_earlier_runs"]
        ['seed0/joint']
    """
    stages = {
        f"seed{s}/{name}": r
        for s, out in per_seed.items()
        for name, r in out["stages"].items()
        if "train_seconds" in r  # trained stages (not UME, nor a teacher loaded from a file)
    }
    return {
        "trained_now": [s for s in stages if s in trained],
        "from_earlier_runs": [s for s in stages if s not in trained],
        "wall_seconds_now": wall_seconds,
        "train_seconds_all_runs": round(sum(float(r["train_seconds"]) for r in stages.values()), 2),
    }

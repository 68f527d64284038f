"""Where a study's numbers came from: software versions, machine, date, and the key settings.

``summary.json`` holds it under ``provenance`` and ``report.md`` ends with it, so that a number
quoted from a report can be traced to the code and settings that produced it. It is not part of
any cache key.
"""

from __future__ import annotations

import datetime
import platform
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from umt.study import StudyConfig


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), with ``-dirty``
    if it has uncommitted changes; ``None`` outside a checkout or without git."""
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
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


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

    import umt

    train = cfg.train
    umt_settings = cfg.settings("umt")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "versions": {
            "umt": umt.__version__,
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


def provenance_text(p: dict[str, Any]) -> str:
    """The provenance as the report's closing paragraph (Markdown).

    Example:
        >>> p = {"versions": {"umt": "0.1.0", "torch": "2.13.0"}, "git_commit": None,
        ...      "date": "2026-01-01 00:00:00 UTC", "host": "h", "threads": 2, "gpu": None,
        ...      "settings": {"epochs": 3, "lr": 0.001}}
        >>> print(provenance_text(p))
        umt 0.1.0, torch 2.13.0; not a git checkout; 2026-01-01 00:00:00 UTC on h, 2 CPU threads, no GPU. Settings: epochs 3, lr 0.001.
    """
    versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
    commit = f"git commit `{p['git_commit']}`" if p.get("git_commit") else "not a git checkout"
    gpu = f"GPU {p['gpu']}" if p.get("gpu") else "no GPU"
    settings = ", ".join(f"{k} {v}" for k, v in p["settings"].items())
    return (
        f"{versions}; {commit}; {p['date']} on {p['host']}, {p['threads']} CPU threads, {gpu}. "
        f"Settings: {settings}."
    )

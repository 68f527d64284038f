"""A stage's checkpoints: written atomically, checked before a resume, and the bookkeeping that
makes a resumed stage look like an uninterrupted one (its log line, ``metrics.csv``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from umt.io import save_torch, write_text


def readable(path: Path) -> bool:
    """Whether ``path`` loads as a checkpoint (``torch.load``, weights only)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def resume_epoch(stage_dir: Path) -> int | None:
    """The epochs a stage has finished, if it has a checkpoint to resume from (else ``None``)."""
    last = stage_dir / "checkpoints" / "last.ckpt"
    if not (last.is_file() and resumable(last)):
        return None
    return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) + 1


def metric_rows(path: Path, until_epoch: int | None = None) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` (those of the first ``until_epoch`` epochs, if given)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if until_epoch is None:
        return rows
    return [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) < until_epoch]


def write_metric_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """``rows`` as one ``metrics.csv`` (the union of their columns, sorted as Lightning does)."""
    columns = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def resumable(last: Path) -> bool:
    """Whether training can resume from ``last``: it loads, and so does the best checkpoint it
    names (else the resumed run would end at ``torch.load(best)``, on every rerun)."""
    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
    except Exception:
        return False
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            best = last.parent / Path(value["best_model_path"]).name  # the run dir may have moved
            return best.is_file() and readable(best)
    return True


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through ``umt.io``'s atomic writer: Lightning writes a
    checkpoint's bytes straight into its final name, so a full disk leaves a cut-off
    ``best.ckpt`` there; here it leaves the previous one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_torch(path, checkpoint)


def start_message(stage: str, stage_dir: Path, epochs: int) -> str:
    """What the log says when a stage starts: training afresh, or resuming (and from where)."""
    done = resume_epoch(stage_dir)
    if done is None:
        return f"{stage}: training ({epochs} epochs)"
    if done < epochs:
        return (
            f"resuming stage {stage} from epoch {done + 1} of {epochs} "
            f"({done} finished before the interruption)"
        )
    return f"{stage}: all {epochs} epochs trained; reading its checkpoints"

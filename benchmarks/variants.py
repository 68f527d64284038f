"""Variants of ``umt.engine.fit`` with one part changed, to measure what that part costs.

``fit`` itself is called each time; only the one class named is swapped for the duration of the
call (``umt.engine.StageModule`` or ``umt.engine.ModelCheckpoint``), so everything else in the
measurement is the engine's own code. These are candidates for the engine, not replacements.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

import umt.engine as engine
from umt.data.base import Batch
from umt.engine import DivergenceError, StageModule
from umt.faults import fault_active, fault_point


class EpochLoggedModule(StageModule):
    """``StageModule`` whose metrics are summed in tensors during the epoch and logged once at
    its end, instead of one ``self.log`` call per training step and two per validation batch.

    The logged values are the same sample-weighted epoch means that ``on_epoch=True`` gives.
    """

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._sums: dict[str, torch.Tensor] = {}  # key -> sum over the epoch of value * batch size
        self._count = 0

    def on_validation_epoch_start(self) -> None:
        self._val_loss = torch.zeros((), device=self.device)  # sum of loss * batch size
        self._val_count = 0

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.method.step(self.model, batch)
        loss = out["loss"]
        fault_point(f"step:{self.stage}:{self.global_step}")
        if fault_active(f"nan:{self.stage}:{self.global_step}"):
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise DivergenceError(f"stage {self.stage!r}: the loss became {loss.item()}")
        n = len(batch["label"])
        for k, v in out.items():
            if k != "logits" and v.ndim == 0:
                self._sums[k] = self._sums.get(k, 0) + v.detach() * n
        self._count += n
        return loss

    def on_train_epoch_end(self) -> None:
        logs = {f"train/{k}": s / self._count for k, s in self._sums.items()}
        self.log_dict(logs, on_step=False, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self.model(batch)
        n = len(batch["label"])
        self._val_loss += F.cross_entropy(logits, batch["label"]).detach() * n
        self._val_count += n
        self.val_acc.update(logits, batch["label"])

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self._val_loss / self._val_count, sync_dist=True)
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)  # synced by torchmetrics
        self.val_acc.reset()


def checkpoint_at_end(epochs: int) -> type[ModelCheckpoint]:
    """A ``ModelCheckpoint`` that writes ``best``/``last`` at the final epoch only."""

    class AtEnd(ModelCheckpoint):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(every_n_epochs=epochs, **kwargs)

    return AtEnd


@contextmanager
def swapped(**classes: type) -> Iterator[None]:
    """Within the block, ``umt.engine.<name>`` is the class given (e.g. ``StageModule=...``)."""
    saved = {name: getattr(engine, name) for name in classes}
    try:
        for name, cls in classes.items():
            setattr(engine, name, cls)
        yield
    finally:
        for name, cls in saved.items():
            setattr(engine, name, cls)

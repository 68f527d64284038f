"""Variants of ``umt.engine.fit`` with one part changed, to measure what that part costs.

``fit`` itself is called each time, with one of its seams given another class (``module=`` for
the Lightning adapter, ``checkpoint_cls=`` for the checkpoint callback), so everything else in
the measurement is the engine's own code. These are candidates for the engine, not replacements.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from umt.engine import StageModule


class EpochLoggedModule(StageModule):
    """``StageModule`` whose validation metrics are summed in tensors during the epoch and
    logged once at its end, instead of two ``self.log`` calls per validation batch. (The engine
    itself now logs its training scalars once per epoch: this variant used to do that too, and
    the "epoch logging" rows measured what per-step logging cost before it was adopted.)

    The logged values are the same sample-weighted epoch means that ``on_epoch=True`` gives.
    It overrides only the adapter's validation logging seam (``log_validation``).
    """

    def on_validation_epoch_start(self) -> None:
        self._val_loss = torch.zeros((), device=self.device)  # sum of loss * batch size
        self._val_count = 0

    def log_validation(self, loss: torch.Tensor, n: int) -> None:
        self._val_loss += loss.detach() * n
        self._val_count += n

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self._val_loss / self._val_count, sync_dist=True)
        self.log(self.val_name, self.val_acc.compute(), prog_bar=True)  # synced by torchmetrics
        self.val_acc.reset()


def checkpoint_at_end(epochs: int) -> type[ModelCheckpoint]:
    """A ``ModelCheckpoint`` that writes ``best``/``last`` at the final epoch only."""

    class AtEnd(ModelCheckpoint):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(every_n_epochs=epochs, **kwargs)

    return AtEnd

"""The plain-loop example in your own ``LightningModule``: UMT is three added lines.

Same data and model as ``own_model_plain_loop.py``; ``umt.yours.lightning.UMTMixin`` gives the module
``configure_umt`` (the loss, hooks on the encoders) and ``umt_loss`` (the distillation term,
logged as ``train/distill/<modality>``). ``ProbeGapCallback`` logs each encoder's probe gap to its
teacher while it trains (``probe_gap/<modality>``). Checkpoints hold no teacher weight: they
record which teachers they were distilled from, and resuming one without them is an error.

    python examples/own_model_lightning.py      # seconds on one CPU core
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import umt
from umt.yours.lightning import ProbeGapCallback, UMTMixin

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the plain example's data and model
from own_model_plain_loop import ENCODERS, PairDataset, TwoBranch  # noqa: E402


class LitTwoBranch(UMTMixin, L.LightningModule):  # UMT: + UMTMixin
    def __init__(self, diagnosis: umt.Diagnosis | None = None) -> None:
        super().__init__()
        self.model = TwoBranch()
        self.distil = diagnosis is not None
        if diagnosis is not None:  # UMT: the loss (the defaults: failing encoders from their
            # teachers), and hooks on the model's encoders
            self.configure_umt(diagnosis, {"audio": "model.aud", "visual": "model.vis"})

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.model(batch), batch["label"])
        return loss + self.umt_loss(batch) if self.distil else loss  # UMT: + the distillation

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)  # includes projectors, if any


def fit(
    module: L.LightningModule, loader: DataLoader[Any], epochs: int, *callbacks: L.Callback
) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=list(callbacks),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    return trainer


def main(epochs: int = 10) -> dict[str, Any]:
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no banner
    L.seed_everything(0, verbose=False)
    train_set, val_set, test_set = PairDataset(1000, 0), PairDataset(300, 1), PairDataset(300, 2)
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    joint = LitTwoBranch()
    fit(joint, loader, epochs)
    before = umt.yours.diagnose(joint.model, train_set, val_set, test_set, encoders=ENCODERS)
    print("Naive joint training:\n" + before.table())

    student = LitTwoBranch(before)
    gaps = ProbeGapCallback(  # the probe gap while it trains, every 5 epochs
        train_set, val_set, test_set, encoders=ENCODERS, teachers=before.teachers,
        module="model", every_n_epochs=5,
    )  # fmt: skip
    trainer = fit(student, loader, epochs, gaps)
    for row in gaps.history:
        print(f"epoch {row['epoch']:.0f}: visual probe gap {100 * row['visual']:+.1f} pts")
    after = umt.yours.diagnose(
        student.model, train_set, val_set, test_set, encoders=ENCODERS, teachers=before.teachers
    )
    print("\nWith UMT in the LightningModule:\n" + after.table())
    for m in ENCODERS:
        print(
            f"{m}: gap to the teacher {100 * before[m].gap:+.1f} -> {100 * after[m].gap:+.1f} pts"
        )
    return {
        "before": before,
        "after": after,
        "module": student,
        "trainer": trainer,
        "history": gaps.history,
    }


if __name__ == "__main__":
    main()

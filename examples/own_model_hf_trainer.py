"""The plain-loop example in a Hugging Face ``Trainer``: ``UMTTrainer`` adds UMT to it.

Same data and model as ``own_model_plain_loop.py``, with a Hugging Face style ``forward``
(``model(audio=..., visual=..., labels=...)`` returning ``{"loss", "logits"}``). UMT changes one
name and adds two arguments: ``UMTTrainer(..., umt_loss=..., encoders=...)`` instead of
``Trainer(...)``. It keeps the modality columns (Hugging Face's ``remove_unused_columns`` would
drop any the model's ``forward`` does not name) and puts the loss's projectors, if any, in the
optimiser. Nothing is downloaded: the model is a plain ``nn.Module``.

    pip install "unimodal-teacher[hf]"
    python examples/own_model_hf_trainer.py      # seconds on one CPU core
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments

import umt
from umt.yours.hf import UMTTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the plain example's data and model
from own_model_plain_loop import ENCODERS, PairDataset, TwoBranch  # noqa: E402


class HFTwoBranch(TwoBranch):
    """The same model, called as Hugging Face calls models: ``model(**batch)``."""

    def forward(  # type: ignore[override]
        self, audio: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, Any]:
        logits = self.head(torch.cat([self.aud(audio), self.vis(visual)], 1))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def train(model: HFTwoBranch, data: Dataset[Any], epochs: int, **umt_args: Any) -> Trainer:
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="umt-hf-"),
        num_train_epochs=epochs,
        per_device_train_batch_size=64,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=16,
        disable_tqdm=True,
        seed=0,
    )
    if umt_args:  # UMT: UMTTrainer(..., umt_loss=..., encoders=...) instead of Trainer(...)
        trainer: Trainer = UMTTrainer(model=model, args=args, train_dataset=data, **umt_args)
    else:
        trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    return trainer


def main(epochs: int = 10) -> dict[str, Any]:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    train_set, val_set, test_set = PairDataset(1000, 0), PairDataset(300, 1), PairDataset(300, 2)
    splits = (train_set, val_set, test_set)
    joint = HFTwoBranch()
    train(joint, train_set, epochs)
    before = umt.diagnose(joint, *splits, encoders=ENCODERS, call="kwargs", progress=False)
    print("Naive joint training (Trainer):\n" + before.table())

    student = HFTwoBranch()  # the failing encoders start from their teachers (the defaults)
    umt_loss = umt.UMTLoss.from_diagnosis(before, student, ENCODERS)
    trainer = train(student, train_set, epochs, umt_loss=umt_loss, encoders=ENCODERS)
    after = umt.diagnose(
        student, *splits, encoders=ENCODERS, teachers=before.teachers, call="kwargs",
        progress=False,
    )  # fmt: skip
    print("\nWith UMTTrainer:\n" + after.table())
    for m in ENCODERS:
        print(
            f"{m}: gap to the teacher {100 * before[m].gap:+.1f} -> {100 * after[m].gap:+.1f} pts"
        )
    return {"before": before, "after": after, "trainer": trainer}


if __name__ == "__main__":
    main()

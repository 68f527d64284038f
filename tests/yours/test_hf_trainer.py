"""``umt.yours.hf.UMTTrainer``: a Hugging Face ``Trainer`` with UMT. It keeps the modality columns
(``remove_unused_columns`` would drop those ``forward`` does not name: ``KeyError``), puts the
projectors in Hugging Face's optimiser, adds the distillation in training steps only and logs its
terms. Skipped where ``transformers`` is not installed (CI installs the ``hf`` extra)."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import umt

transformers = pytest.importorskip("transformers")
from umt.yours.hf import UMTTrainer  # noqa: E402


class Samples(Dataset[dict[str, Any]]):
    """``{"audio": (4,), "visual": (4,), "label": int}``: the collator renames label to labels."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x = {m: torch.randn(n, 4, generator=g) for m in ("audio", "visual")}

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"audio": self.x["audio"][i], "visual": self.x["visual"][i], "label": int(self.y[i])}


class OnlyAudioNamed(nn.Module):
    """``forward`` names no ``visual`` (it takes it from ``**inputs``): Hugging Face's column
    removal would drop it."""

    def __init__(self) -> None:
        super().__init__()
        self.aud = nn.Linear(4, 6)  # 6 wide; the teacher gives 3: a projector
        self.vis = nn.Linear(4, 3)
        self.head = nn.Linear(9, 2)

    def forward(
        self, audio: torch.Tensor, labels: torch.Tensor | None = None, **inputs: Any
    ) -> dict[str, Any]:
        feats = [torch.relu(self.aud(audio)), torch.relu(self.vis(inputs["visual"]))]
        logits = self.head(torch.cat(feats, 1))
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def args(**kw: Any) -> Any:
    return transformers.TrainingArguments(
        output_dir=tempfile.mkdtemp(), num_train_epochs=2, per_device_train_batch_size=8,
        use_cpu=True, report_to=[], save_strategy="no", logging_steps=2, disable_tqdm=True,
        learning_rate=1e-2, **kw,
    )  # fmt: skip


def test_umt_trainer_keeps_the_columns_trains_the_projector_and_logs_the_terms() -> None:
    plain = transformers.Trainer(model=OnlyAudioNamed(), args=args(), train_dataset=Samples(32))
    with pytest.raises(KeyError, match="visual"):  # Hugging Face dropped the column
        plain.train()
    torch.manual_seed(0)
    model = OnlyAudioNamed()
    teachers = {"audio": nn.Linear(4, 3), "visual": nn.Linear(4, 3)}
    loss = umt.UMTLoss(teachers, weights={"audio": 2.0, "visual": 0.0}, student_dims={"audio": 6})
    before = loss.projectors["audio"].weight.detach().clone()
    trainer = UMTTrainer(
        model=model, args=args(), train_dataset=Samples(32), umt_loss=loss,
        encoders={"audio": "aud", "visual": "vis"},
    )  # fmt: skip
    assert trainer.args.remove_unused_columns is False
    trainer.train()  # no KeyError: 'visual' (forward and the visual teacher read its column)
    groups = trainer.optimizer.param_groups
    assert any(p is loss.projectors["audio"].weight for g in groups for p in g["params"])
    assert not torch.equal(before, loss.projectors["audio"].weight)  # it trained
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all("distill/audio" in h for h in logged)
    assert all(p.grad is None for t in teachers.values() for p in t.parameters())


def test_umt_trainer_adds_the_distillation_to_the_models_loss_in_training_only() -> None:
    torch.manual_seed(0)
    model = OnlyAudioNamed()
    loss = umt.UMTLoss({"audio": nn.Linear(4, 3)}, weights=3.0, student_dims={"audio": 6})
    trainer = UMTTrainer(
        model=model, args=args(), train_dataset=Samples(8), umt_loss=loss,
        encoders={"audio": "aud"},
    )  # fmt: skip
    batch = {"audio": torch.randn(8, 4), "visual": torch.randn(8, 4)}
    batch["labels"] = torch.randint(0, 2, (8,))
    model.train()
    got = trainer.compute_loss(model, batch)
    plain = model(**batch)["loss"]
    with torch.no_grad():
        feats = {"audio": model.aud(batch["audio"])}
    extra = loss({"audio": batch["audio"]}, feats)["loss"]
    assert got.item() == pytest.approx(plain.item() + extra.item(), rel=1e-5)
    model.eval()
    with torch.no_grad():
        assert trainer.compute_loss(model, batch).item() == pytest.approx(plain.item(), rel=1e-5)

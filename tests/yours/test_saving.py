"""Saved and restored: UMTLoss's projectors in its state_dict (teachers never); a diagnosis
written with its teachers and read back; Lightning checkpoints that record the teachers and
refuse to resume UMT without them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import umt
from umt.errors import UMTError
from umt.probe import ProbeConfig
from umt.yours.lightning import UMTMixin
from umt.yours.teachers import fingerprint


def test_projectors_are_in_the_state_dict_and_load_back_and_teachers_never() -> None:
    teachers = {"a": nn.Linear(3, 4), "b": nn.Linear(3, 6)}
    loss = umt.UMTLoss(teachers, student_dims={"a": 8, "b": 6})
    state = loss.state_dict()
    assert sorted(state) == ["projectors.a.bias", "projectors.a.weight"]
    again = umt.UMTLoss(teachers, student_dims={"a": 8, "b": 6})
    again.load_state_dict(state)
    assert torch.equal(again.projectors["a"].weight, loss.projectors["a"].weight)


class Pairs(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.a = torch.randn(n, 4, generator=g) + F.one_hot(self.y, 4) * 2.0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"a": self.a[i], "b": self.a[i] * 0.5, "label": int(self.y[i])}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ea = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.eb = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.ea(batch["a"]), self.eb(batch["b"])], 1))


def test_a_diagnosis_is_written_and_read_back_with_its_teachers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = [Pairs(60, 0), Pairs(30, 1), Pairs(30, 2)]
    given = umt.Teacher(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)), layer="1")
    cfg = umt.DiagnoseConfig(epochs=2, probe=ProbeConfig(l2=(1e-3,), max_iter=20))
    model = Net()
    diag = umt.diagnose(
        model, *data, encoders={"a": "ea", "b": "eb"}, teachers={"b": given}, config=cfg,
        out=tmp_path, progress=False,
    )  # fmt: skip
    saved = json.loads((tmp_path / "diagnosis.json").read_text())["teachers"]
    assert saved["a"]["sha256"] == fingerprint(diag.teachers["a"])
    assert saved["b"]["layer"] == "1"
    back = umt.Diagnosis.load(
        tmp_path, model=Net(), teachers={"b": nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))}
    )  # fmt: skip
    assert back.table() == diag.table() and back.failures == diag.failures
    x = torch.randn(7, 4)
    for m in ("a", "b"):
        assert torch.equal(back.teachers[m](x), diag.teachers[m].eval()(x))
    assert not back.teachers["a"].training and not any(
        p.requires_grad for p in back.teachers["a"].parameters()
    )
    numbers_only = umt.Diagnosis.load(tmp_path)
    assert numbers_only.teachers == {} and numbers_only["a"].gap == pytest.approx(diag["a"].gap)
    # a changed file is refused
    torch.save({k: v + 1 for k, v in given.module.state_dict().items()}, tmp_path / "teachers/b.pt")
    with pytest.raises(UMTError, match="does not match its recorded fingerprint"):
        umt.Diagnosis.load(tmp_path, teachers={"b": given})


class Lit(UMTMixin, L.LightningModule):
    def __init__(self, teachers: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.net = nn.Linear(4, 6)
        self.head = nn.Linear(6, 2)
        if teachers is not None:
            self.configure_umt(teachers, {"a": "net"}, student_dims={"a": 6})

    def training_step(self, batch: tuple[torch.Tensor, ...], i: int) -> torch.Tensor:
        b = {"a": batch[0]}
        loss = F.cross_entropy(self.head(self.net(b["a"])), batch[1])
        return loss + self.umt_loss(b) if hasattr(self, "umt") else loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip


def loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)), batch_size=8)  # fmt: skip


def test_lightning_checkpoints_record_the_teachers_and_refuse_to_resume_without_them(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    teachers = {"a": umt.Teacher(nn.Linear(4, 3), source="teachers/a.pt")}
    module = Lit(teachers)
    t = trainer(1)
    t.fit(module, loader())
    ckpt = tmp_path / "umt.ckpt"
    t.save_checkpoint(ckpt)
    record = torch.load(ckpt, weights_only=True)["umt"]["teachers"]["a"]
    assert record["sha256"] == fingerprint(teachers["a"]) and record["source"] == "teachers/a.pt"
    # resuming UMT without the teachers, or with others: one clear error each
    with pytest.raises(UMTError, match=r"resuming UMT without its teachers.*Linear"):
        trainer(2).fit(Lit(), loader(), ckpt_path=ckpt)
    with pytest.raises(UMTError, match=r"teachers of \['a'\] are not those"):
        trainer(2).fit(Lit({"a": nn.Linear(4, 3)}), loader(), ckpt_path=ckpt)
    resumed = Lit(teachers)
    trainer(2).fit(resumed, loader(), ckpt_path=ckpt)  # the same teachers: it resumes
    assert resumed.umt_record["teachers"]["a"]["sha256"] == record["sha256"]
    # for inference, the student alone loads, with a warning that says what it was trained with
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        student = Lit.load_from_checkpoint(ckpt)
    assert any("loaded the student alone" in str(w.message) for w in caught)
    assert not hasattr(student, "umt") and torch.equal(student.net.weight, module.net.weight)

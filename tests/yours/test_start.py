"""UMTLoss.from_diagnosis (issue 26): the study's defaults in a user's loop: only the modalities the
diagnosis found failing are distilled, and their student encoders start from their teachers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

import umt
from umt.errors import UMTError


class TwoBranch(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.aud = nn.Sequential(nn.Linear(3, width), nn.ReLU())
        self.vis = nn.Sequential(nn.Linear(5, width), nn.ReLU())

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.aud(batch["audio"]), self.vis(batch["visual"])], 1)


@dataclass
class FakeDiagnosis:  # what from_diagnosis reads of a umt.Diagnosis
    teachers: dict[str, nn.Module]
    failures: list[str] = field(default_factory=list)


ENCODERS = {"audio": "aud", "visual": "vis"}


def _teachers() -> dict[str, nn.Module]:
    torch.manual_seed(1)
    t = TwoBranch()
    return {"audio": t.aud, "visual": t.vis}


def test_only_failing_modalities_are_distilled_and_start_from_their_teacher() -> None:
    teachers = _teachers()
    torch.manual_seed(2)
    student = TwoBranch()
    before_aud = [p.clone() for p in student.aud.parameters()]
    loss = umt.UMTLoss.from_diagnosis(FakeDiagnosis(teachers, ["visual"]), student, ENCODERS)
    assert loss.weights == {"audio": 0.0, "visual": 5.0}
    for p, q in zip(student.vis.parameters(), teachers["visual"].parameters(), strict=True):
        assert torch.equal(p, q)  # the failing modality's encoder starts at its teacher
    for p, q in zip(student.aud.parameters(), before_aud, strict=True):
        assert torch.equal(p, q)  # the other is left as it was
    batch = {"audio": torch.randn(6, 3), "visual": torch.randn(6, 5)}
    with umt.capture_features(student, ENCODERS) as feats:
        student(batch)
        out = loss(batch, feats)
    assert out["distill/audio"].item() == 0.0 and out["distill/visual"].item() == 0.0  # at start


def test_nothing_failing_distils_nothing_and_a_different_architecture_is_one_clear_error() -> None:
    student = TwoBranch()
    loss = umt.UMTLoss.from_diagnosis(FakeDiagnosis(_teachers()), student, ENCODERS)
    assert set(loss.weights.values()) == {0.0}
    with pytest.raises(UMTError, match="differ in architecture.*init_from_teacher=False"):
        umt.UMTLoss.from_diagnosis(FakeDiagnosis(_teachers(), ["audio"]), TwoBranch(8), ENCODERS)
    with pytest.raises(UMTError, match="encoders names no student encoder"):
        umt.UMTLoss.from_diagnosis(FakeDiagnosis(_teachers()), student, {"audio": "aud"})

"""Issue 30, item 6: ``diagnose`` calls modality failure only when the probe gap's 95 % interval
(paired over the test samples, and over the teachers' seeds when three or more are
trained) excludes 0; the table shows the interval. A gap within noise is not a failure; a large
one is."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import umt
from umt.probe import ProbeConfig

K = 4
PROBE = ProbeConfig(l2=(1e-3,), max_iter=30)


class Noisy(Dataset[dict[str, Any]]):
    """One weak modality: the class is faintly visible in 8 noisy coordinates."""

    def __init__(self, n: int, seed: int, signal: float = 0.6) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, K, (n,), generator=g)
        self.x = torch.randn(n, 8, generator=g) + signal * F.one_hot(self.y, 8)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"v": self.x[i], "label": int(self.y[i])}


class One(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
        self.head = nn.Linear(16, K)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.enc(batch["v"]))


def test_a_gap_within_noise_is_not_a_failure() -> None:
    data = [Noisy(200, 0), Noisy(100, 1), Noisy(100, 2)]
    torch.manual_seed(0)
    model = One()
    cfg = umt.DiagnoseConfig(margin=0.0, probe=PROBE)
    # a teacher that is the same kind of encoder, slightly perturbed: its probe differs from the
    # model's by chance alone; the first perturbation whose gap is above 2 points
    for seed in range(20):
        teacher = copy.deepcopy(model.enc)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            for p in teacher.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        diag = umt.diagnose(model, *data, encoders={"v": "enc"}, teachers={"v": teacher}, config=cfg, progress=False)  # fmt: skip
        if diag["v"].gap > 0.02:
            break
    d = diag["v"]
    assert d.gap > 0.02, diag.table()  # the bare gap would have been called a failure
    assert d.interval is not None and d.interval.lo <= 0.0 <= d.interval.hi
    assert not d.failure and d.verdict == "within noise" and diag.failures == []
    assert f"[{100 * d.interval.lo:+.2f}, {100 * d.interval.hi:+.2f}]" in diag.table()


def test_a_large_gap_is_a_failure_with_teacher_seeds_in_the_interval() -> None:
    # (with three seeds or more the interval is a t-interval on 2 degrees of freedom: wide)
    data = [Noisy(300, 0, 2.0), Noisy(150, 1, 2.0), Noisy(150, 2, 2.0)]
    torch.manual_seed(0)
    model = One()
    with torch.no_grad():
        model.enc[0].weight.mul_(0.0)  # an encoder that learned nothing: constant features
    cfg = umt.DiagnoseConfig(epochs=4, lr=1e-2, teacher_seeds=3, probe=PROBE)
    diag = umt.diagnose(model, *data, encoders={"v": "enc"}, config=cfg, progress=False)
    d = diag["v"]
    assert len(d.teacher_scores) == 3 and d.interval is not None
    assert d.gap == pytest.approx(sum(d.teacher_scores) / 3 - d.model.test_acc)
    assert d.interval.lo > 0 and d.failure and diag.failures == ["v"], diag.table()
    assert "3 seeds" in diag.table() and "**modality failure**" in diag.table()

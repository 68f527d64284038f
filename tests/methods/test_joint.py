"""Joint training: cross-entropy on the fused logits, by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.methods import plain_softmax, umt_batch, umt_student

from umt.methods import Joint


def test_joint_step_is_cross_entropy_on_the_fused_logits() -> None:
    student = umt_student().eval()
    batch = umt_batch()
    out = Joint().step(student, batch)
    assert set(out) == {"loss", "logits"}
    with torch.no_grad():
        logits = student(batch)
    assert torch.allclose(out["logits"], logits)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(logits, batch["label"]).item())
    # and by hand for one sample: -log softmax(logits)[y]
    z, y = logits[0].tolist(), int(batch["label"][0])
    by_hand = -math.log(plain_softmax(z)[y])
    per = F.cross_entropy(out["logits"][:1], batch["label"][:1]).item()
    assert per == pytest.approx(by_hand, rel=1e-5)

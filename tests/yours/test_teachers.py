"""Teachers as the user has them: a full model and the layer (or a callable) to read; timm's
pre-logit features found by ``forward_features``/``forward_head``; an input transform; and a
full classifier passed bare refused with an error naming the fix (it was taken as a
class-count "feature" and distilled through a projector)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import umt
from umt.errors import UMTError


class Classifier(nn.Module):
    """A user's uni-modal model: a body of 16 features, a head of 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class TimmLike(Classifier):
    num_features = 16

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)


def test_a_full_classifier_passed_bare_is_refused_with_the_fix() -> None:
    with pytest.raises(
        UMTError,
        match=r"looks like a full classifier.*'head' gives 4 outputs.*Teacher\(model, layer='body'\)",
    ):
        umt.UMTLoss({"a": Classifier()}, student_dims={"a": 16})


def test_a_layer_of_a_full_model_is_the_teacher() -> None:
    net = Classifier()
    loss = umt.UMTLoss({"a": umt.Teacher(net, layer="body")}, student_dims={"a": 16})
    assert len(loss.projectors) == 0  # 16 -> 16: the body's width, not the class count
    x, s = torch.randn(5, 3), torch.randn(5, 16)
    want = torch.nn.functional.mse_loss(s, net.body(x))
    assert loss({"a": x}, {"a": s})["loss"].item() == pytest.approx(want.item())
    fn = umt.Teacher(net, features=lambda model, x: model.body(x))
    assert torch.equal(fn(x), net.body(x))
    with pytest.raises(UMTError, match=r"layer 'head' did not run"):
        umt.Teacher(_Unused(), layer="head")(x)


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2)
        self.body = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_timm_models_give_their_pre_logit_features_and_inputs_are_adapted() -> None:
    net = TimmLike()
    loss = umt.UMTLoss({"a": net}, student_dims={"a": 16})
    assert len(loss.projectors) == 0 and loss.teacher_dim("a") == 16
    x = torch.randn(5, 3)
    assert torch.equal(loss.teacher_features({"a": x})["a"], net.body(x))
    mean, std = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 4.0])
    t = umt.Teacher(net, layer="body", transform=lambda v: (v - mean) / std)
    assert torch.allclose(t(x), net.body((x - mean) / std))


def test_diagnose_refuses_a_teacher_that_gives_the_class_count() -> None:
    from torch.utils.data import TensorDataset

    data = [TensorDataset(torch.randn(20, 3), torch.randn(20, 3), torch.arange(20) % 4)] * 3
    logits = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))  # 4 = the classes

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ea, self.eb = nn.Linear(3, 8), nn.Linear(3, 8)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.ea(a) + self.eb(b)

    with pytest.raises(UMTError, match=r"teachers\['b'\].*full classifier.*layer='1'"):
        umt.diagnose(M(), *data, encoders={"a": "ea", "b": "eb"}, modalities=["a", "b"], teachers={"b": logits}, progress=False)  # fmt: skip

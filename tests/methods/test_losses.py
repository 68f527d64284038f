"""The distillation losses (``umt.methods.losses``) on hand-computed numbers: feature distances,
UMT's weighted sum over modalities, logit distillation, and G2D's priority."""

from __future__ import annotations

import math

import pytest
import torch

from umt.errors import UMTError
from umt.methods import feature_distance, logit_distill_loss, umt_distill_loss
from umt.methods.losses import priority_coefficients

# -- feature_distance ---------------------------------------------------------------------------


S = torch.tensor([[1.0, 2.0], [3.0, 4.0]])


T = torch.tensor([[0.0, 0.0], [1.0, 1.0]])


def test_feature_distance_mse_by_hand() -> None:
    # differences 1, 2, 2, 3 -> squares 1, 4, 4, 9 -> mean 18 / 4
    assert feature_distance(S, T, "mse").item() == pytest.approx(4.5)


def test_feature_distance_default_is_mse() -> None:
    assert feature_distance(S, T).item() == pytest.approx(4.5)


def test_feature_distance_l1_by_hand() -> None:
    # |differences| 1, 2, 2, 3 -> mean 8 / 4
    assert feature_distance(S, T, "l1").item() == pytest.approx(2.0)


def test_feature_distance_cosine_by_hand() -> None:
    # row 0: orthogonal -> 1 - 0; row 1: (3,4).(4,3) / 25 = 24/25 -> 1 - 0.96
    s = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 1.0], [4.0, 3.0]])
    assert feature_distance(s, t, "cosine").item() == pytest.approx((1.0 + 0.04) / 2)


def test_feature_distance_cosine_ignores_scale_and_flattens_maps() -> None:
    s = torch.tensor([[1.0, 0.0, 3.0, 4.0]])
    t = torch.tensor([[0.0, 1.0, 4.0, 3.0]])
    # 1 - (0 + 0 + 12 + 12) / (sqrt(26) * sqrt(26))
    expected = 1 - 24 / 26
    assert feature_distance(s, t, "cosine").item() == pytest.approx(expected)
    assert feature_distance(10 * s, t, "cosine").item() == pytest.approx(expected)
    maps = feature_distance(s.view(1, 1, 2, 2), t.view(1, 1, 2, 2), "cosine")
    assert maps.item() == pytest.approx(expected)


def test_feature_distance_is_zero_for_equal_features() -> None:
    for kind in ("mse", "l1", "cosine"):
        assert feature_distance(S, S.clone(), kind).item() == pytest.approx(0.0, abs=1e-6)


def test_feature_distance_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(UMTError) as info:
        feature_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    assert "(2, 3)" in str(info.value) and "(2, 4)" in str(info.value)


def test_feature_distance_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(UMTError, match="unknown distillation loss 'huber'.*mse.*l1.*cosine"):
        feature_distance(S, T, "huber")


# -- umt_distill_loss ---------------------------------------------------------------------------


def test_umt_distill_loss_weighted_sum_by_hand() -> None:
    student = {"a": torch.tensor([[1.0, 2.0]]), "b": torch.tensor([[0.0, 0.0]])}
    teacher = {"a": torch.tensor([[0.0, 0.0]]), "b": torch.tensor([[1.0, 1.0]])}
    total, per = umt_distill_loss(student, teacher, {"a": 2.0, "b": 3.0})
    # mse: a (1 + 4) / 2 = 2.5, b (1 + 1) / 2 = 1.0 -> 2 * 2.5 + 3 * 1.0
    assert per["a"].item() == pytest.approx(2.5)
    assert per["b"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(8.0)


def test_umt_distill_loss_uses_only_the_teachers_modalities() -> None:
    student = {"a": torch.ones(1, 2), "c": torch.full((1, 2), 100.0)}
    teacher = {"a": torch.zeros(1, 2)}
    total, per = umt_distill_loss(student, teacher, {"a": 0.5}, kind="l1")
    assert set(per) == {"a"}
    assert total.item() == pytest.approx(0.5)


def test_umt_distill_loss_zero_weight_drops_a_modality() -> None:
    student = {"a": torch.ones(1, 2), "b": torch.ones(1, 2)}
    teacher = {"a": torch.zeros(1, 2), "b": torch.zeros(1, 2)}
    total, per = umt_distill_loss(student, teacher, {"a": 0.0, "b": 1.0})
    assert per["a"].item() == pytest.approx(1.0)  # still logged
    assert total.item() == pytest.approx(1.0)


# -- logit_distill_loss -------------------------------------------------------------------------


def test_logit_distill_loss_by_hand() -> None:
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # T = 1: teacher [3/4, 1/4] against the uniform student.
    assert logit_distill_loss(s, t).item() == pytest.approx(
        0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    )
    # T = 2: teacher softmax([ln 3 / 2, 0]) = [r, 1] / (1 + r), r = sqrt(3); times T^2 = 4.
    r = math.sqrt(3.0)
    p = [r / (1 + r), 1 / (1 + r)]
    expected = 4 * sum(q * math.log(2 * q) for q in p)
    assert logit_distill_loss(s, t, temperature=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.145363, abs=1e-6)
    # The batch mean: a second, identical row leaves it unchanged; equal logits give 0.
    assert logit_distill_loss(s.repeat(2, 1), t.repeat(2, 1)).item() == pytest.approx(
        0.130812, abs=1e-6
    )
    assert logit_distill_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(UMTError, match="temperature"):
        logit_distill_loss(s, t, temperature=0.0)


def test_logit_distill_gradient_reaches_the_student_only() -> None:
    s = torch.tensor([[0.5, -0.5, 0.0]], requires_grad=True)
    t = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    logit_distill_loss(s, t, temperature=1.0).backward()
    # d/ds KL(p_t || softmax(s)) = softmax(s) - p_t
    expected = torch.softmax(s, -1) - torch.softmax(t, -1)
    assert torch.allclose(s.grad, expected.detach(), atol=1e-6)
    assert t.grad is None


# -- priority_coefficients ----------------------------------------------------------------------


def test_priority_goes_to_the_least_confident_teacher() -> None:
    assert priority_coefficients({"audio": 12.0, "visual": 7.5}) == {"audio": 0.0, "visual": 1.0}
    assert priority_coefficients({"audio": 2.0, "visual": 7.5}) == {"audio": 1.0, "visual": 0.0}
    three = priority_coefficients({"a": 3.0, "b": 0.5, "c": 1.0})
    assert three == {"a": 0.0, "b": 1.0, "c": 0.0}
    assert priority_coefficients({"a": 2.0, "b": 2.0}) == {"a": 1.0, "b": 1.0}  # a tie: both

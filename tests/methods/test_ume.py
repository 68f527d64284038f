"""UME: the combination of the unimodal models' outputs on hand-computed numbers, the ensemble, and
the UMT/UME choice rule on both sides of its margin."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.methods import plain_softmax, umt_batch, umt_teachers

from umt.errors import UMTError
from umt.methods import Choice, Ensemble, UMEConfig, choose, ume_combine

# -- ume_combine --------------------------------------------------------------------------------


LOGITS = {"a": torch.tensor([[2.0, 0.0]]), "b": torch.tensor([[0.0, 4.0]])}


def test_ume_combine_logits_equal_weights() -> None:
    assert ume_combine(LOGITS, combine="logits").tolist() == [[1.0, 2.0]]


def test_ume_combine_logits_weighted_by_hand() -> None:
    # (3 * [2, 0] + 1 * [0, 4]) / 4 = [1.5, 1.0]
    out = ume_combine(LOGITS, combine="logits", weights={"a": 3.0, "b": 1.0})
    assert out[0].tolist() == pytest.approx([1.5, 1.0])


def test_ume_combine_probs_weighted_by_hand() -> None:
    pa, pb = plain_softmax([2.0, 0.0]), plain_softmax([0.0, 4.0])
    expected = [math.log((3 * pa[k] + 1 * pb[k]) / 4) for k in range(2)]
    out = ume_combine(LOGITS, combine="probs", weights={"a": 3.0, "b": 1.0})
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert out.exp().sum().item() == pytest.approx(1.0)


def test_ume_combine_default_is_equal_weight_probs() -> None:
    pa, pb = plain_softmax([2.0, 0.0]), plain_softmax([0.0, 4.0])
    expected = [math.log((pa[k] + pb[k]) / 2) for k in range(2)]
    assert ume_combine(LOGITS)[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_ume_combine_probs_and_logits_can_disagree() -> None:
    # a is confident for class 0, b very confident for class 1, c mildly for class 0.
    logits = {
        "a": torch.tensor([[3.0, 0.0]]),
        "b": torch.tensor([[0.0, 10.0]]),
        "c": torch.tensor([[3.0, 0.0]]),
    }
    assert ume_combine(logits, combine="probs").argmax().item() == 0  # (0.95+0+0.95)/3 > 0.5
    assert ume_combine(logits, combine="logits").argmax().item() == 1  # [2, 3.33]


def test_ume_combine_unlisted_modality_weighs_one() -> None:
    out = ume_combine(LOGITS, combine="logits", weights={"a": 3.0})
    assert out[0].tolist() == pytest.approx([1.5, 1.0])


def test_ume_combine_zero_weight_ignores_a_model() -> None:
    out = ume_combine(LOGITS, combine="logits", weights={"a": 0.0, "b": 2.0})
    assert out[0].tolist() == pytest.approx([0.0, 4.0])


def test_ume_combine_rejects_non_positive_weights() -> None:
    with pytest.raises(UMTError, match="positive"):
        ume_combine(LOGITS, weights={"a": 0.0, "b": 0.0})


def test_ume_combine_rejects_an_unknown_combine() -> None:
    with pytest.raises(UMTError, match="unknown UME combine 'max'.*probs.*logits"):
        ume_combine(LOGITS, combine="max")


def test_ensemble_combines_its_members_outputs() -> None:
    teachers = umt_teachers()
    batch = umt_batch()
    ens = Ensemble(teachers, UMEConfig(combine="logits", weights={"a": 1.0, "b": 3.0})).eval()
    with torch.no_grad():
        expected = (teachers["a"](batch) + 3 * teachers["b"](batch)) / 4
        assert torch.allclose(ens(batch), expected, atol=1e-6)
    assert ens.modalities == ("a", "b")


# -- the choice rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ume", "joint", "margin", "method"),
    [
        (0.80, 0.75, 0.0, "ume"),  # UME better
        (0.70, 0.75, 0.0, "umt"),  # joint better
        (0.75, 0.75, 0.0, "ume"),  # equality: UME
        (0.50, 0.75, 0.25, "ume"),  # exactly at the margin: UME
        (0.49, 0.75, 0.25, "umt"),  # just beyond the margin
        (0.70, 0.75, 0.10, "ume"),  # within the margin
    ],
)
def test_choose_on_both_sides_of_the_margin(
    ume: float, joint: float, margin: float, method: str
) -> None:
    c = choose(ume, joint, margin=margin)
    assert isinstance(c, Choice)
    assert c.method == method


def test_choose_reason_gives_the_numbers_and_the_split() -> None:
    c = choose(0.6, 0.75, margin=0.01, label="train")
    assert c.method == "umt"
    assert "0.6000" in c.reason and "0.7500" in c.reason and "train" in c.reason
    assert "paired" in c.reason

"""Methods: the UMT loss and step, UME's combination, the UMT/UME rule, joint training.

Every number is computed by hand (or in plain Python) and compared with the library's.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from umt.errors import UMTError
from umt.methods import (
    UMT,
    Choice,
    Ensemble,
    Joint,
    UMEConfig,
    UMTConfig,
    choose,
    feature_distance,
    ume_combine,
    umt_distill_loss,
)
from umt.models import EncoderConfig, ModelConfig, MultimodalModel, build_model

SHAPES = {"a": (5,), "b": (4,)}
CFG = ModelConfig(EncoderConfig(feature_dim=6, hidden=8, depth=2), head_hidden=8)


def _batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(n, *s, generator=g) for m, s in SHAPES.items()}
    batch["label"] = torch.randint(0, 3, (n,), generator=g)
    return batch


def _teachers() -> dict[str, MultimodalModel]:
    torch.manual_seed(1)
    return {m: build_model(CFG, {m: s}, 3, linear_head=True) for m, s in SHAPES.items()}


def _student() -> MultimodalModel:
    torch.manual_seed(2)
    return build_model(CFG, SHAPES, 3)


def _bn_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if "running_" in k or "num_batches_tracked" in k
    }


# -- feature_distance ------------------------------------------------------------------------


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
    with pytest.raises(UMTError, match="unknown distillation loss 'kl'.*mse.*l1.*cosine"):
        feature_distance(S, T, "kl")


# -- umt_distill_loss ------------------------------------------------------------------------


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


def test_umt_config_weight_of_prefers_the_per_modality_weight() -> None:
    cfg = UMTConfig(weight=5.0, weights={"b": 0.5})
    assert cfg.weight_of("a") == 5.0
    assert cfg.weight_of("b") == 0.5


# -- the UMT step ----------------------------------------------------------------------------


def _umt(cfg: UMTConfig | None = None) -> tuple[UMT, dict[str, MultimodalModel]]:
    teachers = _teachers()
    method = UMT({m: t.encoders[m] for m, t in teachers.items()}, cfg or UMTConfig(weight=2.0))
    return method, teachers


def test_umt_step_returns_the_named_losses() -> None:
    method, _ = _umt()
    student = _student().train()
    out = method.step(student, _batch())
    assert set(out) == {"loss", "logits", "task_loss", "distill_loss", "distill_a", "distill_b"}
    assert out["logits"].shape == (8, 3)
    assert out["loss"].ndim == 0


def test_umt_step_loss_is_task_plus_distill() -> None:
    method, _ = _umt(UMTConfig(weight=2.0, weights={"b": 7.0}))
    student = _student().train()
    batch = _batch()
    out = method.step(student, batch)
    assert out["loss"].item() == pytest.approx(out["task_loss"].item() + out["distill_loss"].item())
    # Each part by hand: CE on the fused logits, and lambda_m * MSE to the teacher's features.
    assert out["task_loss"].item() == pytest.approx(
        F.cross_entropy(out["logits"], batch["label"]).item()
    )
    assert out["distill_loss"].item() == pytest.approx(
        2.0 * out["distill_a"].item() + 7.0 * out["distill_b"].item()
    )
    assert out["distill_loss"].item() > 0


def test_umt_step_distills_towards_the_teachers_eval_features() -> None:
    method, teachers = _umt()
    student = _student().train()
    batch = _batch()
    out = method.step(student, batch)
    features = student.encode(batch)  # train-mode BN on the same batch: the same features
    for m, teacher in teachers.items():
        with torch.no_grad():
            target = teacher.encoders[m].eval()(batch[m])
        expected = ((features[m] - target) ** 2).mean().item()
        assert out[f"distill_{m}"].item() == pytest.approx(expected, rel=1e-5)
        assert not out[f"distill_{m}"].requires_grad  # logged, not backpropagated twice


def test_umt_teachers_are_frozen_in_eval_mode_and_get_no_gradient() -> None:
    method, teachers = _umt()
    for t in method.teachers.values():
        assert not t.training
        assert all(not p.requires_grad for p in t.parameters())
    student = _student().train()
    method.step(student, _batch())["loss"].backward()
    for m, teacher in teachers.items():
        for name, p in teacher.encoders[m].named_parameters():
            assert p.grad is None, f"teacher {m}: {name} got a gradient"


def test_umt_teacher_batchnorm_statistics_do_not_move() -> None:
    method, teachers = _umt()
    encoders = {m: t.encoders[m] for m, t in teachers.items()}
    before = {m: _bn_state(e) for m, e in encoders.items()}
    assert all(before.values())  # the MLP encoders do have BatchNorm buffers
    student = _student().train()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    for i in range(4):
        if i == 2:
            for e in encoders.values():
                e.train()  # someone (e.g. a trainer's model.train()) flips them: still frozen
        opt.zero_grad()
        method.step(student, _batch(seed=i))["loss"].backward()
        opt.step()
    for m, e in encoders.items():
        after = _bn_state(e)
        for k, v in before[m].items():
            assert torch.equal(after[k], v), f"teacher {m}: {k} changed"
    # Control: a train-mode forward pass does move these statistics (so the check can fail).
    e = encoders["a"].train()
    with torch.no_grad():
        e(_batch(seed=9)["a"])
    key = next(k for k in before["a"] if k.endswith("running_mean"))
    assert not torch.equal(_bn_state(e)[key], before["a"][key])


def test_umt_distill_term_alone_reaches_every_student_encoder() -> None:
    method, _ = _umt()
    student = _student().train()
    out = method.step(student, _batch())
    for m, enc in student.encoders.items():
        params = [p for p in enc.parameters() if p.requires_grad]
        grads = torch.autograd.grad(out["distill_loss"], params, retain_graph=True)
        total = sum(g.abs().sum().item() for g in grads)
        assert total > 0, f"student encoder {m} gets no gradient from the distillation"
    # ... and never the fusion head: the distillation is on the encoders' features only.
    head = list(student.head.parameters())
    grads = torch.autograd.grad(out["distill_loss"], head, retain_graph=True, allow_unused=True)
    assert all(g is None or g.abs().sum().item() == 0 for g in grads)


def test_umt_step_reduces_distill_loss_with_training() -> None:
    method, _ = _umt(UMTConfig(weight=10.0))
    student = _student().train()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    batch = _batch(n=16)
    first = method.step(student, batch)["distill_loss"].item()
    for _ in range(30):
        opt.zero_grad()
        method.step(student, batch)["loss"].backward()
        opt.step()
    assert method.step(student, batch)["distill_loss"].item() < 0.5 * first


# -- UME -------------------------------------------------------------------------------------


LOGITS = {"a": torch.tensor([[2.0, 0.0]]), "b": torch.tensor([[0.0, 4.0]])}


def _softmax(xs: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def test_ume_combine_logits_equal_weights() -> None:
    assert ume_combine(LOGITS, combine="logits").tolist() == [[1.0, 2.0]]


def test_ume_combine_logits_weighted_by_hand() -> None:
    # (3 * [2, 0] + 1 * [0, 4]) / 4 = [1.5, 1.0]
    out = ume_combine(LOGITS, combine="logits", weights={"a": 3.0, "b": 1.0})
    assert out[0].tolist() == pytest.approx([1.5, 1.0])


def test_ume_combine_probs_weighted_by_hand() -> None:
    pa, pb = _softmax([2.0, 0.0]), _softmax([0.0, 4.0])
    expected = [math.log((3 * pa[k] + 1 * pb[k]) / 4) for k in range(2)]
    out = ume_combine(LOGITS, combine="probs", weights={"a": 3.0, "b": 1.0})
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert out.exp().sum().item() == pytest.approx(1.0)


def test_ume_combine_default_is_equal_weight_probs() -> None:
    pa, pb = _softmax([2.0, 0.0]), _softmax([0.0, 4.0])
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
    teachers = _teachers()
    batch = _batch()
    ens = Ensemble(teachers, UMEConfig(combine="logits", weights={"a": 1.0, "b": 3.0})).eval()
    with torch.no_grad():
        expected = (teachers["a"](batch) + 3 * teachers["b"](batch)) / 4
        assert torch.allclose(ens(batch), expected, atol=1e-6)
    assert ens.modalities == ("a", "b")


# -- the choice rule -------------------------------------------------------------------------


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


# -- joint training --------------------------------------------------------------------------


def test_joint_step_is_cross_entropy_on_the_fused_logits() -> None:
    student = _student().eval()
    batch = _batch()
    out = Joint().step(student, batch)
    assert set(out) == {"loss", "logits"}
    with torch.no_grad():
        logits = student(batch)
    assert torch.allclose(out["logits"], logits)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(logits, batch["label"]).item())
    # and by hand for one sample: -log softmax(logits)[y]
    z, y = logits[0].tolist(), int(batch["label"][0])
    by_hand = -math.log(_softmax(z)[y])
    per = F.cross_entropy(out["logits"][:1], batch["label"][:1]).item()
    assert per == pytest.approx(by_hand, rel=1e-5)

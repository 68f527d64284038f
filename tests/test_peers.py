"""The peers' balancing methods: each one's mechanism on hand-checked numbers, and a tiny study."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_summary_is_the_stage_results
from torch import nn

from umt.data.base import ArrayDataset, DataBundle
from umt.errors import UMTError
from umt.methods import METHODS, MethodContext
from umt.methods.common import split_holdout, true_class_score
from umt.methods.gblend import GBlend, GBlendConfig, GBlendHeads, gblend_weights
from umt.methods.joint import Joint
from umt.methods.mla import MLA, MLAConfig, build_mla, entropy_weights, owm_update
from umt.methods.mmpareto import MMPareto, MMParetoConfig, mmpareto_combine, pareto_weights
from umt.methods.ogm_ge import OGMGE, OGMGEConfig, modulate_, ogm_coefficients
from umt.methods.pmr import PMR, PMRConfig, Prototypes, class_prototypes, pmr_coefficients
from umt.models.encoders import MLPEncoder
from umt.models.fusion import build_fusion
from umt.models.multimodal import MultimodalModel
from umt.study import load_config, run_study

PEERS = ("gblend", "ogm_ge", "mmpareto", "mla", "pmr")


def _model(dims: dict[str, int], num_classes: int = 3, feature_dim: int = 4) -> MultimodalModel:
    """Two MLP encoders, concatenation, a linear head."""
    torch.manual_seed(0)
    encoders = nn.ModuleDict(
        {m: MLPEncoder((d,), feature_dim=feature_dim, hidden=8) for m, d in dims.items()}
    )
    fusion = build_fusion("concat", {m: feature_dim for m in dims})
    return MultimodalModel(encoders, fusion, nn.Linear(feature_dim * len(dims), num_classes))


def _batch(n: int = 16, num_classes: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "a": torch.randn(n, 5, generator=g),
        "v": torch.randn(n, 6, generator=g),
        "label": torch.randint(0, num_classes, (n,), generator=g),
    }


def _bundle(n: int = 60) -> DataBundle:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    arrays = {"a": rng.normal(size=(n, 5)) + labels[:, None], "v": rng.normal(size=(n, 6))}
    ds = ArrayDataset(arrays, labels)
    return DataBundle("tiny", ds, ds, ds, num_classes=3)


# -- OGM-GE -------------------------------------------------------------------------------------


def test_ogm_coefficients_slow_only_the_dominant_modality() -> None:
    k = ogm_coefficients({"a": 30.0, "v": 10.0}, alpha=0.5)  # rho_a = 3, rho_v = 1/3
    assert k["a"] == pytest.approx(1 - math.tanh(1.5)) and k["a"] == pytest.approx(0.0948517)
    assert k["v"] == 1.0
    k = ogm_coefficients({"a": 10.0, "v": 12.0}, alpha=0.8)  # rho_v = 1.2
    assert k == {"a": 1.0, "v": pytest.approx(1 - math.tanh(0.96))}
    assert ogm_coefficients({"a": 5.0, "v": 5.0}, alpha=1.0) == {"a": 1.0, "v": 1.0}  # rho = 1
    # Three modalities: each against the mean of the others; rho_a = 20 / 10 = 2.
    k = ogm_coefficients({"a": 20.0, "b": 10.0, "c": 10.0}, alpha=0.5)
    assert k == {"a": pytest.approx(1 - math.tanh(1.0)), "b": 1.0, "c": 1.0}
    # The continuous variant: 1 - tanh(alpha * (rho - 1)).
    k = ogm_coefficients({"a": 30.0, "v": 10.0}, alpha=0.5, shift=True)
    assert k["a"] == pytest.approx(1 - math.tanh(1.0)) and k["v"] == 1.0


def test_ogm_score_is_the_true_class_probability_summed_over_the_batch() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    assert true_class_score(logits, torch.tensor([0, 1])).item() == pytest.approx(0.8)


def test_ogm_feature_scores_are_each_modality_share_of_the_fused_linear_layer() -> None:
    model, batch = _model({"a": 5, "v": 6}), _batch()
    method = OGMGE(OGMGEConfig())
    features, tokens = model.encode_all(batch)
    scores = method._scores(model, batch, features, tokens)
    w, b = model.head.weight, model.head.bias
    part_a = features["a"] @ w[:, :4].T + b  # W_a z_a + b: the paper's f_a, bias counted whole
    assert scores["a"].item() == pytest.approx(true_class_score(part_a, batch["label"]).item())
    part_v = features["v"] @ w[:, 4:].T + b
    assert scores["v"].item() == pytest.approx(true_class_score(part_v, batch["label"]).item())


def test_ogm_modulation_scales_weights_and_adds_noise_of_the_gradient_std() -> None:
    grad = torch.tensor([1.0, -1.0, 3.0, -3.0])
    assert modulate_(grad.clone(), 0.25, noise=False).tolist() == [0.25, -0.25, 0.75, -0.75]
    torch.manual_seed(0)
    big = torch.randn(20000) * 2.0
    noisy = modulate_(big.clone(), 0.5, noise=True)
    assert (noisy - 0.5 * big).std().item() == pytest.approx(big.std().item(), rel=0.03)


def test_ogm_after_backward_touches_only_encoder_weights_in_the_window() -> None:
    model, batch = _model({"a": 5, "v": 6}), _batch()
    method = OGMGE(OGMGEConfig(noise=False, start_epoch=1, end_epoch=2))
    method.step(model, batch)["loss"].backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    method.coefficients = {"a": 0.5, "v": 1.0}
    method.on_train_epoch_start(model, 0)  # outside the window: nothing changes
    method.on_after_backward(model)
    assert all(torch.equal(p.grad, before[n]) for n, p in model.named_parameters())
    method.on_train_epoch_start(model, 1)
    method.on_after_backward(model)
    for name, p in model.named_parameters():
        assert p.grad is not None
        scaled = name.startswith("encoders.a.") and p.ndim >= 2
        assert torch.allclose(p.grad, before[name] * (0.5 if scaled else 1.0)), name


def _dominated() -> tuple[MultimodalModel, dict[str, torch.Tensor]]:
    """A concat model whose ``a`` encoder dominates: ``a`` carries the label, ``v`` is noise, and
    20 steps of joint training (Adam) let the fused head lean on ``a``."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(48) % 3
    batch = {
        "a": F.one_hot(y, 3).float().repeat(1, 2)[:, :5] * 3 + torch.randn(48, 5, generator=g),
        "v": torch.randn(48, 6, generator=g),
        "label": y,
    }
    model = _model({"a": 5, "v": 6})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(batch), y).backward()
        opt.step()
    return model, batch


def _stepped(
    method: object, model: MultimodalModel, batch: dict[str, torch.Tensor], optimizer: str
) -> MultimodalModel:
    """A copy of ``model`` after one training step of ``method`` (``model`` is unchanged), the
    way the engine runs it: step, backward, the method's ``on_after_backward``, optimiser step."""
    model = copy.deepcopy(model).train()
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    method.step(model, batch)["loss"].backward()  # type: ignore[attr-defined]
    if hasattr(method, "on_after_backward"):
        method.on_after_backward(model)
    opt.step()
    return model


def _update(
    method: object, model: MultimodalModel, batch: dict[str, torch.Tensor], optimizer: str
) -> dict[str, torch.Tensor]:
    """Each parameter's change in one training step of ``method`` from ``model``'s state."""
    after = dict(_stepped(method, model, batch, optimizer).named_parameters())
    return {n: after[n].detach() - p.detach() for n, p in model.named_parameters()}


def _weights(update: dict[str, torch.Tensor], m: str) -> torch.Tensor:
    """Modality ``m``'s encoder weight tensors' changes, flattened into one vector."""
    return torch.cat(
        [d.flatten() for n, d in update.items() if n.startswith(f"encoders.{m}.") and d.ndim >= 2]
    )


def test_ogm_shrinks_the_dominant_encoders_sgd_update_by_its_coefficient() -> None:
    model, batch = _dominated()
    method = OGMGE(OGMGEConfig(alpha=0.8, noise=False))
    joint = _update(Joint(), model, batch, "sgd")
    torch.manual_seed(0)
    ogm = _update(method, model, batch, "sgd")
    k = method.coefficients
    # The diagnosis: a is ahead (rho_a > 1), so only a is slowed, by 1 - tanh(0.8 rho_a) < 1.
    assert k["v"] == 1.0 and 0.0 < k["a"] < 0.7, k
    # Under SGD the step is -lr * grad (momentum has no history yet): a's weights move k_a times
    # as far as under joint training, in the same direction; everything else moves the same.
    torch.testing.assert_close(_weights(ogm, "a"), k["a"] * _weights(joint, "a"))
    torch.testing.assert_close(_weights(ogm, "v"), _weights(joint, "v"))
    ratio = _weights(ogm, "a").norm() / _weights(joint, "a").norm()
    assert ratio.item() == pytest.approx(k["a"], rel=1e-4)
    assert ogm["head.weight"].equal(joint["head.weight"])


def test_ogm_ge_noise_keeps_the_shrunk_component_and_adds_the_gradients_spread() -> None:
    model, batch = _dominated()
    joint = _weights(_update(Joint(), model, batch, "sgd"), "a")
    method = OGMGE(OGMGEConfig(alpha=0.8, noise=True))
    torch.manual_seed(0)
    ge = _weights(_update(method, model, batch, "sgd"), "a")
    # GE adds N(0, std(g)^2) per weight tensor: along joint's update direction the step keeps
    # about k_a of joint's (the noise's share there is about 1/sqrt(#weights) = 1/sqrt(136);
    # measured over 5 noise seeds: 0.18-0.44 against k_a = 0.30).
    along = (ge @ joint / joint.pow(2).sum()).item()
    assert along == pytest.approx(method.coefficients["a"], abs=0.35)
    assert along < 0.9  # shrunk, not joint's full step
    assert (ge - method.coefficients["a"] * joint).norm() > 0.1 * joint.norm()  # noise was added


def test_ogm_modulation_vanishes_under_adam() -> None:
    # The finding: Adam divides each parameter's step by its gradient's running scale, so
    # a per-encoder gradient factor k cancels (exactly, up to eps, on the first step). This is
    # why OGM-GE's effect must be measured, and run, under SGD.
    model, batch = _dominated()
    method = OGMGE(OGMGEConfig(alpha=0.8, noise=False))
    joint = _update(Joint(), model, batch, "adam")
    ogm = _update(method, model, batch, "adam")
    assert method.coefficients["a"] < 0.7
    a, b = _weights(ogm, "a"), _weights(joint, "a")
    # Equal but where |k g| is near Adam's eps (1e-8): a few tiny-gradient weights.
    assert ((a - b).norm() / b.norm()).item() < 1e-3
    assert ((a - method.coefficients["a"] * b).norm() / b.norm()).item() > 0.3  # not shrunk


# -- G-Blending ---------------------------------------------------------------------------------


def test_gblend_weights_follow_generalisation_over_overfitting_squared() -> None:
    t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    # dG = [0.8, 0.3, 0.7]; O goes 0.2 -> [0.4, 0.4, 1.0], so dO = [0.2, 0.2, 0.8];
    # dG / dO^2 = [20, 7.5, 1.09375], total 28.59375.
    w = gblend_weights(t(2, 2, 2), t(2.2, 2.2, 2.2), t(1.0, 1.5, 0.5), t(1.4, 1.9, 1.5))
    assert w.tolist() == pytest.approx([20 / 28.59375, 7.5 / 28.59375, 1.09375 / 28.59375])
    assert w.tolist() == pytest.approx([0.699454, 0.262295, 0.038251], abs=1e-6)
    # A branch whose held-out loss went up gets no weight; if none improved, uniform weights.
    w = gblend_weights(t(2, 2), t(2.2, 2.2), t(1.0, 1.0), t(1.4, 2.5))
    assert w.tolist() == [1.0, 0.0]
    assert gblend_weights(t(2, 2), t(2, 2), t(1, 1), t(3, 3)).tolist() == [0.5, 0.5]


def test_gblend_holdout_is_a_seeded_part_of_the_training_split() -> None:
    fit, held = split_holdout(100, 0.2, seed=3)
    assert len(held) == 20 and len(fit) == 80 and not set(fit) & set(held)
    assert np.array_equal(held, split_holdout(100, 0.2, seed=3)[1])
    assert not np.array_equal(held, split_holdout(100, 0.2, seed=4)[1])
    with pytest.raises(UMTError, match="holdout"):
        split_holdout(100, 0.0, seed=0)


def test_gblend_estimates_weights_and_blends_the_heads() -> None:
    data, model = _bundle(), _model({"a": 5, "v": 6})
    heads = GBlendHeads({"a": 4, "v": 4}, 3)
    method = GBlend(heads, data.train, GBlendConfig(every=1, holdout=0.25, batch_size=16), seed=0)
    assert method.trainable() is heads and heads.branches == ("a", "v", "fused")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    method.on_train_epoch_start(model, 0)
    w = heads.weights
    assert w.shape == (3,) and w.sum().item() == pytest.approx(1.0) and (w >= 0).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # copies trained
    batch = _batch()
    out = method.step(model, batch)
    features = model.encode(batch)
    expected = (
        w[0] * F.cross_entropy(heads.heads["a"](features["a"]), batch["label"])
        + w[1] * F.cross_entropy(heads.heads["v"](features["v"]), batch["label"])
        + w[2] * F.cross_entropy(model(batch), batch["label"])
    )
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_gblend_never_trains_on_its_held_out_samples() -> None:
    data, model = _bundle(), _model({"a": 5, "v": 6})
    method = GBlend(GBlendHeads({"a": 4, "v": 4}, 3), data.train, GBlendConfig(), seed=0)
    assert method.needs_index and len(method.held_rows) == 12  # 20 % of 60
    rows = [*method.held_rows[:3].tolist(), *method.fit_rows[:5].tolist()]
    batch = data.train[rows]
    batch["index"] = torch.tensor(sorted(rows))
    kept, any_left = method.without_held_out(batch)
    assert any_left and set(kept["index"].tolist()) == set(method.fit_rows[:5].tolist())
    only_fit = data.train[method.fit_rows[:5].tolist()]
    model.eval()  # batch statistics would differ between the two batches
    assert method.step(model, batch)["loss"].item() == pytest.approx(
        method.step(model, only_fit)["loss"].item()
    )
    held = data.train[method.held_rows[:4].tolist()]
    held["index"] = torch.tensor(sorted(method.held_rows[:4].tolist()))
    assert method.step(model, held)["loss"].item() == 0.0


# -- MMPareto -----------------------------------------------------------------------------------


def test_pareto_weights_match_the_two_gradient_closed_form() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # conflicting: cos < 0
    a, b = pareto_weights(g1, g2)
    assert (a, b) == pytest.approx((0.6, 0.4))  # (g2 - g1) . g2 / ||g1 - g2||^2 = 3 / 5
    combo = a * g1 + b * g2  # the min-norm point is orthogonal to g1 - g2
    assert torch.dot(combo, g1 - g2).item() == pytest.approx(0.0, abs=1e-7)
    grid = torch.linspace(0, 1, 1001)
    norms = torch.stack([(t * g1 + (1 - t) * g2).norm() for t in grid])
    assert grid[norms.argmin()].item() == pytest.approx(0.6, abs=1e-3)
    assert pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])) == (1.0, 0.0)
    assert pareto_weights(g1, g1.clone()) == (0.5, 0.5)


def test_mmpareto_combination_agreeing_and_conflicting() -> None:
    # Agreeing (cos >= 0): equal weights, gamma times the sum.
    out, cos, w = mmpareto_combine([torch.tensor([3.0, 0.0])], [torch.tensor([1.0, 2.0])], 1.5)
    assert w == (0.5, 0.5) and cos > 0
    assert out[0].tolist() == pytest.approx([6.0, 3.0])
    # Conflicting: the min-norm direction 2 (0.6 g1 + 0.4 g2) = [0.4, 0.8], rescaled up to
    # ||g1 + g2|| = 1, times gamma: 1.5 [1, 2] / sqrt(5).
    out, cos, w = mmpareto_combine([torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])], 1.5)
    assert cos < 0 and w == pytest.approx((0.6, 0.4))
    assert out[0].tolist() == pytest.approx([1.5 / math.sqrt(5), 3.0 / math.sqrt(5)])


def test_mmpareto_step_gradient_is_the_combined_gradient() -> None:
    model, batch = _model({"a": 5, "v": 6}), _batch()
    heads = nn.ModuleDict({m: nn.Linear(4, 3) for m in ("a", "v")})
    method = MMPareto(heads, MMParetoConfig(gamma=1.5))
    assert method.trainable() is heads
    out = method.step(model, batch)
    out["loss"].backward()
    # The reference: the two losses' gradients, combined per encoder.
    features = model.encode(batch)
    loss_mm = F.cross_entropy(model.fuse(features), batch["label"])
    uni = {m: F.cross_entropy(h(features[m]), batch["label"]) for m, h in heads.items()}
    assert out["loss"].item() == pytest.approx((loss_mm + sum(uni.values())).item())
    for m in ("a", "v"):
        ps = list(model.encoders[m].parameters())
        g_mm = torch.autograd.grad(loss_mm, ps, retain_graph=True)
        g_m = torch.autograd.grad(uni[m], ps, retain_graph=True)
        expected, _, _ = mmpareto_combine(g_mm, g_m, 1.5)
        for p, e in zip(ps, expected, strict=True):
            assert torch.allclose(p.grad, e, atol=1e-6)
        head_grad = torch.autograd.grad(uni[m], heads[m].weight, retain_graph=True)[0]
        assert torch.allclose(heads[m].weight.grad, head_grad, atol=1e-6)
    fused_grad = torch.autograd.grad(loss_mm, model.head.weight)[0]
    assert torch.allclose(model.head.weight.grad, fused_grad, atol=1e-6)


# -- MLA ----------------------------------------------------------------------------------------


def test_mla_entropy_weights_favour_the_confident_modality() -> None:
    uniform, certain = [0.0, 0.0], [100.0, 0.0]  # entropies ln 2 and 0
    w = entropy_weights(torch.tensor([[uniform, certain]], dtype=torch.float64))
    assert w.tolist()[0] == pytest.approx([1 / 3, 2 / 3])  # exp(-[ln 2, 0]) = [1/2, 1]
    three = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # equal entropies: equal weights
    assert entropy_weights(three).tolist()[0] == pytest.approx([0.5, 0.5])


def test_mla_projection_follows_the_owm_recursion() -> None:
    p = owm_update(torch.eye(2), torch.tensor([1.0, 0.0]), alpha=1.0)
    # I - e1 e1^T / (1 + 1) = diag(1/2, 1), divided by its Frobenius norm sqrt(5) / 2.
    assert p.flatten().tolist() == pytest.approx([1 / math.sqrt(5), 0.0, 0.0, 2 / math.sqrt(5)])
    # Seen directions are suppressed: P r is small against an unseen direction.
    p = torch.eye(3)
    for _ in range(20):
        p = owm_update(p, torch.tensor([1.0, 1.0, 0.0]), alpha=0.1)
    assert (p @ torch.tensor([1.0, 1.0, 0.0])).norm() < 0.05 * (
        p @ torch.tensor([0, 0, 1.0])
    ).norm()


def test_mla_alternates_modalities_and_predicts_with_the_entropy_fusion() -> None:
    data, model, batch = _bundle(), _model({"a": 5, "v": 6}), _batch()
    method = build_mla(MethodContext(MLAConfig(), model, {}, data, 0))
    assert isinstance(method, MLA)
    trained = []
    for _ in range(3):
        model.zero_grad()
        out = method.step(model, batch)
        trained.append(next(k for k in out if k.startswith("loss_")))
        out["loss"].backward()
        assert (model.encoders["v"].net[1].weight.grad is None) == (trained[-1] == "loss_a")
        raw = model.head.classifier.weight.grad.clone()
        method.on_after_backward(model)
        projected = model.head.classifier.weight.grad
        if len(trained) == 1:
            assert torch.equal(projected, raw)  # the first update is left alone
        else:
            assert torch.allclose(projected, raw @ model.head.projector.T)
    assert trained == ["loss_a", "loss_v", "loss_a"]
    features = model.encode(batch)
    per = torch.stack([model.head.classifier(features[m]) for m in ("a", "v")], 1)
    expected = (entropy_weights(per).unsqueeze(-1) * per).sum(1)
    assert torch.allclose(model(batch), expected, atol=1e-6)


def test_mla_needs_one_feature_width() -> None:
    model = _model({"a": 5, "v": 6})
    model.encoders["v"] = MLPEncoder((6,), feature_dim=7, hidden=8)
    with pytest.raises(UMTError, match="feature width"):
        build_mla(MethodContext(MLAConfig(), model, {}, _bundle(), 0))


# -- PMR ----------------------------------------------------------------------------------------


def test_pmr_coefficients_boost_the_modality_behind_and_slow_the_one_ahead() -> None:
    beta, gamma = pmr_coefficients({"a": 30.0, "v": 20.0})  # rho_a = 1.5, rho_v = 2/3
    assert beta == {"a": 0.0, "v": pytest.approx(0.5)} and gamma == {"a": 0.5, "v": 0.0}
    beta, gamma = pmr_coefficients({"a": 10.0, "v": 40.0})  # rho_a = 1/4: both clipped at 1
    assert beta == {"a": 1.0, "v": 0.0} and gamma == {"a": 0.0, "v": 1.0}
    beta, gamma = pmr_coefficients({"a": 12.0, "b": 8.0, "c": 8.0})  # rho_a = 1.5, rho_b = 0.8
    assert gamma["a"] == pytest.approx(0.5) and beta["b"] == pytest.approx(0.25) == beta["c"]


def test_pmr_prototypes_are_class_means_with_momentum() -> None:
    f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    protos, counts = class_prototypes(f, torch.tensor([1, 1, 0]), 3)
    assert protos.tolist() == [[0.0, 5.0], [2.0, 0.0], [0.0, 0.0]] and counts.tolist() == [1, 2, 0]
    data, model = _bundle(), _model({"a": 5, "v": 6})
    protos_mod = Prototypes({"a": 4, "v": 4}, 3)
    method = PMR(protos_mod, data.train, 3, PMRConfig(proto_share=1.0, momentum=0.25), seed=0)
    method.on_train_epoch_start(model, 0)
    model.eval()
    feats = model.encode(data.train[list(range(60))])
    first, _ = class_prototypes(feats["a"], torch.from_numpy(data.train.labels), 3)
    assert torch.allclose(protos_mod.get("a"), first, atol=1e-5)
    with torch.no_grad():
        model.encoders["a"].net[-2].bias.add_(1.0)  # the features move
    method.on_train_epoch_start(model, 1)
    model.eval()
    now, _ = class_prototypes(
        model.encode(data.train[list(range(60))])["a"], torch.from_numpy(data.train.labels), 3
    )
    assert torch.allclose(protos_mod.get("a"), 0.75 * now + 0.25 * first, atol=1e-5)


def test_pmr_loss_adds_the_prototypical_terms() -> None:
    data, model, batch = _bundle(), _model({"a": 5, "v": 6}), _batch()
    protos = Prototypes({"a": 4, "v": 4}, 3)
    cfg = PMRConfig(alpha=2.0, mu=0.5, entropy_epochs=1, proto_share=1.0)
    method = PMR(protos, data.train, 3, cfg, seed=0)
    for epoch in (0, 1):  # the entropy term only in the first entropy_epochs epochs
        method.on_train_epoch_start(model, epoch)
        model.train()
        out = method.step(model, batch)
        features, y = model.encode(batch), batch["label"]
        sims = {m: -torch.cdist(features[m], protos.get(m)) for m in ("a", "v")}
        beta, gamma = pmr_coefficients(
            {m: true_class_score(s.detach(), y) for m, s in sims.items()}
        )
        assert max(beta.values()) > 0 and max(gamma.values()) > 0  # one modality is ahead
        expected = F.cross_entropy(model.fuse(features), y)
        for m, sim in sims.items():
            expected = expected + 2.0 * beta[m] * F.cross_entropy(sim, y)
            if epoch == 0:
                logp = sim.log_softmax(-1)
                expected = expected + 0.5 * gamma[m] * (logp.exp() * logp).sum(-1).mean()
        assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_pmr_boosts_the_encoder_behind_and_leaves_the_one_ahead_as_joint() -> None:
    model, batch = _dominated()
    data = ArrayDataset({m: batch[m].numpy() for m in ("a", "v")}, batch["label"].numpy())
    protos = Prototypes({"a": 4, "v": 4}, 3)
    method = PMR(protos, data, 3, PMRConfig(alpha=1.0, mu=0.0, proto_share=1.0), seed=0)
    method.on_train_epoch_start(model, 0)  # prototypes: the class means of every sample

    def pce(m: MultimodalModel, modality: str) -> tuple[float, float]:
        """Modality's prototypical cross-entropy and true-class score on the batch."""
        with torch.no_grad():
            sims = -torch.cdist(m.eval().encode(batch)[modality], protos.get(modality))
        return F.cross_entropy(sims, batch["label"]).item(), true_class_score(
            sims, batch["label"]
        ).item()

    beta, _ = pmr_coefficients({m: pce(model, m)[1] for m in ("a", "v")})
    assert beta["a"] == 0.0 and beta["v"] > 0.1, beta  # a leads, v is behind
    joint_model = _stepped(Joint(), model, batch, "sgd")
    pmr_model = _stepped(method, model, batch, "sgd")
    joint = {n: p.detach() for n, p in joint_model.named_parameters()}
    pmr = {n: p.detach() for n, p in pmr_model.named_parameters()}
    # The leading encoder gets joint training's step (its PCE weight beta_a is 0, no entropy term).
    for name, p in pmr.items():
        if name.startswith("encoders.a.") or name.startswith("head."):
            torch.testing.assert_close(p, joint[name], msg=name)
    # The encoder behind gets the extra pull towards its class prototypes: its prototypical
    # cross-entropy falls further than under joint training's step (measured: 0.0022 against
    # 0.0015 from 0.8842, beta_v = 0.23).
    before, after_joint = pce(model, "v")[0], pce(joint_model, "v")[0]
    after_pmr = pce(pmr_model, "v")[0]
    assert before - after_pmr > 1.3 * (before - after_joint) > 0, (before, after_joint, after_pmr)


# -- Every peer through a study -----------------------------------------------------------------


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run directory for the module: teachers and joint are trained once, then cached."""
    return tmp_path_factory.mktemp("peers")


def test_peers_are_registered_with_a_config_section() -> None:
    cfg = load_config()
    for name in PEERS:
        assert METHODS[name].build is not None and not METHODS[name].uses_teachers
        assert getattr(cfg, name) is not None
    assert load_config(overrides=["ogm_ge.alpha=0.3"]).ogm_ge.alpha == 0.3


@pytest.mark.parametrize("method", PEERS)
def test_peer_runs_in_a_tiny_study(method: str, study_dir: Path, easy_overrides: list[str]) -> None:
    overrides = [*easy_overrides, f"methods=[joint,{method}]", "gblend.every=1"]
    result = run_study(
        load_config(overrides=overrides), study_dir, log=lambda _: None, report=False
    )
    assert f"seed0/{method}" in result.trained
    entry = result.summary["methods"][method]
    # 4 classes, chance 0.25. Over training seeds 0-4 each peer's test accuracy was 0.44-1.00
    # (MLA lowest) and its strong encoder's probe 0.90-1.00.
    assert entry["test_acc"]["mean"] >= 0.4, entry["test_acc"]
    assert result.summary["probes"]["strong"][method]["mean"] >= 0.8
    assert set(entry["modality_test_acc"]) == {"strong", "weak"}
    assert_summary_is_the_stage_results(result.run_dir, result.summary)
    assert set(result.summary["probes"]["weak"]) >= {"teacher", "joint", method}

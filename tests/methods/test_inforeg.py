"""InfoReg: the information growth and the coefficients on hand-computed numbers, the loss, the
regulation of the leading encoder inside its window, and the Fisher traces; InfoReg and
Re-learning train with every fusion module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.methods import peer_batch, peer_bundle, tiny_fusion_model

from umt.errors import UMTError
from umt.methods import METHODS, MethodContext
from umt.methods.inforeg import (
    InfoReg,
    InfoRegConfig,
    InfoRegState,
    build_inforeg,
    encoder_information,
    inforeg_coefficients,
    information_growth,
)
from umt.methods.relearn import RelearnConfig, build_relearn
from umt.models import EncoderConfig, ModelConfig, build_model


def test_information_growth_matches_the_codes_moving_averages() -> None:
    assert information_growth(torch.zeros(11)) == 1.0  # nothing measured: window open
    rng = np.random.default_rng(0)
    traces = list(rng.uniform(0.5, 2.0, size=14))
    padded = [0.0] * 10 + traces  # the code pads its list with ten zeros
    for e in range(1, len(traces) + 1):
        seen = padded[: 10 + e]
        tr1, tr2 = sum(seen[-10:]) / 10, sum(seen[-11:-1]) / 10  # the code's two averages
        k = (tr1 - tr2) / tr1
        assert information_growth(torch.tensor(seen[-11:])) == pytest.approx(k)
    # By hand: the newest 3 against 1 ten epochs earlier, over the sum of the last ten.
    history = torch.tensor([1.0] + [2.0] * 9 + [3.0])
    assert information_growth(history) == pytest.approx((3 - 1) / (9 * 2 + 3))


def test_inforeg_coefficients_regulate_only_the_leading_modality() -> None:
    beta = inforeg_coefficients({"a": 10.5, "v": 10.0}, strength=0.95)
    assert beta == {"a": pytest.approx(0.95 * math.exp(math.tanh(0.5))), "v": 0.0}
    beta = inforeg_coefficients({"a": 2.0, "v": 9.0}, strength=0.1)
    assert beta == {"a": 0.0, "v": pytest.approx(0.1 * math.exp(math.tanh(7.0)))}
    # Three modalities: the gap is to the mean of the others, 3 - (1 + 2) / 2.
    beta = inforeg_coefficients({"a": 3.0, "b": 1.0, "c": 2.0}, strength=1.0)
    assert beta == {"a": pytest.approx(math.exp(math.tanh(1.5))), "b": 0.0, "c": 0.0}
    assert inforeg_coefficients({"a": 2.0, "b": 2.0, "c": 1.0}, strength=1.0) == {
        "a": 0.0,
        "b": 0.0,
        "c": 0.0,
    }
    with pytest.raises(UMTError, match="two or more"):
        inforeg_coefficients({"a": 1.0}, strength=1.0)


def test_inforeg_loss_is_fused_plus_each_modalitys_share() -> None:
    model, batch = tiny_fusion_model(), peer_batch(lead=2.0)
    method = InfoReg(InfoRegState(("a", "v"), 10), InfoRegConfig(unimodal=0.5))
    out = method.step(model, batch)
    features, y = model.encode(batch), batch["label"]
    w, b = model.head.weight, model.head.bias
    expected = F.cross_entropy(model.fuse(features), y)
    for m, cols in (("a", slice(0, 4)), ("v", slice(4, 8))):
        f_m = features[m] @ w[:, cols].T + b  # W_m z_m + b: the fused head on m alone
        expected = expected + 0.5 * F.cross_entropy(f_m, y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_inforeg_holds_back_the_dominant_encoder_inside_its_window_only() -> None:
    model, batch = tiny_fusion_model(), peer_batch(lead=2.0)
    state = InfoRegState(("a", "v"), 10)
    method = InfoReg(state, InfoRegConfig(strength=0.95))
    method.on_train_epoch_start(model, 0)  # theta^0; nothing measured yet: windows open
    assert method.growth == {"a": 1.0, "v": 1.0}
    anchors = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # the epoch's training so far moved every weight
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = method.step(model, batch)
    beta = {m: out[f"beta_{m}"].item() for m in ("a", "v")}
    scores = {
        m: F.softmax(
            model.fuse({o: f if o == m else 0 * f for o, f in model.encode(batch).items()}), -1
        )
        for m in beta
    }
    top = max(scores, key=lambda m: scores[m][torch.arange(16), batch["label"]].sum().item())
    assert beta[top] > 0 and sum(b > 0 for b in beta.values()) == 1  # the leading one only
    out["loss"].backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.on_after_backward(model)
    lr = 0.1
    for n, p in model.named_parameters():
        if n.startswith(f"encoders.{top}."):
            delta = p.detach() - anchors[n]
            assert torch.allclose(p.grad, raw[n] + beta[top] * delta, atol=1e-6), n
            # An SGD step: the regulated update is shorter along theta - theta^0 by lr*beta*|d|^2.
            plain, held = (p - lr * raw[n]).detach(), (p - lr * p.grad).detach()
            shrink = ((plain - anchors[n]) * delta).sum() - ((held - anchors[n]) * delta).sum()
            assert shrink.item() == pytest.approx(
                lr * beta[top] * delta.square().sum().item(), rel=1e-4
            )
        else:
            assert torch.equal(p.grad, raw[n]), n
    # Window closed: the information amount has stopped growing, k = 0 <= 0.05.
    state.history.fill_(1.0)
    state.current.fill_(1.0)
    method.on_train_epoch_start(model, 1)
    assert method.growth[top] == pytest.approx(0.0)
    model.zero_grad()
    method.step(model, batch)["loss"].backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.on_after_backward(model)
    assert all(torch.equal(p.grad, raw[n]) for n, p in model.named_parameters())


def test_inforeg_accumulates_each_encoders_fisher_trace_per_epoch() -> None:
    model, batch = tiny_fusion_model(), peer_batch(lead=2.0)
    state = InfoRegState(("a", "v"), 3)
    method = InfoReg(state, InfoRegConfig())
    method.on_train_epoch_start(model, 0)
    expected = torch.zeros(2, dtype=torch.float64)
    for _ in range(2):
        model.zero_grad()
        method.step(model, batch)["loss"].backward()
        for i, m in enumerate(("a", "v")):  # before the regulation term is added
            expected[i] += sum(
                p.grad.square().mean().item()
                for p in model.encoders[m].parameters()
                if p.grad.ndim >= 2
            )
            assert encoder_information(model.encoders[m]) > 0
        method.on_after_backward(model)
    assert torch.allclose(state.current, expected)
    method.on_train_epoch_start(model, 1)  # the epoch's sum moves into the history
    assert torch.allclose(state.history[:, -1], expected) and state.current.abs().sum() == 0
    assert state.history[:, :-1].abs().sum() == 0
    assert METHODS["inforeg"].build is build_inforeg and not METHODS["inforeg"].uses_teachers


# -- every fusion -------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated", "film", "attention"])
def test_inforeg_and_relearn_train_with_every_fusion(fusion: str) -> None:
    cfg = ModelConfig(EncoderConfig(feature_dim=8, hidden=8), fusion=fusion, fusion_dim=8)
    data = peer_bundle(lead=2.0)
    batch = data.train.indexed()[list(range(16))]
    for build, settings in ((build_inforeg, InfoRegConfig()), (build_relearn, RelearnConfig())):
        torch.manual_seed(0)
        model = build_model(cfg, {"a": (5,), "v": (6,)}, 3)
        method = build(MethodContext(settings, model, {}, data, 0))
        method.on_train_epoch_start(model, 0)
        out = method.step(model, batch)
        out["loss"].backward()
        getattr(method, "on_after_backward", lambda m: None)(model)
        assert torch.isfinite(out["loss"]) and out["logits"].shape[1] == 3
        grads = [p.grad for p in model.encoders.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)

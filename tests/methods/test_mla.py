"""MLA: the entropy weights, the orthogonal projection's recursion, the alternation of modalities,
and its feature-width check."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.methods import peer_batch, peer_bundle, tiny_fusion_model

from umt.errors import UMTError
from umt.methods import MethodContext
from umt.methods.mla import MLA, MLAConfig, build_mla, entropy_weights, owm_update
from umt.models.encoders import MLPEncoder


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
    data, model, batch = peer_bundle(lead=1.0), tiny_fusion_model(), peer_batch()
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
    model = tiny_fusion_model()
    model.encoders["v"] = MLPEncoder((6,), feature_dim=7, hidden=8)
    with pytest.raises(UMTError, match="feature width"):
        build_mla(MethodContext(MLAConfig(), model, {}, peer_bundle(lead=1.0), 0))

"""G-Blending: the blending weights on hand-checked numbers, the held-out part of the training
split, and the blended heads' loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.methods import peer_batch, peer_bundle, tiny_fusion_model

from umt.errors import UMTError
from umt.methods.common import split_holdout
from umt.methods.gblend import GBlend, GBlendConfig, GBlendHeads, gblend_weights


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
    data, model = peer_bundle(lead=1.0), tiny_fusion_model()
    heads = GBlendHeads({"a": 4, "v": 4}, 3)
    method = GBlend(heads, data.train, GBlendConfig(every=1, holdout=0.25, batch_size=16), seed=0)
    assert method.trainable() is heads and heads.branches == ("a", "v", "fused")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    method.on_train_epoch_start(model, 0)
    w = heads.weights
    assert w.shape == (3,) and w.sum().item() == pytest.approx(1.0) and (w >= 0).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # copies trained
    batch = peer_batch()
    out = method.step(model, batch)
    features = model.encode(batch)
    expected = (
        w[0] * F.cross_entropy(heads.heads["a"](features["a"]), batch["label"])
        + w[1] * F.cross_entropy(heads.heads["v"](features["v"]), batch["label"])
        + w[2] * F.cross_entropy(model(batch), batch["label"])
    )
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_gblend_never_trains_on_its_held_out_samples() -> None:
    data, model = peer_bundle(lead=1.0), tiny_fusion_model()
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

"""Diagnosing & Re-learning: the purity and the strength by hand, the diagnosis, the schedule, the
soft re-initialisation, and the held-out samples it never trains on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.methods import peer_batch, peer_bundle, tiny_fusion_model

from umt.data.base import DataBundle
from umt.errors import UMTError
from umt.methods import MethodContext
from umt.methods.relearn import (
    Relearn,
    RelearnConfig,
    build_relearn,
    cluster_purity,
    drop_rows,
    purity,
    relearn_due,
    relearn_strength,
)
from umt.models.multimodal import MultimodalModel


def test_purity_and_strength_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    assert purity(labels, np.array([0, 0, 1, 1, 2, 2, 2])) == 1.0
    # Clusters {0, 0, 1} -> 0 (2 right), {1, 2} -> 1 or 2 (1), {2, 2} -> 2 (2): 5 of 7.
    assert purity(labels, np.array([4, 4, 4, 8, 8, 9, 9])) == pytest.approx(5 / 7)
    assert relearn_strength(0.8, 0.5, strength=3.0) == pytest.approx(math.tanh(0.9))
    assert relearn_strength(0.5, 0.8, strength=3.0) == pytest.approx(math.tanh(0.9))  # |gap|
    assert relearn_strength(0.7, 0.7, strength=3.0) == 0.0


def test_diagnosis_separable_training_features_against_held_out_noise() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    separable = centres[y] + 0.1 * rng.normal(size=(90, 2))
    noise = rng.normal(size=(90, 2))
    assert cluster_purity(separable, y, 3, seed=0) == 1.0
    p_noise = cluster_purity(noise, y, 3, seed=0)
    assert p_noise < 0.6
    # Learnt on T but not beyond it: a large gap, a strong re-initialisation.
    assert relearn_strength(1.0, p_noise, 3.0) == pytest.approx(math.tanh(3 * (1 - p_noise)))
    assert relearn_strength(1.0, p_noise, 3.0) > 0.8


def test_relearn_schedule() -> None:
    assert [e for e in range(30) if relearn_due(e, every=5, times=3)] == [5, 10, 15]
    assert [e for e in range(6) if relearn_due(e, every=1, times=2)] == [1, 2]
    assert not any(relearn_due(e, every=2, times=0) for e in range(10))


def _relearn(cfg: RelearnConfig | None = None) -> tuple[MultimodalModel, Relearn, DataBundle]:
    model, data = tiny_fusion_model(), peer_bundle(lead=2.0)
    method = build_relearn(MethodContext(cfg or RelearnConfig(every=0.1), model, {}, data, 0))
    return model, method, data


def test_relearn_moves_each_encoder_towards_its_initial_weights_by_its_alpha() -> None:
    model, method, _ = _relearn()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # training moved every weight
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    method.diagnose = lambda model, epoch: {"a": 0.75, "v": 0.0}  # type: ignore[method-assign]
    method.on_train_epoch_start(model, 1)  # not due: nothing moves
    assert all(torch.equal(p, trained[n]) for n, p in model.named_parameters())
    method.on_train_epoch_start(model, 2)
    for n, p in model.named_parameters():
        if n.startswith("encoders.a."):
            assert torch.allclose(p, 0.75 * initial[n] + 0.25 * trained[n], atol=1e-6), n
        else:  # "v" (alpha 0), fusion and head are left alone
            assert torch.equal(p, trained[n]), n
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert method.step(model, peer_batch(lead=2.0))["reinit_a"].item() == 0.75


def test_relearn_diagnosis_clusters_training_and_held_out_features() -> None:
    model, method, data = _relearn(RelearnConfig(every=0.1, holdout=0.25, max_samples=1000))
    alphas = method.diagnose(model, 2)
    assert model.training  # the diagnosis runs in eval mode and restores train mode
    model.eval()
    with torch.no_grad():
        fit = model.encode(data.train[method.fit_rows.tolist()])
        held = model.encode(data.train[method.held_rows.tolist()])
    labels = data.train.labels
    for m in ("a", "v"):
        p_t = cluster_purity(fit[m].numpy(), labels[method.fit_rows], 3, seed=0)
        p_v = cluster_purity(held[m].numpy(), labels[method.held_rows], 3, seed=0)
        assert method.purities[m] == pytest.approx((p_t, p_v), abs=1e-9)
        assert alphas[m] == pytest.approx(math.tanh(3.0 * abs(p_t - p_v)))


def test_relearn_never_trains_on_its_held_out_samples() -> None:
    model, method, data = _relearn()
    assert method.needs_index and len(method.held_rows) == 6  # 10 % of 60
    rows = [*method.held_rows[:3].tolist(), *method.fit_rows[:5].tolist()]
    batch = data.train.indexed()[rows]
    kept, left = drop_rows(batch, torch.from_numpy(method.held_rows))
    assert left and set(kept["index"].tolist()) == set(method.fit_rows[:5].tolist())
    model.eval()
    only_fit = data.train[method.fit_rows[:5].tolist()]
    assert method.step(model, batch)["loss"].item() == pytest.approx(
        method.step(model, only_fit)["loss"].item()
    )
    held = data.train.indexed()[method.held_rows[:4].tolist()]
    assert method.step(model, held)["loss"].item() == 0.0
    with pytest.raises(UMTError, match="relearn.holdout"):
        _relearn(RelearnConfig(holdout=1.0))

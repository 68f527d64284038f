"""PMR: the coefficients, the prototypes, the prototypical loss on hand-checked numbers, and the
encoder behind pulled towards its prototypes on a dominated model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.methods import dominated_model, peer_batch, peer_bundle, stepped, tiny_fusion_model

from umt.data.base import ArrayDataset
from umt.methods.common import true_class_score
from umt.methods.joint import Joint
from umt.methods.pmr import PMR, PMRConfig, Prototypes, class_prototypes, pmr_coefficients
from umt.models.multimodal import MultimodalModel


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
    data, model = peer_bundle(lead=1.0), tiny_fusion_model()
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
    data, model, batch = peer_bundle(lead=1.0), tiny_fusion_model(), peer_batch()
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
    model, batch = dominated_model()
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
    joint_model = stepped(Joint(), model, batch, "sgd")
    pmr_model = stepped(method, model, batch, "sgd")
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

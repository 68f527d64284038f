"""MMPareto: the two-gradient closed form, the combination of agreeing and conflicting gradients,
and the step's gradient, on hand-checked numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.methods import peer_batch, tiny_fusion_model
from torch import nn

from umt.methods.mmpareto import MMPareto, MMParetoConfig, mmpareto_combine, pareto_weights


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
    model, batch = tiny_fusion_model(), peer_batch()
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

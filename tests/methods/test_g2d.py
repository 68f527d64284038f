"""G2D: UMT's feature distillation plus logit distillation, and its prioritisation (the stronger
encoders held in its epochs), on hand-computed numbers; its settings; cached teacher features."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers.methods import SHAPES, umt_batch, umt_bundle, umt_student, umt_teachers

from umt.errors import UMTError
from umt.methods import METHODS, G2DConfig, MethodContext, UMTConfig
from umt.methods.g2d import G2D, build_g2d
from umt.models import EncoderConfig, ModelConfig, MultimodalModel, build_model
from umt.study import load_config


def _build_g2d(cfg: G2DConfig, epochs: int = 0) -> tuple[MultimodalModel, G2D]:
    model = umt_student()
    ctx = MethodContext(cfg, model, umt_teachers(), umt_bundle(), 0, epochs=epochs)
    return model, build_g2d(ctx)


def _kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """Reference: T^2 * mean_i sum_k p_t log(p_t / p_s), written out."""
    p_t = torch.softmax(teacher / t, -1)
    p_s = torch.softmax(student / t, -1)
    return t * t * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()


# -- logit distillation inside the step ---------------------------------------------------------


@pytest.mark.parametrize("target", ["branch", "fused"])
def test_g2d_step_adds_the_weighted_logit_distillation(target: str) -> None:
    cfg = G2DConfig(
        weight=2.0, logit_weight=0.5, temperature=2.0, logit_target=target, prioritize=False
    )
    model, method = _build_g2d(cfg)
    modules = method.trainable()
    if target == "branch":
        assert modules is not None and set(modules.heads) == {"a", "b"}
        assert modules.heads["a"].in_features == 6 and modules.heads["a"].out_features == 3
    else:
        assert modules is None  # the fused logits need no extra head
    batch = umt_batch()
    out = method.step(model, batch)
    features = model.encode(batch)
    fused = model.fuse(features)
    teachers = umt_teachers()
    expected = F.cross_entropy(fused, batch["label"])
    for m in SHAPES:
        with torch.no_grad():
            target_f = teachers[m].encoders[m](batch[m])
            teacher_logits = teachers[m]({m: batch[m]})  # the teacher's own head
        expected = expected + 2.0 * F.mse_loss(features[m], target_f)
        student = modules.heads[m](features[m]) if modules is not None else fused
        kd = _kl(student, teacher_logits, 2.0)
        assert out[f"logit_distill_{m}"].item() == pytest.approx(kd.item(), rel=1e-5)
        expected = expected + 0.5 * kd
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    if modules is not None:
        assert all(h.weight.grad is not None for h in modules.heads.values())
    assert all(p.grad is None for t in method.teacher_models.values() for p in t.parameters())


def test_logit_options_are_checked() -> None:
    with pytest.raises(UMTError, match="g2d.logit_target"):
        G2DConfig(logit_weight=1.0, logit_target="both")
    with pytest.raises(UMTError, match="g2d.temperature"):
        G2DConfig(temperature=0.0)
    with pytest.raises(UMTError, match=r"umt.logit_weight.*unknown|unknown.*logit_weight"):
        load_config(overrides=["umt.logit_weight=0.5"])  # G2D's keys are g2d's alone


# -- prioritisation -----------------------------------------------------------------------------


def test_prioritisation_zeroes_the_stronger_encoders_weights_in_its_epochs() -> None:
    # Shares of a 10-epoch cap: epochs 1 and 2 (0.1 * 10 = 1 up to 0.3 * 10 = 3, exclusive).
    cfg = G2DConfig(weight=1.0, logit_weight=0.0, prioritize_start=0.1, prioritize_end=0.3)
    model, method = _build_g2d(cfg, epochs=10)
    assert method.min_epochs == 3  # early stopping waits for the window's end
    batch = umt_batch(16)
    teachers = umt_teachers()
    with torch.no_grad():  # s_hat_m = sum_i softmax(teacher_m)[y_i], by hand
        scores = {
            m: torch.softmax(teachers[m]({m: batch[m]}), -1)[torch.arange(16), batch["label"]].sum()
            for m in SHAPES
        }
    weakest = min(scores, key=lambda m: float(scores[m]))
    strong = next(m for m in SHAPES if m != weakest)
    out = method.step(model, batch)
    assert out[f"priority_{weakest}"].item() == 1.0 and out[f"priority_{strong}"].item() == 0.0
    out["loss"].backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for epoch, active in ((0, False), (1, True), (2, True), (3, False)):
        for n, p in model.named_parameters():
            p.grad = before[n].clone()
        method.on_train_epoch_start(model, epoch)
        method.on_after_backward(model)
        for n, p in model.named_parameters():
            held = active and n.startswith(f"encoders.{strong}.") and p.ndim >= 2
            assert torch.equal(p.grad, torch.zeros_like(p) if held else before[n]), (epoch, n)
    assert any(
        n.startswith(f"encoders.{strong}.") and p.ndim >= 2 for n, p in model.named_parameters()
    )


# -- g2d ----------------------------------------------------------------------------------------


def test_g2d_is_umt_with_g2ds_settings() -> None:
    spec = METHODS["g2d"]
    assert spec.uses_teachers and spec.build is build_g2d
    cfg = load_config()
    assert cfg.g2d == G2DConfig() and cfg.umt == UMTConfig()  # UMT's defaults unchanged
    assert (cfg.g2d.weight, cfg.g2d.logit_weight, cfg.g2d.temperature) == (1.0, 1.0, 1.0)
    assert cfg.g2d.logit_target == "fused" and cfg.g2d.prioritize
    # Setting one key keeps G2D's other defaults (not UMT's).
    changed = load_config(overrides=["g2d.prioritize_end=0.25"]).g2d
    assert changed == G2DConfig(prioritize_end=0.25) and changed.logit_weight == 1.0
    with pytest.raises(UMTError, match="g2d.prioritize_start, g2d.prioritize_end"):
        G2DConfig(prioritize_end=9)  # epochs are not shares of the training
    assert not hasattr(UMTConfig(), "logit_weight") and not hasattr(UMTConfig(), "prioritize")


@pytest.mark.parametrize("fusion", ["concat", "gated", "attention"])
def test_g2d_step_with_cached_teacher_features_equals_the_online_one(fusion: str) -> None:
    cfg = ModelConfig(EncoderConfig(feature_dim=6, hidden=8, depth=2), fusion=fusion, fusion_dim=8)
    torch.manual_seed(2)
    model = build_model(cfg, SHAPES, 3)
    data = umt_bundle()
    teachers = umt_teachers()
    with torch.no_grad():
        cached = {
            m: t.encoders[m](torch.from_numpy(data.train.arrays[m]).float()).numpy()
            for m, t in teachers.items()
        }
    g2d = G2DConfig(weight=2.0, logit_target="branch")
    online = build_g2d(MethodContext(g2d, model, teachers, data, 0))
    ctx = MethodContext(
        replace(g2d, cache_teachers=True), model, teachers, data, 0, lambda m: cached[m]
    )
    offline = build_g2d(ctx)
    offline.heads = online.heads  # the same branch heads
    assert offline.needs_index and not online.needs_index
    batch = data.train.indexed()[[0, 3, 5, 7, 11, 13]]
    model.eval()  # batch statistics would differ between the two passes otherwise
    a, b = online.step(model, batch), offline.step(model, batch)
    assert a["loss"].item() == pytest.approx(b["loss"].item(), rel=1e-5)
    for m in SHAPES:
        assert a[f"priority_{m}"].item() == b[f"priority_{m}"].item()

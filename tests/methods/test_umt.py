"""UMT: its settings, the step (task loss plus distillation to frozen teachers), plain UMT's loss
kept, and the projector where widths differ. Every number is computed by hand (or in plain
Python) and compared with the library's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.methods import SHAPES, umt_batch, umt_bundle, umt_student, umt_teachers
from torch import nn

from umt.errors import UMTError
from umt.methods import UMT, MethodContext, UMTConfig
from umt.methods.umt import build_umt
from umt.models import MultimodalModel
from umt.models.encoders import MLPEncoder
from umt.models.fusion import build_fusion
from umt.study import load_config


def _bn_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if "running_" in k or "num_batches_tracked" in k
    }


# -- settings -----------------------------------------------------------------------------------


def test_umt_config_weight_of_prefers_the_per_modality_weight() -> None:
    cfg = UMTConfig(weight=5.0, weights={"b": 0.5})
    assert cfg.weight_of("a") == 5.0
    assert cfg.weight_of("b") == 0.5


# -- the UMT step -------------------------------------------------------------------------------


def _umt(cfg: UMTConfig | None = None) -> tuple[UMT, dict[str, MultimodalModel]]:
    teachers = umt_teachers()
    method = UMT({m: t.encoders[m] for m, t in teachers.items()}, cfg or UMTConfig(weight=2.0))
    return method, teachers


def test_umt_step_returns_the_named_losses() -> None:
    method, _ = _umt()
    student = umt_student().train()
    out = method.step(student, umt_batch())
    assert set(out) == {"loss", "logits", "task_loss", "distill_loss", "distill_a", "distill_b"}
    assert out["logits"].shape == (8, 3)
    assert out["loss"].ndim == 0


def test_umt_step_loss_is_task_plus_distill() -> None:
    method, _ = _umt(UMTConfig(weight=2.0, weights={"b": 7.0}))
    student = umt_student().train()
    batch = umt_batch()
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
    student = umt_student().train()
    batch = umt_batch()
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
    student = umt_student().train()
    method.step(student, umt_batch())["loss"].backward()
    for m, teacher in teachers.items():
        for name, p in teacher.encoders[m].named_parameters():
            assert p.grad is None, f"teacher {m}: {name} got a gradient"


def test_umt_teacher_batchnorm_statistics_do_not_move() -> None:
    method, teachers = _umt()
    encoders = {m: t.encoders[m] for m, t in teachers.items()}
    before = {m: _bn_state(e) for m, e in encoders.items()}
    assert all(before.values())  # the MLP encoders do have BatchNorm buffers
    student = umt_student().train()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    for i in range(4):
        if i == 2:
            for e in encoders.values():
                e.train()  # someone (e.g. a trainer's model.train()) flips them: still frozen
        opt.zero_grad()
        method.step(student, umt_batch(seed=i))["loss"].backward()
        opt.step()
    for m, e in encoders.items():
        after = _bn_state(e)
        for k, v in before[m].items():
            assert torch.equal(after[k], v), f"teacher {m}: {k} changed"
    # Control: a train-mode forward pass does move these statistics (so the check can fail).
    e = encoders["a"].train()
    with torch.no_grad():
        e(umt_batch(seed=9)["a"])
    key = next(k for k in before["a"] if k.endswith("running_mean"))
    assert not torch.equal(_bn_state(e)[key], before["a"][key])


def test_umt_distill_term_alone_reaches_every_student_encoder() -> None:
    method, _ = _umt()
    student = umt_student().train()
    out = method.step(student, umt_batch())
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
    student = umt_student().train()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    batch = umt_batch(n=16)
    first = method.step(student, batch)["distill_loss"].item()
    for _ in range(30):
        opt.zero_grad()
        method.step(student, batch)["loss"].backward()
        opt.step()
    assert method.step(student, batch)["distill_loss"].item() < 0.5 * first


# -- plain UMT unchanged ------------------------------------------------------------------------


def _build(cfg: UMTConfig, student: MultimodalModel | None = None) -> tuple[MultimodalModel, UMT]:
    model = student if student is not None else umt_student()
    return model, build_umt(MethodContext(cfg, model, umt_teachers(), umt_bundle(), 0))


def test_default_umt_trains_nothing_extra_and_keeps_its_loss() -> None:
    model, method = _build(UMTConfig(weight=2.0))
    assert method.trainable() is None and not hasattr(method, "teacher_models")
    batch = umt_batch()
    out = method.step(model, batch)
    assert set(out) == {"loss", "logits", "task_loss", "distill_loss", "distill_a", "distill_b"}
    features = model.encode(batch)
    teachers = umt_teachers()
    expected = F.cross_entropy(model.fuse(features), batch["label"])
    for m in SHAPES:
        with torch.no_grad():
            target = teachers[m].encoders[m](batch[m])
        expected = expected + 2.0 * F.mse_loss(features[m], target)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


# -- projector ----------------------------------------------------------------------------------


def _narrow_student() -> MultimodalModel:
    """Student encoder of ``a`` 4 wide (its teacher: 6); ``b`` 6 wide like its teacher."""
    torch.manual_seed(3)
    encoders = nn.ModuleDict(
        {
            "a": MLPEncoder((5,), feature_dim=4, hidden=8),
            "b": MLPEncoder((4,), feature_dim=6, hidden=8),
        }
    )
    return MultimodalModel(encoders, build_fusion("concat", {"a": 4, "b": 6}), nn.Linear(10, 3))


def test_projector_only_where_the_widths_differ() -> None:
    model, method = _build(UMTConfig(weight=1.0), _narrow_student())
    modules = method.trainable()
    assert modules is not None and set(modules) == {"a"}
    proj = modules["a"]
    assert (proj.in_features, proj.out_features) == (4, 6)
    batch = umt_batch()
    out = method.step(model, batch)
    features = model.encode(batch)
    teachers = umt_teachers()
    with torch.no_grad():
        t_a = teachers["a"].encoders["a"](batch["a"])
        t_b = teachers["b"].encoders["b"](batch["b"])
    assert out["distill_a"].item() == pytest.approx(F.mse_loss(proj(features["a"]), t_a).item())
    assert out["distill_b"].item() == pytest.approx(F.mse_loss(features["b"], t_b).item())
    out["loss"].backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


def test_projector_false_keeps_the_error_and_true_projects_everywhere() -> None:
    model, method = _build(UMTConfig(project=False), _narrow_student())
    assert method.trainable() is None
    with pytest.raises(UMTError, match="same feature shape"):
        method.step(model, umt_batch())
    _, method = _build(UMTConfig(project=True), _narrow_student())
    modules = method.trainable()
    assert modules is not None and set(modules) == {"a", "b"}
    assert load_config(overrides=["umt.project=false"]).umt.project is False
    assert load_config().umt.project == "auto"
    with pytest.raises(UMTError, match="umt.project"):
        load_config(overrides=["umt.project=sometimes"])

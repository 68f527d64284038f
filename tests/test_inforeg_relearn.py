"""InfoReg and Diagnosing & Re-learning: their mechanisms on hand-computed numbers, tiny studies with
two and three modalities, a kill-and-resume of every new method, and a 2-process DDP run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_summary_is_the_stage_results
from helpers.methods import DIMS, tiny_fusion_model

from umt.data.base import ArrayDataset, DataBundle
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
from umt.study import load_config, run_study

_model = tiny_fusion_model


def _batch(n: int = 16, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(n, DIMS[m], generator=g) for m in ("a", "v")}
    batch["label"] = torch.randint(0, 3, (n,), generator=g)
    batch["a"] = batch["a"] + 2.0 * batch["label"][:, None]  # "a" carries the label: it leads
    return batch


def _bundle(n: int = 60) -> DataBundle:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    arrays = {"a": rng.normal(size=(n, 5)) + 2.0 * labels[:, None], "v": rng.normal(size=(n, 6))}
    ds = ArrayDataset(arrays, labels)
    return DataBundle("tiny", ds, ds, ds, num_classes=3)


# -- InfoReg -------------------------------------------------------------------------------------


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
    model, batch = _model(), _batch()
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
    model, batch = _model(), _batch()
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
    model, batch = _model(), _batch()
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


# -- Diagnosing & Re-learning -------------------------------------------------------------------


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
    model, data = _model(), _bundle()
    method = build_relearn(MethodContext(cfg or RelearnConfig(every=2), model, {}, data, 0))
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
    assert method.step(model, _batch())["reinit_a"].item() == 0.75


def test_relearn_diagnosis_clusters_training_and_held_out_features() -> None:
    model, method, data = _relearn(RelearnConfig(every=2, holdout=0.25, max_samples=1000))
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


# -- through a study ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inforeg-relearn")


@pytest.mark.parametrize("preset", ["imbalanced", "three"])
def test_inforeg_and_relearn_run_in_a_tiny_study(
    preset: str, peers_dir: Path, easy_overrides: list[str]
) -> None:
    overrides = [
        *easy_overrides,
        f"data.synthetic.preset={preset}",
        f"name={preset}",
        "methods=[inforeg,relearn]",
        "relearn.every=1",  # a diagnosis and re-initialisation at the start of epoch 1
        "relearn.max_samples=100",
    ]
    result = run_study(
        load_config(overrides=overrides), peers_dir, log=lambda _: None, report=False
    )
    modalities = result.summary["data"]["modalities"]
    assert len(modalities) == (3 if preset == "three" else 2)
    for method in ("inforeg", "relearn"):
        assert f"seed0/{method}" in result.trained
        entry = result.summary["methods"][method]
        # 4 classes, chance 0.25; over training seeds 0-4 (both presets) the test accuracy
        # was 0.46-0.99, the strong encoder's probe 0.85-1.00.
        assert entry["test_acc"]["mean"] >= 0.4, (method, entry["test_acc"])
        assert result.summary["probes"][modalities[0]][method]["mean"] >= 0.7
        assert set(entry["modality_test_acc"]) == set(modalities)
        assert set(result.summary["probes"][modalities[-1]]) >= {"teacher", method}
    assert_summary_is_the_stage_results(result.run_dir, result.summary)
    run = peers_dir / preset / "seed0"
    rows = (run / "relearn" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index(f"train/reinit_{modalities[0]}")
    values = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert values[0] == 0.0 and 0.0 < values[-1] < 1.0  # epoch 0: none yet; epoch 1: re-init
    assert all(
        f"train/beta_{m}" in (run / "inforeg" / "metrics.csv").read_text() for m in modalities
    )


# -- resume after a kill, and DDP ---------------------------------------------------------------

NEW = [
    "seeds=[0]",
    "data.name=synthetic",
    "methods=[g2d,inforeg,relearn]",
    "g2d.prioritize_end=1",
    "relearn.every=2",  # re-initialised at the start of epoch 2
    "relearn.max_samples=200",
    "train.epochs=3",
    "train.lr=0.01",
    "train.progress=false",
    "train.threads=1",
    "data.synthetic.n_train=320",
    "data.synthetic.n_val=101",
    "data.synthetic.n_test=100",
    "model.encoder.hidden=32",
    "model.encoder.feature_dim=16",
    "model.head_hidden=16",
    "probe.max_iter=20",
]


def _cli(out: Path, extra: list[str], fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.pop("UMT_FAULT", None)
    env["UMT_FAULT_SIGNAL"] = "KILL"
    if fault:
        env["UMT_FAULT"] = fault
    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(out)]
    for o in [*NEW, *extra]:
        args += ["--set", o]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The per-seed stage results without timings."""
    return {
        stage: {k: v for k, v in r.items() if k != "train_seconds"}
        for stage, r in summary["per_seed"]["0"]["stages"].items()
    }


def test_killed_new_methods_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    whole = _cli(tmp_path / "whole", [])
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = _numbers(json.loads((tmp_path / "whole" / "default" / "summary.json").read_text()))
    # Each new method killed mid-epoch 2 (5 steps an epoch): g2d after its prioritisation,
    # inforeg with a trace history, relearn right after its re-initialisation. Each run resumes
    # the stage the run before killed.
    out = tmp_path / "killed"
    for fault in ("step:g2d:12", "step:inforeg:12", "step:relearn:12"):
        killed = _cli(out, [], fault)
        assert killed.returncode != 0 and "Traceback" not in killed.stdout
    resumed = _cli(out, [])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "default" / "summary.json").read_text())
    assert _numbers(summary) == expected  # bit-identical on CPU


@pytest.mark.slow  # about 50 s here (2 processes, 2 teachers and 3 methods): over the 40 s budget
def test_new_methods_under_ddp_keep_the_ranks_in_step(tmp_path: Path) -> None:
    extra = ["train.epochs=2", "train.batch_size=32", "train.devices=2", "train.strategy=ddp"]
    extra += ["train.accelerator=cpu", "relearn.every=1"]
    done = _cli(tmp_path, extra)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    for stage, r in summary["per_seed"]["0"]["stages"].items():
        # fit_val_acc: each rank's model on its half of val, synced; val_acc: rank 0's model
        # on all of val. Equal only if the ranks' models are the same after every re-init and
        # regulation (diverged ranks would each score their own model).
        assert r["fit_val_acc"] == pytest.approx(r["val_acc"], abs=1e-6), stage
    assert {"g2d", "inforeg", "relearn"} <= set(summary["methods"])


@pytest.mark.parametrize("fusion", ["concat", "sum", "gated", "film", "attention"])
def test_inforeg_and_relearn_train_with_every_fusion(fusion: str) -> None:
    from umt.models import EncoderConfig, ModelConfig, build_model

    cfg = ModelConfig(EncoderConfig(feature_dim=8, hidden=8), fusion=fusion, fusion_dim=8)
    data = _bundle()
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

"""Methods through a tiny study on an easy set: each trains, scores above chance, and its numbers in
``summary.json`` are its stage directories' own (ReconBoost's study: ``test_reconboost.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_summary_is_the_stage_results
from helpers.methods import PEERS

from umt.study import load_config, run_study

# -- the peers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run directory for the module: teachers and joint are trained once, then cached."""
    return tmp_path_factory.mktemp("peers")


@pytest.mark.parametrize("method", PEERS)
def test_peer_runs_in_a_tiny_study(method: str, peers_dir: Path, easy_overrides: list[str]) -> None:
    overrides = [*easy_overrides, f"methods=[joint,{method}]", "gblend.every=1"]
    result = run_study(
        load_config(overrides=overrides), peers_dir, log=lambda _: None, report=False
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


# -- UMT's variants and G2D, with two and three modalities --------------------------------------


@pytest.fixture(scope="module")
def umt_g2d_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("umt-family")


@pytest.mark.parametrize("preset", ["imbalanced", "three"])
def test_umt_variants_and_g2d_run_in_a_tiny_study(
    preset: str, umt_g2d_dir: Path, easy_overrides: list[str]
) -> None:
    overrides = [
        *easy_overrides,
        f"data.synthetic.preset={preset}",
        f"name={preset}",
        "methods=[umt,g2d]",
        "g2d.logit_target=branch",  # branch heads: trained, checkpointed with the stage
        "g2d.logit_weight=0.5",
        "g2d.temperature=2.0",
        "g2d.prioritize_end=0",
    ]
    result = run_study(
        load_config(overrides=overrides), umt_g2d_dir, log=lambda _: None, report=False
    )
    modalities = result.summary["data"]["modalities"]
    assert len(modalities) == (3 if preset == "three" else 2)
    for method in ("umt", "g2d"):
        assert f"seed0/{method}" in result.trained
        entry = result.summary["methods"][method]
        # 4 classes, chance 0.25; over training seeds 0-4 (both presets) the strong encoder's
        # probe was 0.78-1.00 for both methods, UMT's test accuracy 0.49-0.88. G2D's fused head
        # ranged 0.30-0.83 (logit distillation at 0.5 in two epochs): only its encoder is held
        # to a margin.
        assert result.summary["probes"][modalities[0]][method]["mean"] >= 0.7
        if method == "umt":
            assert entry["test_acc"]["mean"] >= 0.4, entry["test_acc"]
        assert set(entry["modality_test_acc"]) == set(modalities)
    assert_summary_is_the_stage_results(result.run_dir, result.summary)
    metrics = (umt_g2d_dir / preset / "seed0" / "g2d" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"train/priority_{m}" in metrics for m in modalities)
    assert "train/logit_distill_loss" in metrics


# -- InfoReg and Re-learning, with two and three modalities -------------------------------------


@pytest.fixture(scope="module")
def inforeg_relearn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inforeg-relearn")


@pytest.mark.parametrize("preset", ["imbalanced", "three"])
def test_inforeg_and_relearn_run_in_a_tiny_study(
    preset: str, inforeg_relearn_dir: Path, easy_overrides: list[str]
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
        load_config(overrides=overrides), inforeg_relearn_dir, log=lambda _: None, report=False
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
    run = inforeg_relearn_dir / preset / "seed0"
    rows = (run / "relearn" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index(f"train/reinit_{modalities[0]}")
    values = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert values[0] == 0.0 and 0.0 < values[-1] < 1.0  # epoch 0: none yet; epoch 1: re-init
    assert all(
        f"train/beta_{m}" in (run / "inforeg" / "metrics.csv").read_text() for m in modalities
    )

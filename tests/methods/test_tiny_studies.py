"""Methods through a tiny study on an easy set: each trains with its own mechanism at work (the
quantities it logs, which a method reduced to joint training would not have), and its numbers in
``summary.json`` are its stage directories' own (ReconBoost's study: ``test_reconboost.py``).
Whether each mechanism does what its paper says is tested on hand-computed cases in
``tests/methods/test_<method>.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_summary_is_the_stage_results
from helpers.methods import PEERS

from umt.engine.checkpoints import metric_rows
from umt.study import load_config, run_study

#: The quantity each peer logs per modality: what its mechanism computes at every step.
MECHANISM = {
    "gblend": "weight",
    "ogm_ge": "coeff",
    "mmpareto": "pareto",
    "mla": "loss",
    "pmr": "beta",
}

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
    # The peer's own quantity, per modality, every epoch (OGM-GE's coefficients, G-Blending's
    # weights, ...), and it moved off its neutral value at least once: the mechanism ran.
    rows = metric_rows(peers_dir / "default" / "seed0" / method / "metrics.csv")
    key = MECHANISM[method]
    for m in ("strong", "weak"):
        values = [float(r[f"train/{key}_{m}"]) for r in rows if r.get(f"train/{key}_{m}")]
        assert values and all(np.isfinite(values)), (method, m)
    assert entry["recipe"]["optimizer"] == "sgd"  # its authors' optimiser, by default
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
        assert set(entry["modality_test_acc"]) == set(modalities)
        stage = result.summary["per_seed"]["0"]["stages"][method]
        if method == "umt":  # umt.select: better, but no joint stage to compare the teachers
            assert "distilled" not in stage  # with: every modality is distilled, as the papers
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
        "relearn.every=0.5",  # a diagnosis and re-initialisation at the start of epoch 1 of 2
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
        assert entry["recipe"]["optimizer"] == "sgd"  # its authors' optimiser, by default
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

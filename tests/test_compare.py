"""Comparisons and the recommendation of a tiny study: outcome files, per-seed differences, the
scores recomputed from the outcomes, and a run directory written before outcomes were kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from umt.study import OUTCOMES_FILE, load_config, run_study
from umt.tasks import CLASSIFICATION


def _quiet(_: str) -> None:
    pass


def test_tiny_study_keeps_outcomes_and_compares(tmp_path: Path, tiny_overrides: list[str]) -> None:
    overrides = [*tiny_overrides, "seeds=[0,1]"]
    summary = run_study(load_config(overrides=overrides), tmp_path, log=_quiet).summary
    run = tmp_path / "default"
    stages = ("teacher-strong", "teacher-weak", "joint", "umt", "ume")
    for seed in (0, 1):
        for stage in stages:
            outcomes = np.load(run / f"seed{seed}" / stage / OUTCOMES_FILE)
            assert outcomes.dtype == np.uint8 and outcomes.shape == (100,)
            result = json.loads((run / f"seed{seed}" / stage / "result.json").read_text())
            assert CLASSIFICATION.score_of(outcomes) == result["test_acc"]  # exactly

    def test_acc(seed: int, stage: str) -> float:
        return float(summary["per_seed"][str(seed)]["stages"][stage]["test_acc"])

    by_pair = {(c["a"], c["b"], c["what"], c["modality"]): c for c in summary["comparisons"]}
    assert by_pair["umt", "joint", "test_acc", None]["name"] == "UMT − joint (naive fusion)"
    for c in summary["comparisons"]:
        if c["what"] != "test_acc":
            continue
        want = [test_acc(s, c["a"]) - test_acc(s, c["b"]) for s in (0, 1)]
        assert np.allclose(c["per_seed"], want, rtol=0, atol=1e-9), c["name"]
        assert abs(c["mean_diff"] - float(np.mean(want))) < 1e-9
        assert c["lo"] <= c["mean_diff"] <= c["hi"]
        assert c["within_noise"] == (c["lo"] <= 0 <= c["hi"])
        assert c["interval"] == "paired bootstrap over test samples within each seed"
    fused = [s for s in summary["methods"] if not s.startswith("teacher-")]
    ranked = sorted(fused, key=lambda s: -summary["methods"][s]["test_acc"]["mean"])
    best = [c for c in summary["comparisons"] if c["name"].startswith("best − runner-up")]
    assert len(best) == 1 and (best[0]["a"], best[0]["b"]) == (ranked[0], ranked[1])
    gap = by_pair["teacher", "joint", "probe_test_acc", "weak"]
    probes = summary["probes"]["weak"]
    want = [
        t - j for t, j in zip(probes["teacher"]["values"], probes["joint"]["values"], strict=True)
    ]
    assert np.allclose(gap["per_seed"], want, rtol=0, atol=1e-12)
    assert gap["interval"] == "Student t over the per-seed differences"
    assert ("umt", "joint", "probe_test_acc", "strong") in by_pair

    rec = summary["recommendation"]
    val = {s: summary["methods"][s]["val_acc"]["mean"] for s in fused}
    assert rec["method"] == max(fused, key=lambda s: val[s]) and rec["val_acc"] == max(val.values())
    assert rec["rule"] == summary["choice"]["method"]
    assert rec["agree"] == (val[rec["rule_stage"]] >= max(val.values()))
    report = (run / "report.md").read_text()
    assert "## Comparisons (95 % intervals)" in report and "**Recommended:" in report

    # A run directory written before outcomes were kept: the files are recomputed from the
    # saved models, nothing retrains, and the comparisons come out the same.
    for stage in ("joint", "ume"):
        (run / "seed1" / stage / OUTCOMES_FILE).unlink()
    again = run_study(load_config(overrides=overrides), tmp_path, log=_quiet)
    assert again.trained == []
    assert (run / "seed1" / "joint" / OUTCOMES_FILE).is_file()
    assert again.summary["comparisons"] == summary["comparisons"]

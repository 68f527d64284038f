"""Comparisons and the verdict of a tiny study: outcome files, per-seed differences, the scores
recomputed from the outcomes, and a run directory written before outcomes were kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_summary_is_the_stage_results, quiet

from umt.data.base import ArrayDataset
from umt.data.segmentation import IGNORE_INDEX, SegmentationDataset
from umt.report.compare import OUTCOMES_FILE, comparisons
from umt.report.stats import paired_interval
from umt.study import load_config, run_study
from umt.tasks import CLASSIFICATION, SEGMENTATION, accuracy


def test_tiny_study_keeps_outcomes_and_compares(tmp_path: Path, tiny_overrides: list[str]) -> None:
    overrides = [*tiny_overrides, "seeds=[0,1]"]
    summary = run_study(load_config(overrides=overrides), tmp_path, log=quiet).summary
    run = tmp_path / "default"
    stages = ("teacher-strong", "teacher-weak", "joint", "umt", "ume")
    for seed in (0, 1):
        for stage in stages:
            result = json.loads((run / f"seed{seed}" / stage / "result.json").read_text())
            for split in ("val", "test"):
                outcomes = np.load(run / f"seed{seed}" / stage / OUTCOMES_FILE.format(split=split))
                assert outcomes.dtype == np.uint8 and outcomes.shape == (100,)
                assert CLASSIFICATION.score_of(outcomes) == result[f"{split}_acc"]  # exactly
    assert_summary_is_the_stage_results(run, summary)  # means and stds over the two seeds

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
        assert c["interval"].startswith("test samples only: seed-to-seed variance not measured")
    fused = [s for s in summary["methods"] if not s.startswith("teacher-")]
    verdict = summary["verdict"]
    val = {s: summary["methods"][s]["val_acc"]["mean"] for s in fused}
    assert verdict["method"] == max(fused, key=lambda s: val[s]) and verdict["split"] == "val"
    # Every pair shown was fixed before looking at test: UMT − joint and the verdict's pair.
    shown = [(c["a"], c["b"]) for c in summary["comparisons"] if c["what"] == "test_acc"]
    assert shown[0] == ("umt", "joint") and set(shown) <= {
        ("umt", "joint"),
        (verdict["method"], verdict["runner_up"]),
        (verdict["runner_up"], verdict["method"]),
    }
    gap = by_pair["teacher", "joint", "probe_test_acc", "weak"]
    probes = summary["probes"]["weak"]
    want = [
        t - j for t, j in zip(probes["teacher"]["values"], probes["joint"]["values"], strict=True)
    ]
    assert np.allclose(gap["per_seed"], want, rtol=0, atol=1e-12)
    assert gap["interval"] == "Student t over the per-seed differences"
    assert ("umt", "joint", "probe_test_acc", "strong") in by_pair

    report = (run / "report.md").read_text()
    assert "## Comparisons on test (95 % intervals)" in report and "## Verdict" in report

    # Deleted outcome files: the stages are recomputed (their recorded files no longer match:
    # umt.study.cache) and the comparisons come out the same.
    for stage in ("joint", "ume"):
        (run / "seed1" / stage / OUTCOMES_FILE.format(split="test")).unlink()
    again = run_study(load_config(overrides=overrides), tmp_path, log=quiet)
    assert (run / "seed1" / "joint" / OUTCOMES_FILE.format(split="test")).is_file()
    assert again.summary["comparisons"] == summary["comparisons"]


def _one_hot(b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` whose argmax is the stored prediction map ``b["x"]``."""
    return F.one_hot(b["x"][:, 0].long(), 4).permute(0, 3, 1, 2).float()


def test_segmentation_outcomes_by_hand_and_against_the_scores() -> None:
    # Image 0: labels [0 0 1 | 1 2 ignored], prediction [0 1 1 | 1 2 0]. Class 0: I 1, U 2;
    # class 1: I 2, U 3; class 2: I 1, U 1 (the unlabelled pixel counts nowhere).
    label = np.array([[[0, 0, 1], [1, 2, IGNORE_INDEX]]])
    pred = np.array([[[0, 1, 1], [1, 2, 0]]])
    ds = SegmentationDataset({"x": pred[:, None].astype(np.float32)}, label)
    out = SEGMENTATION.outcomes(_one_hot, ds, 4)
    assert out.shape == (1, 2, 4)
    assert out[0].tolist() == [[1, 2, 1, 0], [2, 3, 1, 0]]
    assert abs(SEGMENTATION.score_of(out) - (1 / 2 + 2 / 3 + 1) / 3) < 1e-7  # float32
    assert SEGMENTATION.score_of(out) == segmentation_scores_miou(ds)

    # Random maps (some classes absent from some images, a tenth unlabelled): the mIoU of the
    # summed outcomes is the metric's, exactly, on the whole split and on a subset of images.
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (12, 5, 6))  # class 3 only ever predicted
    label[rng.random(label.shape) < 0.1] = IGNORE_INDEX
    pred = rng.integers(0, 4, (12, 5, 6))
    ds = SegmentationDataset({"x": pred[:, None].astype(np.float32)}, label)
    out = SEGMENTATION.outcomes(_one_hot, ds, 4)
    assert SEGMENTATION.score_of(out) == segmentation_scores_miou(ds)
    rows = [0, 3, 3, 7]  # a bootstrap resample repeats images
    sub = SegmentationDataset({"x": pred[rows, None].astype(np.float32)}, label[rows])
    assert SEGMENTATION.score_of(out[rows]) == segmentation_scores_miou(sub)


def segmentation_scores_miou(ds: SegmentationDataset) -> float:
    return float(SEGMENTATION.scores(_one_hot, ds, 4)["miou"])


def test_classification_outcomes_recompute_accuracy_exactly() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, 37)
    y = np.where(rng.random(37) < 0.7, x, (x + 1) % 3)
    ds = ArrayDataset({"x": x[:, None].astype(np.float32)}, y)

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.one_hot(b["x"][:, 0].long(), 3).float()

    out = CLASSIFICATION.outcomes(predict, ds, 3)
    assert out.dtype == np.uint8 and out.tolist() == (x == y).astype(int).tolist()
    assert CLASSIFICATION.score_of(out) == accuracy(predict, ds, 3)  # float32, as torchmetrics
    same = paired_interval([out], [out.copy()], CLASSIFICATION.score_of, additive=True)
    assert (same.mean_diff, same.lo, same.hi) == (0.0, 0.0, 0.0)


def _s(*values: float) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "values": list(values)}


def test_without_outcomes_the_intervals_are_over_seeds() -> None:
    # A run directory written before outcomes were kept (and no model to recompute them):
    # UMT − joint per seed +0.02, +0.04 -> mean 0.03, sd 0.01414, t(1) 12.706: 0.03 ± 0.127.
    summary = {
        "seeds": [0, 1],
        "methods": {
            "joint": {"val_acc": _s(0.80, 0.80), "test_acc": _s(0.70, 0.72)},
            "umt": {"val_acc": _s(0.82, 0.84), "test_acc": _s(0.72, 0.76)},
        },
        "probes": {"a": {"teacher": _s(0.6, 0.6), "joint": _s(0.5, 0.6), "umt": _s(0.6, 0.6)}},
    }
    c = comparisons(summary, CLASSIFICATION, {}, verdict_pair=("umt", "joint"))
    assert [(x["a"], x["b"], x["modality"]) for x in c] == [
        ("umt", "joint", None),  # also the verdict's pair: shown once
        ("teacher", "joint", "a"),
        ("umt", "joint", "a"),
    ]
    assert c[0]["per_seed"] == pytest.approx([0.02, 0.04])
    assert c[0]["interval"] == "Student t over the per-seed differences"
    half = 12.7062 * 0.02 / np.sqrt(2) / np.sqrt(2)
    assert (c[0]["lo"], c[0]["hi"]) == pytest.approx((0.03 - half, 0.03 + half), abs=1e-4)
    assert c[0]["within_noise"] is True
    assert c[2]["per_seed"] == pytest.approx([0.1, 0.0])
    one_seed = {**summary, "seeds": [0]}
    for entry in one_seed["methods"].values():
        for key in ("val_acc", "test_acc"):
            entry[key] = _s(entry[key]["values"][0])
    one_seed["probes"] = {}
    c = comparisons(one_seed, CLASSIFICATION, {}, verdict_pair=("umt", "joint"))
    assert c[0]["lo"] is None and c[0]["within_noise"] is None and c[0]["interval"] is None

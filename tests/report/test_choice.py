"""One verdict (issue 30): decided on validation with its interval against the runner-up, a tie
within noise naming both and the cheaper; the papers' UMT/UME rule shown as evidence under it,
never as a second verdict; no pair the report shows is chosen on test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from umt.report import markdown, tables
from umt.report.compare import OUTCOMES_FILE, add_comparisons
from umt.report.verdict import rule_text, verdict_text
from umt.tasks import CLASSIFICATION


def _s(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": 0.0, "values": values}


def _summary(ume: float = 0.9165, joint: float = 0.8886) -> dict[str, Any]:
    return {
        "study": "rule",
        "data": {
            "name": "toy",
            "description": "toy",
            "modalities": ["a", "b"],
            "num_classes": 2,
            "sizes": {"train": 4, "val": 4, "test": 4},
        },
        "seeds": [0],
        "mask_fill": "zero",
        "methods": {
            "joint": {"val_acc": _s([joint]), "test_acc": _s([0.5])},
            "umt": {"val_acc": _s([0.5]), "test_acc": _s([0.25])},
            "ume": {"val_acc": _s([ume]), "test_acc": _s([0.75])},
        },
        "probes": {},
        "choice": {
            "method": "ume" if ume >= joint else "umt",
            "reason": "the old sentence",
            "ume_acc": ume,
            "joint_acc": joint,
            "split": "val",
            "margin": 0.0,
            "compare": "joint",
        },
        "failed": {},
    }


def _outcomes(root: Path, per_split: dict[str, dict[str, list[int]]]) -> None:
    for split, stages in per_split.items():
        for stage, o in stages.items():
            (root / "seed0" / stage).mkdir(parents=True, exist_ok=True)
            path = root / "seed0" / stage / OUTCOMES_FILE.format(split=split)
            np.save(path, np.array(o, dtype=np.uint8))


def test_the_rule_is_evidence_with_percentages_never_a_second_verdict() -> None:
    text = rule_text(_summary())
    assert text.startswith("Evidence, the papers' UMT/UME rule")
    assert "UME 91.65 % ≥ joint (naive fusion) 88.86 % − margin 0.00" in text
    assert "0.9165" not in text and "**" not in text  # no fractions, not bold: not a verdict
    umt = rule_text(_summary(ume=0.80, joint=0.8125))
    assert "points to UMT" in umt and "UME 80.00 % < joint (naive fusion) 81.25 %" in umt


def test_one_verdict_on_validation_a_tie_within_noise_names_both_and_the_cheaper(
    tmp_path: Path,
) -> None:
    summary = _summary()
    summary["methods"]["ume"]["train_seconds"] = _s([0.0])
    summary["methods"]["joint"]["train_seconds"] = _s([30.0])
    # Validation: UME right on 9 of 12, joint on 8: within noise. Test: joint is better, and
    # that must not change which pair is shown.
    val = {"ume": [1] * 9 + [0] * 3, "joint": [1] * 8 + [0] * 4, "umt": [1] * 6 + [0] * 6}
    test = {"ume": [1] * 3 + [0] * 9, "joint": [1] * 11 + [0], "umt": [1] * 12}
    _outcomes(tmp_path, {"val": val, "test": test})
    add_comparisons(summary, CLASSIFICATION, tmp_path, fusion="concat")
    v = summary["verdict"]
    assert (v["method"], v["runner_up"], v["split"]) == ("ume", "joint", "val")
    assert v["tie"] and v["tied_with"] == ["joint"] and v["cheaper"] == "ume"
    sentence = verdict_text(summary, bold=False)
    assert sentence.startswith("A tie between UME and joint (naive fusion)")
    assert "UME is the cheaper to train" in sentence
    # The comparisons on test: UMT − joint and the verdict's pair, none picked by test ranking.
    pairs = [(c["a"], c["b"]) for c in summary["comparisons"]]
    assert pairs == [("umt", "joint"), ("ume", "joint")]
    assert all("runner-up on test" not in c["name"] for c in summary["comparisons"])
    # The rule's noise is read on the split it decides on.
    assert summary["choice"]["noise"]["what"] == "val_acc"


def test_beyond_noise_the_verdict_names_one_method(tmp_path: Path) -> None:
    summary = _summary()
    summary["seeds"] = [0, 1, 2]
    for stage, vals in {
        "joint": [0.70, 0.72, 0.71],
        "umt": [0.5] * 3,
        "ume": [0.9, 0.91, 0.92],
    }.items():
        summary["methods"][stage]["val_acc"] = _s(vals)
        summary["methods"][stage]["test_acc"] = _s(vals)
    add_comparisons(summary, CLASSIFICATION, tmp_path, fusion="concat")  # no outcomes: t over seeds
    assert summary["verdict"]["method"] == "ume" and not summary["verdict"]["tie"]
    assert verdict_text(summary).startswith("**Use UME**: the best on validation")


def test_the_report_and_the_terminal_carry_one_verdict(tmp_path: Path) -> None:
    summary = _summary()
    add_comparisons(summary, CLASSIFICATION, tmp_path, fusion="concat")
    md = markdown(summary)
    assert md.index("## Verdict") < md.index("## Modality failure")  # first, before the tables
    assert md.count("**Use ") + md.count("**A tie") == 1 and "Chosen:" not in md
    assert "Recommended:" not in md
    text = tables(summary)
    assert text.rstrip().splitlines()[-1] == verdict_text(summary, bold=False)
    assert "Chosen:" not in text and "Recommended:" not in text

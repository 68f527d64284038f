"""The UMT/UME choice sentence (issue 16): percentages with two decimals, named as the papers'
rule, no claim about paired features stated as fact, and the noise on the rule's pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from umt.report import markdown
from umt.report.compare import OUTCOMES_FILE, add_comparisons
from umt.report.verdict import choice_text
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


def test_the_sentence_gives_percentages_and_names_the_rule() -> None:
    text = choice_text(_summary())
    assert text.startswith("**Chosen: UME.**")
    assert "UME 91.65 % ≥ joint (naive fusion) 88.86 % − margin 0.00 points" in text
    assert "papers' UMT/UME rule" in text
    assert "0.9165" not in text and "0.8886" not in text  # no fractions beside percentages
    assert "little is gained" not in text and "learns paired features" not in text
    assert "does not show it" in text  # the rule's reading, not a finding
    umt = choice_text(_summary(ume=0.80, joint=0.8125))
    assert (
        umt.startswith("**Chosen: UMT.**") and "UME 80.00 % < joint (naive fusion) 81.25 %" in umt
    )
    assert "learns paired features" not in umt


def test_within_noise_reads_as_a_tie_and_beyond_noise_says_so() -> None:
    summary = _summary()
    noise = {"what": "test_acc", "mean_diff": 0.0279, "interval": "paired bootstrap"}
    summary["choice"]["noise"] = {**noise, "lo": -0.005, "hi": 0.061, "within_noise": True}
    text = choice_text(summary)
    assert "+2.79 points, 95 % interval [−0.50, 6.10]" in text
    assert "the rule's inputs differ by less than the noise: read its choice as a tie" in text
    summary["choice"]["noise"] = {**noise, "lo": 0.01, "hi": 0.05, "within_noise": False}
    assert "beyond the noise" in choice_text(summary)
    assert "tie" not in choice_text(summary)
    summary["choice"]["noise"] = {**noise, "lo": None, "hi": None, "within_noise": None}
    assert "no interval" in choice_text(summary)
    assert "## UMT or UME\n\n" + choice_text(summary) in markdown(summary)


def test_add_comparisons_compares_the_rules_pair_and_keeps_its_noise(tmp_path: Path) -> None:
    # Four test samples: UME right on 3 (0.75), joint on 2 (0.5); UMT on 1. The best − runner-up
    # pair is UME − joint here, so make UMT second on test to force the rule's own entry.
    summary = _summary()
    summary["methods"]["umt"]["test_acc"] = _s([0.75])
    outcomes = {"joint": [1, 1, 0, 0], "umt": [1, 1, 1, 0], "ume": [1, 1, 1, 0]}
    for stage, o in outcomes.items():
        (tmp_path / "seed0" / stage).mkdir(parents=True)
        np.save(tmp_path / "seed0" / stage / OUTCOMES_FILE, np.array(o, dtype=np.uint8))
    add_comparisons(summary, CLASSIFICATION, tmp_path, fusion="concat", n_boot=200)
    pair = [c for c in summary["comparisons"] if (c["a"], c["b"]) == ("ume", "joint")]
    assert len(pair) == 1 and "rule" in pair[0]["name"]
    assert abs(pair[0]["mean_diff"] - 0.25) < 1e-12  # 3/4 − 2/4
    noise = summary["choice"]["noise"]
    assert noise["mean_diff"] == pair[0]["mean_diff"] and noise["lo"] == pair[0]["lo"]
    assert noise["within_noise"] == (noise["lo"] <= 0 <= noise["hi"])
    assert set(summary["choice"]) >= {"method", "reason", "ume_acc", "joint_acc", "split"}

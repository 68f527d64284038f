"""The paper's claims as measured assertions on the synthetic presets, over fixed seeds.

Margins are set from what was observed (see the comments) with room for platform noise; each
assertion fails if the effect disappears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import quiet

from umt.study import load_config, run_study

FAST = ["data.name=synthetic", "train.progress=false", "train.threads=1", "probe.max_iter=50"]


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cfg = load_config(overrides=[*FAST, "data.synthetic.preset=imbalanced", "seeds=[0,1,2]"])
    out = tmp_path_factory.mktemp("imbalanced")
    return run_study(cfg, out, log=quiet, report=False).summary


def _per_seed(summary: dict[str, Any], kind: str, stage: str, key: str) -> list[float]:
    return [summary["per_seed"][s][kind][stage][key]["test_acc"] for s in summary["per_seed"]]


def _probe(summary: dict[str, Any], stage: str, modality: str) -> list[float]:
    return _per_seed(summary, "probes", stage, modality)


def _acc(summary: dict[str, Any], stage: str) -> list[float]:
    return [summary["per_seed"][s]["stages"][stage]["test_acc"] for s in summary["per_seed"]]


def test_joint_training_under_trains_the_weak_encoder(imbalanced: dict[str, Any]) -> None:
    # Observed (seeds 0-2): joint's weak encoder probes 6-8.5 points below the teacher's.
    teacher = _probe(imbalanced, "teacher-weak", "weak")
    joint = _probe(imbalanced, "joint", "weak")
    for t, j in zip(teacher, joint, strict=True):
        assert j <= t - 0.03, (teacher, joint)


def test_umt_closes_the_weak_encoders_gap(imbalanced: dict[str, Any]) -> None:
    # Observed: UMT's weak encoder probes 0-3 points *above* its teacher's.
    teacher = _probe(imbalanced, "teacher-weak", "weak")
    umt = _probe(imbalanced, "umt", "weak")
    for t, u in zip(teacher, umt, strict=True):
        assert u >= t - 0.02, (teacher, umt)


def test_umt_beats_joint_training_on_test_accuracy(imbalanced: dict[str, Any]) -> None:
    # Observed (umt.select: better, init from the teachers): +3.2 to +5.3 points per seed.
    for j, u in zip(_acc(imbalanced, "joint"), _acc(imbalanced, "umt"), strict=True):
        assert u >= j + 0.015, (j, u)


def test_without_paired_features_ume_is_close_to_umt_and_chosen(imbalanced: dict[str, Any]) -> None:
    # Observed: UME 94.5 %, UMT 96.9 % (mean); UME above joint on val in every seed.
    ume = imbalanced["methods"]["ume"]["test_acc"]["mean"]
    umt = imbalanced["methods"]["umt"]["test_acc"]["mean"]
    assert ume >= umt - 0.04
    assert imbalanced["choice"]["method"] == "ume"


def test_with_paired_features_umt_beats_ume_and_is_chosen(tmp_path: Path) -> None:
    # On 80 % of the samples only the sum of the modalities' codes tells the label. Joint
    # training learns it (observed 75 % test vs 32 % for UME); distillation towards teachers
    # that cannot see it pulls the other way, so lambda is the validation-chosen 0.3 here
    # (observed UMT 57 % +- 9 vs UME 32 %; at lambda = 1 UMT falls to 35 %).
    cfg = load_config(
        overrides=[
            *FAST,
            "data.synthetic.preset=paired",
            "seeds=[0,1]",
            "train.epochs=40",
            "umt.weight=0.3",
        ]
    )
    summary = run_study(cfg, tmp_path, log=quiet, report=False).summary
    for ume, umt in zip(_acc(summary, "ume"), _acc(summary, "umt"), strict=True):
        assert umt >= ume + 0.08, (ume, umt)
    for ume, joint in zip(_acc(summary, "ume"), _acc(summary, "joint"), strict=True):
        assert joint >= ume + 0.2, (ume, joint)
    assert summary["choice"]["method"] == "umt"


@pytest.mark.slow
def test_default_study_on_avdigits_shows_modality_failure_and_its_fix(tmp_path: Path) -> None:
    # The default study (`umt run`), 3 seeds; about 5 minutes on 2 cores. Observed (seeds 0-2):
    # the joint model's visual encoder probes 13.7-16 points below the visual teacher's, UMT's
    # 11.7-12.9 points above joint's (within 2-3 of the teacher), and UMT's test accuracy is
    # 1.5-5.8 points above joint's in every seed.
    cfg = load_config(overrides=["train.progress=false", "train.threads=1"])
    assert cfg.data.name == "avdigits"
    summary = run_study(cfg, tmp_path, log=quiet, report=False).summary
    teacher = _probe(summary, "teacher-visual", "visual")
    joint = _probe(summary, "joint", "visual")
    umt = _probe(summary, "umt", "visual")
    for t, j, u in zip(teacher, joint, umt, strict=True):
        assert j <= t - 0.08, (teacher, joint)
        assert u >= j + 0.06, (joint, umt)
    for j, u in zip(_acc(summary, "joint"), _acc(summary, "umt"), strict=True):
        assert u >= j + 0.005, (j, u)
    assert (
        summary["methods"]["umt"]["test_acc"]["mean"]
        >= summary["methods"]["joint"]["test_acc"]["mean"] + 0.015
    )

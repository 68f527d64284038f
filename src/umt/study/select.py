"""UMT's ``select: better``: which modalities a UMT stage distils, decided on validation before it
trains, from the probes' per-sample validation outcomes in each stage's ``probe.json``
(``umt.methods.umt.better_yardstick``: a one-sided paired test), pooled over the study's seeds
(each seed's teacher against the same seed's joint encoder; one decision for every seed). Where
some modality's teachers beat the jointly trained encoders beyond noise, there is a gap to
close: every modality whose teachers are not worse than joint's encoders is distilled (one left
out trains from scratch beside students started from their teachers, and lost 3 points of probe
on the ``imbalanced`` preset). Where none does, nothing is: distilling towards a teacher that
carries less than the joint encoder can only pull the encoder back (issue 26: on the ``paired``
preset UMT lost 41 points to joint training that way).

And after: a UMT stage whose validation score falls below the same seed's joint training's beyond
noise (:func:`harms`; the ``paired`` preset, one seed in six: 37 % vs 70 % on validation, the
teacher of one modality 2.5 probe points above joint's encoder) is declined: its distillation
cost what the fused task uses. The runner then tries the same distillation from the same seed's
trained joint model (encoders and head: started from the teachers, the head fits the training
split through features the teachers learnt by heart, and on small data trusts a weak modality
more than it earns); where that too is below joint's, it trains UMT as where no teacher beats
joint (nothing distilled, every encoder from joint's). The attempts are kept beside it
(``<stage>.declined``, ``<stage>.declined2``).

Why pooled: decided per seed, 397 validation samples could not tell a 4-point gap from none on
some seeds (``userloop`` check set: img's teacher probe 82.1 % against joint's 82.1 % on
validation at seed 1, 82.7 % against 78.5 % on test), so UMT was two methods, distilling on four
seeds and not on two, and closed 71 % of the gap; one decision over the six seeds' validation
outcomes distils on all six (94 %, docs/results.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from umt.engine import agree
from umt.io import read_json
from umt.methods.umt import better_yardstick

if TYPE_CHECKING:
    from umt.study.config import StudyConfig


def _correct(path: Path, modality: str) -> str | None:
    try:
        value = read_json(path).get("val_correct", {}).get(modality)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def pooled(cfg: StudyConfig, method: str) -> bool:
    """Whether ``method``'s stages decide what to distil over every seed's teachers and joint
    training (``select: better`` in a study that trains joint training): they wait for them."""
    selects = getattr(cfg.settings(method), "select", "all") == "better"
    return selects and "joint" in cfg.methods and method != "joint"


def select(
    settings: Any, seed_dirs: Sequence[Path], joint: str, modalities: list[str]
) -> tuple[Any, list[str] | None]:
    """``settings`` with weight 0 for each modality not to distil, and the distilled modalities
    (``None``, settings unchanged: nothing to decide on, e.g. no joint stage or a segmentation
    probe without per-sample outcomes; every modality is then distilled, as the papers).

    ``seed_dirs``: the stage's own seed's directory first, then the study's other seeds' (those
    whose teacher and joint probes are on disk count; the own seed's must be).

    Decided by the main process (it alone probes and writes the files read here); under DDP
    every process takes its decision (``umt.engine.agree``), so all train one objective."""
    if getattr(settings, "select", "all") != "better":
        return settings, None
    chosen = agree(_chosen(seed_dirs, joint, modalities))
    if chosen is None:
        return settings, None
    weights = {**settings.weights, **{m: 0.0 for m in modalities if m not in chosen}}
    return dataclasses.replace(settings, weights=weights), chosen


def _chosen(seed_dirs: Sequence[Path], joint: str, modalities: list[str]) -> list[str] | None:
    own, *others = (_outcomes(d, joint, modalities) for d in seed_dirs)
    if own is None:
        return None  # the stage's own seed: nothing to decide on
    # The other seeds whose outcomes are on disk, over the own seed's samples, count.
    same = [o for o in others if o and all(len(o[m][0]) == len(own[m][0]) for m in modalities)]
    seeds = [own, *same]
    # Per validation sample, the share of seeds whose probe was right: the paired test then
    # runs over samples (the same samples on every seed; a hard one is hard for all).
    pooled = {m: tuple(_share([o[m][i] for o in seeds]) for i in (0, 1)) for m in modalities}
    if not any(better_yardstick(t, f) for t, f in pooled.values()):
        return []  # no gap to close: UMT is joint training
    # A gap to close: every teacher that is not worse than joint's encoder is a yardstick (left
    # out, a modality's encoder trains from scratch beside distilled ones and loses ground).
    return [m for m, (t, f) in pooled.items() if not better_yardstick(f, t)]


def _outcomes(
    seed_dir: Path, joint: str, modalities: list[str]
) -> dict[str, tuple[str, str]] | None:
    """Each modality's validation outcomes in ``seed_dir``: (its teacher's probe, joint's);
    ``None`` where one is missing or they differ in length."""
    outcomes = {}
    for m in modalities:
        teacher = _correct(seed_dir / f"teacher-{m}" / "probe.json", m)
        fused = _correct(seed_dir / joint / "probe.json", m)
        if teacher is None or fused is None or len(teacher) != len(fused):
            return None
        outcomes[m] = (teacher, fused)
    return outcomes


def _share(outcomes: list[str]) -> np.ndarray:
    return np.array([[int(v) for v in x] for x in outcomes], dtype=float).mean(0)


def harms(seed_dir: Path, stage: str, joint: str) -> tuple[float, float] | None:
    """``(stage's val score, joint's)`` where the trained ``stage`` is below the same seed's
    ``joint`` stage on validation beyond noise (the paired test of ``better_yardstick`` over
    their per-sample outcomes, ``val-outcomes.npy``); ``None`` otherwise, or where either has no
    right/wrong outcomes (segmentation). The main process decides; every process agrees."""
    return agree(_harms(seed_dir / stage, seed_dir / joint))


def _harms(stage: Path, joint: Path) -> tuple[float, float] | None:
    try:
        a, b = (np.load(d / "val-outcomes.npy") for d in (stage, joint))
    except (OSError, ValueError):
        return None
    if a.shape != b.shape or a.ndim != 1 or not np.isin(np.stack([a, b]), (0, 1)).all():
        return None
    if not better_yardstick(b, a):  # joint's outcomes beat the stage's
        return None
    return float(a.mean()), float(b.mean())

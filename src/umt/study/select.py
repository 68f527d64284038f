"""UMT's ``select: better``: which modalities a UMT stage distils, decided on validation before it
trains, from the probes' per-sample validation outcomes in each stage's ``probe.json``
(``umt.methods.umt.better_yardstick``: a one-sided paired test). Where some modality's teacher
probe beats the same seed's jointly trained encoder's beyond noise, there is a gap to close: every
modality whose teacher is not worse than joint's encoder is distilled (one left out trains from
scratch beside students started from their teachers, and lost 3 points of probe on the
``imbalanced`` preset). Where none does, nothing is: distilling towards a teacher that carries
less than the joint encoder can only pull the encoder back (issue 26: on the ``paired`` preset UMT
lost 41 points to joint training that way)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from umt.engine import agree
from umt.io import read_json
from umt.methods.umt import better_yardstick


def _correct(path: Path, modality: str) -> str | None:
    try:
        value = read_json(path).get("val_correct", {}).get(modality)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def select(
    settings: Any, seed_dir: Path, joint: str, modalities: list[str]
) -> tuple[Any, list[str] | None]:
    """``settings`` with weight 0 for each modality not to distil, and the distilled modalities
    (``None``, settings unchanged: nothing to decide on, e.g. no joint stage or a segmentation
    probe without per-sample outcomes; every modality is then distilled, as the papers).

    Decided by the main process (it alone probes and writes the files read here); under DDP
    every process takes its decision (``umt.engine.agree``), so all train one objective."""
    if getattr(settings, "select", "all") != "better":
        return settings, None
    chosen = agree(_chosen(seed_dir, joint, modalities))
    if chosen is None:
        return settings, None
    weights = {**settings.weights, **{m: 0.0 for m in modalities if m not in chosen}}
    return dataclasses.replace(settings, weights=weights), chosen


def _chosen(seed_dir: Path, joint: str, modalities: list[str]) -> list[str] | None:
    outcomes = {}
    for m in modalities:
        teacher = _correct(seed_dir / f"teacher-{m}" / "probe.json", m)
        fused = _correct(seed_dir / joint / "probe.json", m)
        if teacher is None or fused is None or len(teacher) != len(fused):
            return None
        outcomes[m] = (teacher, fused)
    if not any(better_yardstick(t, f) for t, f in outcomes.values()):
        return []  # no gap to close: UMT is joint training
    # A gap to close: every teacher that is not worse than joint's encoder is a yardstick (left
    # out, a modality's encoder trains from scratch beside distilled ones and loses ground).
    return [m for m, (t, f) in outcomes.items() if not better_yardstick(f, t)]

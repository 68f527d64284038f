"""UMT's ``select: better``: which modalities a UMT stage distils, decided on validation before it
trains: a modality whose teacher's linear probe beats the same seed's jointly trained encoder's
beyond noise (``umt.methods.umt.better_yardstick``, on the probes' per-sample validation outcomes
in each stage's ``probe.json``). The others get weight 0: distilling towards a teacher that
carries less than the joint encoder can only pull the encoder back (issue 26: on the ``paired``
preset UMT lost 41 points to joint training that way)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

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
    probe without per-sample outcomes; every modality is then distilled, as the papers)."""
    if getattr(settings, "select", "all") != "better":
        return settings, None
    chosen = []
    for m in modalities:
        teacher = _correct(seed_dir / f"teacher-{m}" / "probe.json", m)
        fused = _correct(seed_dir / joint / "probe.json", m)
        if teacher is None or fused is None or len(teacher) != len(fused):
            return settings, None
        if better_yardstick(teacher, fused):
            chosen.append(m)
    weights = {**settings.weights, **{m: 0.0 for m in modalities if m not in chosen}}
    return dataclasses.replace(settings, weights=weights), chosen
